"""Clients: creating and finding cases, caseloads, emergency access and purging.

Every read starts from :func:`readable_clients`, so a client outside the caller's
reach is simply not found (404). Personal fields are encrypted under the client's
own key (``app.core.keys``); every read and write of a client is audited.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlmodel import Session

from app.clients.models import BreakGlassGrant, CaseNumberCounter, Client, ClientAssignment
from app.core import audit, keys
from app.core.access import Actor, require
from app.core.errors import Invalid, NotFound
from app.core.timezones import iana_zone
from app.db import utcnow
from app.identity.models import Role, StaffUser
from app.notifications import service as notifications

STATUSES = ("intake", "active", "closed")
CLOSING_REASONS = ("goals_met", "client_request", "lost_contact", "referred_elsewhere",
                   "moved_away", "other")
BREAK_GLASS_MINUTES = 60
TABLE = "client"
TEXT_FIELDS = ("preferred_name", "legal_name", "date_of_birth", "address", "notes")
JSON_FIELDS = ("aliases", "contact_details", "safe_contact", "other_party", "household")
PERSONAL_FIELDS = TEXT_FIELDS + JSON_FIELDS
# An empty value of each JSON field when nothing was recorded.
_EMPTY: dict[str, Any] = {"aliases": [], "contact_details": [],
                          "safe_contact": {"time_zone": "UTC", "channels": []},
                          "other_party": None, "household": {"children": [], "pets": []}}


@dataclass
class ClientRecord:
    """A client with its personal fields decrypted, for the API and the dashboard."""

    client: Client
    fields: dict[str, Any]
    assigned_user_ids: list[UUID] = field(default_factory=list)
    access: str = "caseload"  # "caseload" | "org" | "break_glass"


# --- reach -------------------------------------------------------------------------------


def _active_grants(actor: Actor) -> sa.Select[Any]:
    return sa.select(BreakGlassGrant.client_id).where(
        BreakGlassGrant.user_id == actor.id, BreakGlassGrant.expires_at > utcnow())


def readable_clients(actor: Actor) -> sa.Select[Any]:
    """Clients the actor may read: the whole org for supervisors, one's caseload for
    advocates, plus any client opened through emergency access that is still valid."""
    base = sa.select(Client).where(Client.org_id == actor.org_id, Client.purged_at.is_(None))
    if actor.can("clients:read_all"):
        return base
    caseload = sa.select(ClientAssignment.client_id).where(ClientAssignment.user_id == actor.id)
    if actor.can("clients:read"):
        # One IN over a UNION: PostgreSQL turns it into a join, where ``IN … OR IN …``
        # made it scan every client of the org (491 ms against 4 ms at 100,000 clients).
        return base.where(Client.id.in_(sa.union(caseload, _active_grants(actor))))
    return base.where(Client.id.in_(_active_grants(actor)))


def get_client(db: Session, actor: Actor, client_id: UUID, *, for_write: bool = False) -> Client:
    """The client if within reach (404 otherwise); writing also needs ``clients:write``."""
    if not actor.is_user:
        raise NotFound("No such client.")
    client = db.scalar(readable_clients(actor).where(Client.id == client_id))
    if client is None:
        raise NotFound("No such client.")
    if for_write:
        require(actor, "clients:write")
    return client


def _access_kind(actor: Actor, assigned_user_ids: list[UUID]) -> str:
    """How the actor reaches a client already found within reach: the whole org, their
    caseload (they are assigned), or else an emergency-access grant."""
    if actor.can("clients:read_all"):
        return "org"
    return "caseload" if actor.id in assigned_user_ids else "break_glass"


# --- encryption helpers ------------------------------------------------------------------


def _seal(db: Session, client: Client, column: str, value: Any) -> str | None:
    if value is None or value == "" or value == [] or value == _EMPTY.get(column):
        return None
    place = {"org_id": client.org_id, "client_id": client.id, "table": TABLE, "column": column,
             "row_id": str(client.id)}
    if column in JSON_FIELDS:
        return keys.encrypt_json(db, value=value, **place)
    return keys.encrypt_field(db, plaintext=str(value), **place)


def _open(db: Session, client: Client, column: str) -> Any:
    ciphertext = getattr(client, column)
    if ciphertext is None:
        return _EMPTY.get(column)
    place = {"org_id": client.org_id, "client_id": client.id, "table": TABLE, "column": column,
             "row_id": str(client.id)}
    if column in JSON_FIELDS:
        return keys.decrypt_json(db, ciphertext=ciphertext, **place)
    return keys.decrypt_field(db, ciphertext=ciphertext, **place)


def _name_index(db: Session, org_id: UUID, name: str | None) -> str | None:
    return keys.blind_index(db, org_id=org_id, kind="client-name", value=name) if name else None


def decrypt_record(db: Session, actor: Actor, client: Client) -> ClientRecord:
    try:
        values = {column: _open(db, client, column) for column in PERSONAL_FIELDS}
    except keys.KeyDestroyed as exc:
        raise NotFound("No such client.") from exc
    assigned = list(db.scalars(sa.select(ClientAssignment.user_id).where(
        ClientAssignment.client_id == client.id)))
    return ClientRecord(client, values, assigned, _access_kind(actor, assigned))


@dataclass
class ListedClient:
    """A client as a caseload page shows it: the preferred name is the only personal field
    opened (the page shows no other), plus who works with the client when asked for."""

    client: Client
    preferred_name: str | None
    assigned_user_ids: list[UUID] = field(default_factory=list)


def _sealed(client: Client) -> bool:
    return any(getattr(client, column) is not None for column in PERSONAL_FIELDS)


def list_page(db: Session, actor: Actor, page: list[Client], *,
              with_assignments: bool = False) -> list[ListedClient]:
    """A page of clients for a listing, in a fixed number of queries whatever its size:
    the page's data keys (and assignments, if asked) are read in one query each, then one
    field per client is decrypted.

    As on a read of the client: a destroyed key answers 404, and a name or key that does
    not open raises :class:`keys.DecryptionError` (an integrity failure)."""
    destroyed = keys.load_client_keys(db, org_id=actor.org_id,
                                      client_ids=[c.id for c in page if _sealed(c)])
    if destroyed:
        raise NotFound("No such client.")
    assigned: dict[UUID, list[UUID]] = {c.id: [] for c in page}
    if with_assignments and page:
        for client_id, user_id in db.execute(
                sa.select(ClientAssignment.client_id, ClientAssignment.user_id)
                .where(ClientAssignment.client_id.in_(list(assigned)))):
            assigned[client_id].append(user_id)
    try:
        return [ListedClient(client, _open(db, client, "preferred_name"), assigned[client.id])
                for client in page]
    except keys.KeyDestroyed as exc:  # shredded between the two reads above
        raise NotFound("No such client.") from exc


# --- writing -----------------------------------------------------------------------------


def _next_case_number(db: Session, org_id: UUID) -> str:
    year = utcnow().year
    dialect = db.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    db.execute(insert(CaseNumberCounter.__table__).values(org_id=org_id, year=year, last=0)
               .on_conflict_do_nothing(index_elements=["org_id", "year"]))
    counter = db.execute(
        sa.select(CaseNumberCounter).where(CaseNumberCounter.org_id == org_id,
                                           CaseNumberCounter.year == year)
        .with_for_update().execution_options(populate_existing=True)).scalar_one()
    counter.last += 1
    db.flush()
    return f"{year}-{counter.last:06d}"


def _check_date_of_birth(value: str | None) -> str | None:
    if not value:
        return None
    try:
        born = date.fromisoformat(value)
    except ValueError as exc:
        raise Invalid("The date of birth must be a date (YYYY-MM-DD).", errors=[{
            "field": "date_of_birth", "location": "body", "message": "not a date",
            "type": "date"}]) from exc
    if born > date.today() or born.year < 1900:
        raise Invalid("The date of birth is not plausible.", errors=[{
            "field": "date_of_birth", "location": "body", "message": "out of range",
            "type": "date"}])
    return born.isoformat()


def _check_safe_contact(value: dict[str, Any] | None) -> None:
    if not value:
        return
    try:
        iana_zone(value.get("time_zone") or "UTC")
    except ValueError as exc:
        raise Invalid("Unknown time zone.", errors=[{
            "field": "safe_contact.time_zone", "location": "body",
            "message": "not an IANA time zone name", "type": "time_zone"}]) from exc
    for i, channel in enumerate(value.get("channels") or []):
        for j, window in enumerate(channel.get("windows") or []):
            if window["end"] <= window["start"]:
                raise Invalid("A contact window must end after it starts.", errors=[{
                    "field": f"safe_contact.channels.{i}.windows.{j}.end",
                    "location": "body", "message": "must be after start", "type": "range"}])


def _write_personal(db: Session, client: Client, values: dict[str, Any]) -> None:
    if "date_of_birth" in values:
        values["date_of_birth"] = _check_date_of_birth(values["date_of_birth"])
    if "safe_contact" in values:
        _check_safe_contact(values["safe_contact"])
    for column, value in values.items():
        if column in PERSONAL_FIELDS:
            setattr(client, column, _seal(db, client, column, value))
    if "legal_name" in values:
        client.name_index = _name_index(db, client.org_id, values["legal_name"])
    if "preferred_name" in values:
        client.preferred_name_index = _name_index(db, client.org_id, values["preferred_name"])


def create_client(db: Session, actor: Actor, *, personal: dict[str, Any],
                  status: str = "intake", assign_to: list[UUID] | None = None) -> ClientRecord:
    """Open a case. Every personal field is optional: anonymous clients are normal."""
    require(actor, "clients:write")
    client = Client(org_id=actor.org_id, case_number=_next_case_number(db, actor.org_id),
                    status=status, created_by=actor.id)
    db.add(client)
    db.flush()
    _write_personal(db, client, dict(personal))
    assignees = assign_to if assign_to is not None else (
        [actor.id] if actor.role == Role.advocate.value else [])
    for user_id in assignees:
        _assign(db, actor, client, user_id)
    db.flush()
    audit.record(db, actor, "client.created", client,
                 details={"fields": len([v for v in personal.values() if v])})
    return decrypt_record(db, actor, client)


def _assign(db: Session, actor: Actor, client: Client, user_id: UUID) -> None:
    colleague = db.scalar(sa.select(StaffUser).where(
        StaffUser.id == user_id, StaffUser.org_id == client.org_id,
        StaffUser.is_active.is_(True)))
    if colleague is None or colleague.role not in (Role.advocate.value,
                                                   Role.supervisor.value):
        raise Invalid("Clients can be assigned to active advocates and supervisors of the agency.",
                      errors=[{"field": "assigned_user_ids", "location": "body",
                               "message": "not an advocate or supervisor of this agency",
                               "type": "assignee"}])
    exists = db.get(ClientAssignment, (client.id, user_id))
    if exists is None:
        db.add(ClientAssignment(client_id=client.id, user_id=user_id, org_id=client.org_id,
                                assigned_by=actor.id))


def update_client(db: Session, actor: Actor, client_id: UUID, *, personal: dict[str, Any],
                  status: str | None = None, closing_reason: str | None = None,
                  urgent: bool | None = None,
                  assigned_user_ids: list[UUID] | None = None) -> ClientRecord:
    """Change a client's details, status or assigned staff (only fields given change)."""
    client = get_client(db, actor, client_id, for_write=True)
    changed = sorted(k for k in personal if k in PERSONAL_FIELDS)
    _write_personal(db, client, dict(personal))
    if status is not None and status != client.status:
        if status == "closed" and not (closing_reason or client.closing_reason):
            raise Invalid("Say why the case is closed.", errors=[{
                "field": "closing_reason", "location": "body", "message": "required to close",
                "type": "missing"}])
        client.status = status
        client.closed_at = utcnow() if status == "closed" else None
        changed.append("status")
    if closing_reason is not None:
        client.closing_reason = closing_reason
        changed.append("closing_reason")
    if urgent is not None and urgent != client.urgent:
        client.urgent = urgent
        changed.append("urgent")
    if assigned_user_ids is not None:
        require(actor, "clients:read_all")  # reassigning is a supervisor's call
        db.execute(sa.delete(ClientAssignment).where(
            ClientAssignment.client_id == client.id,
            ClientAssignment.user_id.not_in(assigned_user_ids)))
        for user_id in assigned_user_ids:
            _assign(db, actor, client, user_id)
        changed.append("assignments")
    client.updated_at = utcnow()
    db.flush()
    if "status" in changed:
        # Reminders build on clients, not the reverse: closing cancels the generated
        # ones, reopening brings back those still ahead.
        from app.reminders import rules as reminder_rules

        reminder_rules.sync_client(db, client.id)
    audit.record(db, actor, "client.updated", client, details={"changed": ",".join(changed)[:200]})
    return decrypt_record(db, actor, client)


