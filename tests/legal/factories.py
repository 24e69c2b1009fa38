"""An agency for the legal and timeline tests: every role, a colleague, a stranger from
another agency, a partner app's token, and a client in the advocate's caseload. All
plainly fictional."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient
from sqlmodel import Session

from app.core.access import Actor
from app.identity.models import Org, StaffUser
from tests.consents.factories import make_client
from tests.support.identity import make_org, make_partner_app, make_user, staff_token

ALL_SCOPES = ("referrals:read", "referrals:write", "resources:read", "resources:write")


@dataclass
class Agency:
    org: Org
    people: dict[str, StaffUser]
    tokens: dict[str, str]
    client_id: str
    partner_secret: tuple[str, str]

    def actor(self, name: str = "advocate") -> Actor:
        user = self.people[name]
        return Actor(kind="user", id=user.id, org_id=user.org_id, role=user.role)


def make_agency(db: Session) -> Agency:
    org, other_org = make_org(db), make_org(db)
    people = {role: make_user(db, org, role) for role in ("admin", "supervisor", "advocate",
                                                          "auditor")}
    people["colleague"] = make_user(db, org, "advocate")
    people["stranger"] = make_user(db, other_org, "supervisor")
    tokens = {name: staff_token(db, user) for name, user in people.items()}
    app, secret = make_partner_app(db, org, scopes=ALL_SCOPES)
    client_id = make_client(db, org, people["advocate"])
    db.commit()
    return Agency(org, people, tokens, client_id, (app.client_id, secret))


def partner_headers(api: TestClient, agency: Agency) -> dict[str, str]:
    """A partner app of the agency with every scope, authenticated as a partner would."""
    client_id, secret = agency.partner_secret
    response = api.post("/oauth/token", data={"grant_type": "client_credentials",
                                              "client_id": client_id, "client_secret": secret})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def fields(response: Any) -> set[str]:
    return {e["field"] for e in response.json().get("errors", [])}
