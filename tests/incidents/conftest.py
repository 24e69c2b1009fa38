"""Fixtures shared by the incident tests: one agency with every role, a stranger from
another agency, a client in the advocate's caseload, and a valid incident body."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import Session

from app.db import utcnow
from tests.consents.factories import make_client
from tests.support.identity import make_org, make_user, staff_token

PLACE = "Fictional car park behind Lindenweg 12"
ACCOUNT = "Fictional account: he grabbed my arm and took my phone"
OBSERVATIONS = "Fictional observation: bruising on the left forearm"
WITNESS = "Fictional neighbour Marguerite Okonkwo"
WITNESS_CONTACT = "+1 555 0199 (fictional)"
REPORT_NUMBER = "FICT-2026-004417"
OFFICER = "Fictional Officer Hallorann"
RESPONDENT_PHONE = "+1 555 0142 (fictional)"
RESPONDENT_HANDLE = "@fictional_handle_x93"
SECRETS = (PLACE, ACCOUNT, OBSERVATIONS, WITNESS, WITNESS_CONTACT, REPORT_NUMBER, OFFICER,
           RESPONDENT_PHONE, RESPONDENT_HANDLE)


def days_ago(days: int, at: str = "21:30") -> str:
    """A local wall-clock date and time about ``days`` ago (no offset), in the past in any
    time zone at any hour: the date is taken half a day earlier, so "yesterday at 21:30"
    in Chicago is never still ahead when the run crosses midnight UTC."""
    return f"{(utcnow() - timedelta(days=days, hours=12)).date().isoformat()}T{at}"


def incident_body(**overrides: Any) -> dict[str, Any]:
    """A whole incident, every field given, so what is read back must equal it exactly."""
    body = {
        "occurred": {"precision": "exact", "start": days_ago(10), "end": None,
                     "time_zone": "America/Chicago"},
        "categories": ["physical", "threats"],
        "place": PLACE,
        "client_account": ACCOUNT,
        "advocate_observations": OBSERVATIONS,
        "injuries": "Fictional: bruised forearm",
        "medical_care": "Fictional: seen at urgent care the next morning",
        "witnesses": [{"name": WITNESS, "contact": WITNESS_CONTACT, "note": "heard shouting"}],
        "police": {"involved": True, "agency": "Fictional County Sheriff",
                   "report_number": REPORT_NUMBER, "officer": OFFICER},
        "children_present": True,
        "weapons_involved": False,
        "respondent_identifiers": [
            {"kind": "phone", "value": RESPONDENT_PHONE, "platform": ""},
            {"kind": "account_handle", "value": RESPONDENT_HANDLE, "platform": "Fictogram"}],
    }
    return body | overrides


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
