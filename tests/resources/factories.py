"""A small directory world for the resource tests: two agencies, their staff, partner
apps with and without write scope, and plainly fictional listings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

from sqlmodel import Session

from app.core.access import Actor
from app.db import utcnow
from app.identity import tokens
from app.identity.models import Org, PartnerApp, PartnerToken, StaffUser
from app.resources import service
from app.resources.models import Resource
from app.resources.schemas import ResourceCreate
from tests.support.identity import bearer, make_org, make_user, staff_token

SHELTER_ADDRESS = "1 Example Street, Sampletown"


@dataclass
class Partner:
    app: PartnerApp
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.token)

    def actor(self) -> Actor:
        return Actor(kind="partner_app", id=self.app.id, org_id=self.app.org_id,
                     scopes=frozenset(self.app.scopes.split()))


@dataclass
class Directory:
    org: Org
    other_org: Org
    people: dict[str, StaffUser]  # admin, supervisor, advocate, auditor, stranger
    tokens: dict[str, str]
    partners: dict[str, Partner]  # writer, reader, stranger (another agency's app)

    def headers(self, name: str) -> dict[str, str]:
        if name in self.partners:
            return self.partners[name].headers
        return bearer(self.tokens[name])

    def actor(self, name: str = "supervisor") -> Actor:
        if name in self.partners:
            return self.partners[name].actor()
        user = self.people[name]
        return Actor(kind="user", id=user.id, org_id=user.org_id, role=user.role)


def make_partner(db: Session, org: Org, scopes: str) -> Partner:
    """A partner app and a valid access token for it (no client-secret round trip)."""
    app = PartnerApp(org_id=org.id, name="Fictional Shelter Software",
                     client_id=f"pa_{uuid4().hex}", client_secret_digest="0" * 64,
                     scopes=scopes)
    db.add(app)
    db.flush()
    token, lifetime = tokens.issue({"sub": app.client_id, "org": str(org.id), "scope": scopes},
                                   audience=tokens.PARTNER_AUDIENCE, lifetime_seconds=600)
    db.add(PartnerToken(jti=tokens.decode(token).token_id, app_id=app.id, scope=scopes,
                        expires_at=utcnow() + timedelta(seconds=lifetime)))
    db.flush()
    return Partner(app, token)


def make_directory(db: Session) -> Directory:
    org, other_org = make_org(db), make_org(db)
    people = {role: make_user(db, org, role)
              for role in ("admin", "supervisor", "advocate", "auditor")}
    people["stranger"] = make_user(db, other_org, "supervisor")
    partners = {
        "writer": make_partner(db, org, "resources:read resources:write"),
        "reader": make_partner(db, org, "resources:read referrals:read"),
        "stranger": make_partner(db, other_org, "resources:read resources:write"),
    }
    issued = {name: staff_token(db, user) for name, user in people.items()}
    db.commit()
    return Directory(org, other_org, people, issued, partners)


def listing(**overrides: Any) -> dict[str, Any]:
    """A valid listing body; ``None`` drops a field."""
    base: dict[str, Any] = {
        "name": "Example Harbour Shelter",
        "description": "Fictional emergency accommodation for women and their children.",
        "categories": ["shelter"],
        "services": ["Emergency accommodation", "Safety planning"],
        "languages": ["en", "pl"],
        "eligibility": {"genders_served": ["women"], "min_age": 18,
                        "children_accepted": True, "pets_accepted": False},
        "accessibility": ["wheelchair_access"],
        "opening_hours": {"time_zone": "Europe/Dublin", "always_open": True, "weekly": []},
        "phone": "+353 1 555 0100",
        "website": "https://shelter.example.org",
        "service_area": "Sampletown and the Example Coast",
        "regions": ["Sampleshire"],
        "address": SHELTER_ADDRESS,
        "address_confidential": True,
        "capacity": {"beds_total": 12, "beds_available": 3},
    }
    merged = base | overrides
    return {key: value for key, value in merged.items() if value is not None}


def make_resource(db: Session, actor: Actor, **overrides: Any) -> Resource:
    """A listing made through the service, as ``actor``."""
    return service.create_resource(db, actor, ResourceCreate.model_validate(listing(**overrides)))


def ids(response_json: dict[str, Any]) -> set[UUID]:
    return {UUID(item["id"]) for item in response_json["items"]}


def fields(response: Any) -> set[str]:
    return {e["field"] for e in response.json().get("errors", [])}


def count(db: Session, model: Any, *conditions: Any) -> int:
    import sqlalchemy as sa

    return db.scalar(sa.select(sa.func.count()).select_from(model).where(*conditions)) or 0
