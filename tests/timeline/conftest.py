from __future__ import annotations

import pytest
from sqlmodel import Session

from tests.legal.factories import Agency, make_agency


@pytest.fixture
def agency(db: Session) -> Agency:
    return make_agency(db)
