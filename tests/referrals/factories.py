"""A referring agency and the directory it refers to, for the referral tests. All plainly
fictional.

- ``org``: the referring agency: supervisor, advocate (with the client in their
  caseload), a colleague advocate, admin, auditor.
- partner apps of the agency: ``shelter_app`` (keeps the shelter's listing) and
  ``legal_app`` (another partner: keeps the legal-aid listing).
- listings: ``shelter`` (kept by shelter_app), ``legal`` (kept by legal_app), ``hotline``
  (no partner app: an outside agency named in releases by its name), ``faraway`` (another
  agency's listing, kept by that agency's own partner app).
- the client: every personal field filled with a distinct needle, and a risk assessment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

from fastapi.testclient import TestClient
from sqlmodel import Session

from app.clients import service as clients_service
from app.consents import service as consents
from app.core.access import Actor
from app.db import utcnow
from app.identity import tokens
from app.identity.models import Org, PartnerApp, PartnerToken, StaffUser
from app.referrals import service
from app.resources.models import Resource
from app.risk.models import RiskAssessment
from tests.support.identity import bearer, make_org, make_user, staff_token

ALL_SCOPES = "referrals:read referrals:write resources:read resources:write"

# Every personal field of the client, by the data category that covers it. Each needle is
# long and distinct, so finding one in a response proves that field went out.
NEEDLES: dict[str, list[str]] = {
    "identity": ["Fictional Preferred Wren", "Fictional Legal Wrenfield", "Alias Fictional Kestrel",
                 "1990-04-17"],
    "contact_details": ["+353 1 555 0199 fictional", "wren.fictional@example.test"],
    "address": ["12 Fictional Lane, Example Town"],
    "household": ["Fictional Child Robin", "Fictional Dog Biscuit"],
    "risk_assessment": ["example-safety-screen", "elevated"],
}
# Never disclosed under any category.
NEVER = ["Fictional Safe Word Heron", "Fictional Other Party Name", "Fictional internal note"]
HANDOFF = {"code_word": "Fictional Lighthouse", "note": "Fictional: expect a call this week",
           "call_window": None}


@dataclass
class Directory:
    org: Org
    other_org: Org
    people: dict[str, StaffUser]
    tokens: dict[str, str]
    apps: dict[str, PartnerApp]
    app_tokens: dict[str, str]
    listings: dict[str, Resource]
    client_id: UUID
    other_client_id: UUID  # in the colleague's caseload
    extra: dict[str, Any] = field(default_factory=dict)

    def actor(self, name: str = "advocate") -> Actor:
        user = self.people[name]
        return Actor(kind="user", id=user.id, org_id=user.org_id, role=user.role)

    def partner(self, name: str = "shelter_app") -> Actor:
        app = self.apps[name]
        return Actor(kind="partner_app", id=app.id, org_id=app.org_id,
                     scopes=frozenset(app.scopes.split()))

    def staff(self, name: str = "advocate") -> dict[str, str]:
        return bearer(self.tokens[name])

    def app(self, name: str = "shelter_app") -> dict[str, str]:
        return bearer(self.app_tokens[name])


def make_app(db: Session, org: Org, name: str, scopes: str = ALL_SCOPES) -> tuple[PartnerApp, str]:
    """A partner app and a valid access token for it (no OAuth round trip)."""
    app = PartnerApp(org_id=org.id, name=name, client_id=f"pa_{uuid4().hex}",
                     client_secret_digest="0" * 64, scopes=scopes)
    db.add(app)
    db.flush()
    token, lifetime = tokens.issue({"sub": app.client_id, "org": str(org.id), "scope": scopes},
                                   audience=tokens.PARTNER_AUDIENCE, lifetime_seconds=600)
    db.add(PartnerToken(jti=tokens.decode(token).token_id, app_id=app.id, scope=scopes,
                        expires_at=utcnow() + timedelta(seconds=lifetime)))
    db.flush()
    return app, token


def make_listing(db: Session, org: Org, name: str, app: PartnerApp | None = None) -> Resource:
    resource = Resource(org_id=org.id, partner_app_id=app.id if app else None, name=name,
                        categories=["shelter"], address="1 Fictional Confidential Road",
                        address_confidential=True)
    db.add(resource)
    db.flush()
    return resource


def make_full_client(db: Session, advocate: Actor) -> UUID:
    """A client with every personal field filled (the needles above) and one assessment."""
    n = NEEDLES
    record = clients_service.create_client(db, advocate, personal={
        "preferred_name": n["identity"][0], "legal_name": n["identity"][1],
        "aliases": [n["identity"][2]], "date_of_birth": n["identity"][3],
        "contact_details": [{"kind": "phone", "value": n["contact_details"][0]},
                            {"kind": "email", "value": n["contact_details"][1]}],
        "address": n["address"][0],
        "safe_contact": {"time_zone": "Europe/Dublin", "channels": [
            {"channel": "phone", "safe": True, "leave_message": False, "code_word": NEVER[0],
             "windows": [{"days": ["mon", "tue"], "start": "09:00", "end": "12:00"}]}]},
        "other_party": {"name": NEVER[1]},
        "notes": NEVER[2],
        "household": {"children": [{"first_name": n["household"][0], "age": 6}],
                      "pets": [{"name": n["household"][1], "species": "dog"}]},
    })
    client = record.client
    db.add(RiskAssessment(client_id=client.id, org_id=client.org_id,
                          instrument_id="example-safety-screen", instrument_version="1.0",
                          answers="", score="9", max_score="30", level="elevated",
                          assessed_by=advocate.id))
    db.flush()
    return client.id


def make_directory(db: Session) -> Directory:
    org, other_org = make_org(db), make_org(db)
    people = {role: make_user(db, org, role) for role in ("admin", "supervisor", "advocate",
                                                          "auditor")}
    people["colleague"] = make_user(db, org, "advocate")
    people["stranger"] = make_user(db, other_org, "supervisor")
    staff_tokens = {name: staff_token(db, user) for name, user in people.items()}
    apps, app_tokens = {}, {}
    for name, owner in (("shelter_app", org), ("legal_app", org), ("faraway_app", other_org)):
        apps[name], app_tokens[name] = make_app(db, owner, f"Fictional {name}")
    apps["reader"], app_tokens["reader"] = make_app(db, org, "Fictional read-only app",
                                                    "referrals:read")
    listings = {
        "shelter": make_listing(db, org, "Fictional Harbour Shelter", apps["shelter_app"]),
        "legal": make_listing(db, org, "Fictional Legal Aid Clinic", apps["legal_app"]),
        "hotline": make_listing(db, org, "Fictional Night Hotline"),
        "faraway": make_listing(db, other_org, "Fictional Faraway Refuge", apps["faraway_app"]),
        "reader": make_listing(db, org, "Fictional Reading Room", apps["reader"]),
    }
    directory = Directory(org, other_org, people, staff_tokens, apps, app_tokens, listings,
                          client_id=uuid4(), other_client_id=uuid4())
    directory.client_id = make_full_client(db, directory.actor("advocate"))
    directory.other_client_id = make_full_client(db, directory.actor("colleague"))
    db.commit()
    return directory


def release(db: Session, d: Directory, categories: list[str], *, app: str | None = "shelter_app",
            name: str | None = None, client_id: UUID | None = None) -> UUID:
    """A release of the client's data to a partner app of the agency (or a named agency)."""
    made = consents.record_release(
        db, d.actor("supervisor"), client_id or d.client_id,
        recipient_app_id=d.apps[app].id if app and not name else None, recipient_name=name,
        purpose="Fictional: arrange a place", categories=categories, how_given="written",
        expires_at=utcnow() + timedelta(days=90))
    db.commit()
    return made.release.id


