"""Directory and referral records made through the services, for dashboard tests: a
listing of the agency (confidential address), a partner app, and a referral of a client to
a listing. All plainly fictional."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlmodel import Session

from app.core.access import Actor
from app.identity.models import Org, StaffUser
from app.referrals import service as referrals
from app.resources import schemas as resource_schemas
from app.resources import service as resources
from app.resources.models import Resource
from tests.support.identity import make_partner_app, make_user

CONFIDENTIAL_ADDRESS = "7 Fictional Hidden Mews, Example Town"


def actor_of(user: StaffUser) -> Actor:
    return Actor(kind="user", id=user.id, org_id=user.org_id, role=user.role)


def make_listing(db: Session, keeper: StaffUser, name: str = "Fictional Harbour Refuge",
                 **fields: Any) -> Resource:
    """A listing of ``keeper``'s agency through the service (a supervisor or an admin)."""
    body = {"name": name, "categories": ["shelter"], "description": "Fictional refuge.",
            "languages": ["en", "pl"], "phone": "+353 1 555 0142",
            "address": CONFIDENTIAL_ADDRESS, "address_confidential": True,
            "eligibility": {"pets_accepted": True},
            "capacity": {"beds_total": 8, "beds_available": 3}} | fields
    return resources.create_resource(db, actor_of(keeper),
                                     resource_schemas.ResourceCreate.model_validate(body))


@dataclass(frozen=True)
class DirectoryRecords:
    resource_id: UUID
    app_id: UUID

    def path(self, template: str) -> str:
        return (template.replace("{resource_id}", str(self.resource_id))
                .replace("{app_id}", str(self.app_id)))


def make_directory_records(db: Session, org: Org) -> DirectoryRecords:
    """A listing of ``org`` (kept by a supervisor of it) and a partner app of ``org``."""
    listing = make_listing(db, make_user(db, org, "supervisor"))
    app, _secret = make_partner_app(db, org, scopes=("referrals:read", "referrals:write"),
                                    name="Fictional Shelter Software")
    return DirectoryRecords(listing.id, app.id)


def make_referral_of(db: Session, advocate: StaffUser, client_id: UUID,
                     listing: Resource | None = None, **kwargs: Any) -> UUID:
    """A draft referral of a client (in ``advocate``'s reach) to a listing, as the
    dashboard makes it."""
    if listing is None:
        keeper = make_user(db, db.get(Org, advocate.org_id), "supervisor")
        listing = make_listing(db, keeper, name="Fictional Night Hotline")
    record = referrals.create_referral(
        db, actor_of(advocate), client_id=client_id, resource_id=listing.id,
        categories=kwargs.pop("categories", []), reason="Fictional: needs a safe bed",
        handoff=kwargs.pop("handoff", {"code_word": "Fictional Lantern"}), **kwargs)
    return record.referral.id
