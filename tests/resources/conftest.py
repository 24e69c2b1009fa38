from __future__ import annotations

import pytest
from sqlmodel import Session

from tests.resources.factories import Directory, make_directory


@pytest.fixture
def directory(db: Session) -> Directory:
    return make_directory(db)