def read_client(db: Session, actor: Actor, client_id: UUID) -> ClientRecord:
    """One client, decrypted; the read is audited (who saw which client, when)."""
    client = get_client(db, actor, client_id)
    record = decrypt_record(db, actor, client)
    audit.record(db, actor, "client.read", client,
                 details={"access": record.access} if record.access != "caseload" else None)
    return record


def search_clients(actor: Actor, *, case_number: str | None = None, name: str | None = None,
                   status: str | None = None, advocate_id: UUID | None = None,
                   urgent: bool | None = None, db: Session) -> sa.Select[Any]:
    """A caseload query: exact case number, exact name (through the blind index), status,
    assigned advocate, urgency — all within reach."""
    query = readable_clients(actor)
    if case_number:
        query = query.where(Client.case_number == case_number.strip())
    if name:
        digest = _name_index(db, actor.org_id, name)
        query = query.where(sa.or_(Client.name_index == digest,
                                   Client.preferred_name_index == digest))
    if status:
        query = query.where(Client.status == status)
    if urgent is not None:
        query = query.where(Client.urgent.is_(urgent))
    if advocate_id:
        query = query.where(Client.id.in_(sa.select(ClientAssignment.client_id).where(
            ClientAssignment.user_id == advocate_id)))
    return query


def read_household(db: Session, actor: Actor, client_id: UUID) -> dict[str, Any]:
    """The client's children and pets (audited read)."""
    client = get_client(db, actor, client_id)
    try:
        household = _open(db, client, "household")
    except keys.KeyDestroyed as exc:
        raise NotFound("No such client.") from exc
    audit.record(db, actor, "client.household_read", client)
    return household