def referral(db: Session, d: Directory, *, listing: str = "shelter",
             categories: list[str] | None = None, status: str = "draft",
             handoff: dict[str, Any] | None = None, client_id: UUID | None = None,
             by: str = "advocate") -> UUID:
    """A referral brought to ``status`` through the service, the way the routes do it."""
    actor = d.actor(by)
    record = service.create_referral(
        db, actor, client_id=client_id or d.client_id, resource_id=d.listings[listing].id,
        categories=categories if categories is not None else [], reason="Fictional: needs a bed",
        handoff=handoff)
    referral_id = record.referral.id
    path = {"draft": [], "sent": ["send"], "accepted": ["send", "accept"],
            "declined": ["send", "decline"], "completed": ["send", "accept", "complete"],
            "closed": ["send", "accept", "close"], "withdrawn": ["withdraw"]}[status]
    recipient = _recipient_actor(d, listing, actor)
    for action in path:
        if action == "send":
            service.send_referral(db, actor, referral_id, reason="Fictional: sending")
        elif action == "withdraw":
            service.withdraw_referral(db, actor, referral_id, reason="Fictional: withdrawn")
        else:
            service.answer_referral(db, recipient, referral_id, action,
                                    reason=f"Fictional: {action}")
    db.commit()
    return referral_id


def _recipient_actor(d: Directory, listing: str, sender: Actor) -> Actor:
    app_id = d.listings[listing].partner_app_id
    if app_id is None:
        return sender
    name = next(name for name, app in d.apps.items() if app.id == app_id)
    return d.partner(name)


def get(api: TestClient, path: str, headers: dict[str, str], expect: int = 200) -> Any:
    response = api.get(path, headers=headers)
    assert response.status_code == expect, response.text
    return response.json()


def post(api: TestClient, path: str, headers: dict[str, str], body: dict[str, Any] | None = None,
         expect: int = 200) -> Any:
    response = api.post(path, headers=headers,
                        json=body if body is not None else {"reason": "Fictional reason"})
    assert response.status_code == expect, response.text
    return response.json()
