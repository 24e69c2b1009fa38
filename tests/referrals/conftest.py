from __future__ import annotations

import pytest
from sqlmodel import Session

from tests.referrals.factories import Directory, make_directory


@pytest.fixture
def d(db: Session) -> Directory:
    return make_directory(db)
