"""Fixtures shared by the safety-plan tests: one agency with every role, a stranger from
another agency, and a client in the advocate's caseload."""

from __future__ import annotations

import pytest
from sqlmodel import Session

from tests.consents.factories import make_client
from tests.support.identity import make_org, make_user, staff_token


@pytest.fixture
def agency(db: Session):
    org, other_org = make_org(db), make_org(db)
    people = {role: make_user(db, org, role) for role in ("admin", "supervisor", "advocate",
                                                          "auditor")}
    people["colleague"] = make_user(db, org, "advocate")
    people["stranger"] = make_user(db, other_org, "supervisor")
    tokens = {name: staff_token(db, user) for name, user in people.items()}
    db.commit()
    return org, people, tokens


@pytest.fixture
def client_id(db: Session, agency) -> str:
    """A client in the advocate's caseload (not the colleague's)."""
    org, people, _ = agency
    made = make_client(db, org, people["advocate"])
    db.commit()
    return made
