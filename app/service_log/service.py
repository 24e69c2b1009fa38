"""The service log: recording and reading the contacts and services a client received.

Contacts are reached through their client (``clients.service.get_client``), so a
client outside the caller's reach and its contacts are simply not found (404). Plain
columns are only what funder counts need (kind, date, duration, staff member); notes
are encrypted under the client's key. Every read and write is audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlmodel import Session

from app.clients import service as clients
from app.core import audit, keys
from app.core.access import Actor
from app.core.errors import Invalid, NotFound
from app.core.pagination import PageParams, decode_cursor, encode_cursor
from app.db import utcnow
from app.identity.models import Role, StaffUser
from app.service_log.models import ServiceContact

KINDS: tuple[str, ...] = ("hotline_call", "in_person", "court_accompaniment",
                          "hospital_accompaniment", "counselling", "shelter_night",
                          "legal_advocacy", "transport", "other")
MAX_DURATION_MINUTES = 1440
# Staff who give services: the roles that work with clients.
SERVICE_ROLES = (Role.advocate.value, Role.supervisor.value)
TABLE = "service_contact"


@dataclass
class ContactRecord:
    contact: ServiceContact
    notes: str | None


def _error(field: str, message: str, kind: str = "value") -> list[dict[str, str]]:
    return [{"field": field, "location": "body", "message": message, "type": kind}]


def _place(contact: ServiceContact) -> dict[str, Any]:
    return {"org_id": contact.org_id, "client_id": contact.client_id, "table": TABLE,
            "column": "notes", "row_id": str(contact.id)}


def decrypt_contact(db: Session, contact: ServiceContact) -> ContactRecord:
    return ContactRecord(contact, keys.decrypt_field(db, ciphertext=contact.notes,
                                                     **_place(contact)))


def record_contact(db: Session, actor: Actor, client_id: UUID, *, kind: str,
                   occurred_on: date, started_at: datetime | None = None,
                   duration_minutes: int = 0, staff_user_id: UUID | None = None,
                   notes: str | None = None) -> ContactRecord:
    """Log a service given to a client (by the actor unless another staff member is named:
    an active advocate or supervisor of the agency)."""
    client = clients.get_client(db, actor, client_id, for_write=True)
    if kind not in KINDS:
        raise Invalid("Unknown kind of service.", errors=_error("kind",
                                                               f"choose from {', '.join(KINDS)}"))
    if not 0 <= duration_minutes <= MAX_DURATION_MINUTES:
        raise Invalid("A contact lasts between 0 and 1440 minutes.",
                      errors=_error("duration_minutes", "between 0 and 1440"))
    today = utcnow().date()
    if occurred_on > today + timedelta(days=1):  # a day's slack for time zones ahead of UTC
        raise Invalid("A service cannot be logged before it happens.",
                      errors=_error("occurred_on", "in the future", "date"))
    if started_at is not None:
        if started_at.tzinfo is None:
            raise Invalid("Times need a UTC offset.",
                          errors=_error("started_at", "timestamp without offset", "datetime"))
        if abs((started_at.date() - occurred_on).days) > 1:
            raise Invalid("started_at must fall on occurred_on.",
                          errors=_error("started_at", "not on occurred_on", "datetime"))
    staff_user_id = staff_user_id or actor.id
    staff = db.scalar(sa.select(StaffUser).where(
        StaffUser.id == staff_user_id, StaffUser.org_id == client.org_id,
        StaffUser.is_active.is_(True), StaffUser.role.in_(SERVICE_ROLES)))
    if staff is None:
        raise Invalid("The staff member must be an active advocate or supervisor of the agency.",
                      errors=_error("staff_user_id", "not an advocate or supervisor of this "
                                    "agency", "staff"))
    contact = ServiceContact(org_id=client.org_id, client_id=client.id, kind=kind,
                             occurred_on=occurred_on, started_at=started_at,
                             duration_minutes=duration_minutes, staff_user_id=staff.id,
                             recorded_by=actor.id)
    notes = (notes or "").strip() or None
    contact.notes = keys.encrypt_field(db, plaintext=notes, **_place(contact))
    db.add(contact)
    db.flush()
    audit.record(db, actor, "service_contact.recorded", contact,
                 details={"client_id": str(client.id), "kind": kind})
    return decrypt_contact(db, contact)


def read_contact(db: Session, actor: Actor, client_id: UUID, contact_id: UUID) -> ContactRecord:
    """One contact of a client within reach (the read is audited)."""
    client = clients.get_client(db, actor, client_id)
    contact = db.scalar(sa.select(ServiceContact).where(
        ServiceContact.id == contact_id, ServiceContact.client_id == client.id,
        ServiceContact.org_id == client.org_id))
    if contact is None:
        raise NotFound("No such contact for this client.")
    record = decrypt_contact(db, contact)
    audit.record(db, actor, "service_contact.read", contact,
                 details={"client_id": str(client.id)})
    return record


def list_contacts(db: Session, actor: Actor, client_id: UUID,
                  params: PageParams) -> tuple[list[ContactRecord], str | None]:
    """A client's contacts, newest first (by date, then when logged); audited."""
    client = clients.get_client(db, actor, client_id)
    listing = f"contacts:{client.id}"
    query = sa.select(ServiceContact).where(ServiceContact.client_id == client.id,
                                            ServiceContact.org_id == client.org_id)
    if params.cursor:
        # Keyset on (occurred_on, created_at, id), all descending. The shared paginator
        # does not encode dates, so the date travels as its ISO text.
        day_text, created, last_id = decode_cursor(listing, params.cursor, 3)
        day = date.fromisoformat(day_text)
        query = query.where(sa.or_(
            ServiceContact.occurred_on < day,
            sa.and_(ServiceContact.occurred_on == day, ServiceContact.created_at < created),
            sa.and_(ServiceContact.occurred_on == day, ServiceContact.created_at == created,
                    ServiceContact.id < last_id)))
    rows = list(db.scalars(query.order_by(ServiceContact.occurred_on.desc(),
                                          ServiceContact.created_at.desc(),
                                          ServiceContact.id.desc()).limit(params.limit + 1)))
    next_cursor = None
    if len(rows) > params.limit:
        rows = rows[:params.limit]
        last = rows[-1]
        next_cursor = encode_cursor(listing, (last.occurred_on.isoformat(), last.created_at,
                                              last.id))
    audit.record(db, actor, "service_contact.listed", object_type="client",
                 object_id=client.id, details={"count": len(rows)})
    if rows:
        audit.append_many(db, action="service_contact.read", org_id=actor.org_id,
                          actor_type=actor.kind, actor_id=str(actor.id), object_type=TABLE,
                          object_ids=[row.id for row in rows])
    return [decrypt_contact(db, row) for row in rows], next_cursor