def replace_household(db: Session, actor: Actor, client_id: UUID,
                      household: dict[str, Any]) -> dict[str, Any]:
    """Record the client's children and pets (the whole list at once)."""
    client = get_client(db, actor, client_id, for_write=True)
    client.household = _seal(db, client, "household", household)
    client.updated_at = utcnow()
    db.flush()
    audit.record(db, actor, "client.household_updated", client,
                 details={"children": len(household.get("children", [])),
                          "pets": len(household.get("pets", []))})
    return household


def audit_listing(db: Session, actor: Actor, clients: list[Client]) -> None:
    """A caseload page shows case numbers and names: record which clients were listed."""
    audit.append_many(db, action="client.listed", org_id=actor.org_id, actor_type=actor.kind,
                      actor_id=str(actor.id), object_type="client",
                      object_ids=[client.id for client in clients])


# --- emergency access and purge ----------------------------------------------------------


def break_glass(db: Session, actor: Actor, client_id: UUID, *, reason: str) -> BreakGlassGrant:
    """Open a client outside one's caseload for a limited time, giving a reason.

    Granted at once (an emergency cannot wait for approval), flagged: supervisors
    are notified and the grant is audited; the reason is kept encrypted."""
    require(actor, "break_glass")
    reason = reason.strip()
    if len(reason) < 10:
        raise Invalid("Give a reason of at least 10 characters.", errors=[{
            "field": "reason", "location": "body", "message": "at least 10 characters",
            "type": "length"}])
    client = db.scalar(sa.select(Client).where(Client.id == client_id,
                                               Client.org_id == actor.org_id,
                                               Client.purged_at.is_(None)))
    if client is None:
        raise NotFound("No such client.")
    now = utcnow()
    grant = BreakGlassGrant(org_id=actor.org_id, user_id=actor.id, client_id=client.id,
                            reason="", granted_at=now,
                            expires_at=now + timedelta(minutes=BREAK_GLASS_MINUTES))
    db.add(grant)
    db.flush()
    grant.reason = keys.encrypt_field(db, org_id=client.org_id, client_id=client.id,
                                      table="break_glass_grant", column="reason",
                                      row_id=str(grant.id), plaintext=reason)
    supervisors = list(db.scalars(sa.select(StaffUser.id).where(
        StaffUser.org_id == actor.org_id, StaffUser.role == Role.supervisor.value,
        StaffUser.is_active.is_(True), StaffUser.id != actor.id)))
    notifications.notify(db, org_id=actor.org_id, user_ids=supervisors, kind="break_glass",
                         object_type="client", object_id=client.id, actor_id=actor.id)
    audit.record(db, actor, "client.break_glass", client,
                 details={"grant_id": str(grant.id), "minutes": BREAK_GLASS_MINUTES,
                          "flagged": True})
    return grant


def purge_client(db: Session, actor: Actor, client_id: UUID) -> None:
    """Erase a client for good: its data key is destroyed (crypto-shredding), so every
    ciphertext of it — in this database and in any later backup — is unreadable."""
    require(actor, "clients:purge")
    client = get_client(db, actor, client_id)
    erase_client(db, client)
    audit.record(db, actor, "client.purged", client)


def erase_client(db: Session, client: Client) -> None:
    """What a purge does, without the reach check: for a purge replayed after a restore
    (``app.ops.backup``) as much as for :func:`purge_client`."""
    keys.shred_client_key(db, client.id)
    for column in PERSONAL_FIELDS:
        setattr(client, column, None)
    client.name_index = client.preferred_name_index = None
    client.purged_at = utcnow()
    db.execute(sa.delete(ClientAssignment).where(ClientAssignment.client_id == client.id))
    from app.consents import service as consents  # consents build on clients, not the reverse

    consents.forget_client(db, client.id)
    db.flush()
    from app.reminders import rules as reminder_rules

    reminder_rules.sync_client(db, client.id)  # nothing is left to remind anyone about

