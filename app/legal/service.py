"""Protective orders and court dates: recorded, changed, read and listed.

Both are reached through their client (``clients.service.get_client``), so a client
outside the caller's reach, and its orders and hearings, are simply not found (404).
Type, status and dates are plain (reminders and the timeline need them); the court,
the case number, conditions, notes and outcomes are encrypted under the client's key.
Every read and write is audited with ids, kinds and statuses, never with the text.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import Session

from app.clients import service as clients
from app.clients.models import Client
from app.core import access, audit, keys
from app.core.access import Actor
from app.core.errors import Invalid, InvalidCursor, NotFound
from app.core.pagination import PageParams, decode_cursor, encode_cursor
from app.core.timezones import iana_zone
from app.db import utcnow
from app.legal.models import CourtDate, ProtectiveOrder
from app.reminders.service import sync_reminders_for

ORDER_TABLE = "protective_order"
HEARING_TABLE = "court_date"

ORDER_TYPES = ("emergency", "temporary", "final", "criminal_no_contact", "other")
ORDER_STATUSES = ("requested", "granted", "denied", "withdrawn", "dismissed", "expired")
# Where an order can go from each status. A violation is not a status (the order stays
# in force): it is an incident. An expired order granted again was extended.
ORDER_TRANSITIONS: dict[str, frozenset[str]] = {
    "requested": frozenset({"granted", "denied", "withdrawn"}),
    "granted": frozenset({"expired", "dismissed"}),
    "expired": frozenset({"granted"}),
    "denied": frozenset(),
    "withdrawn": frozenset(),
    "dismissed": frozenset(),
}
# An order that exists (was issued) has an issue date.
ISSUED_STATUSES = frozenset({"granted", "expired"})

HEARING_KINDS = ("protective_order_hearing", "custody", "criminal", "divorce", "other")
HEARING_STATUSES = ("scheduled", "held", "adjourned", "cancelled")
# An adjourned hearing is rescheduled or ends; a cancelled one may be reinstated; a held
# hearing is history (its outcome can still be written).
HEARING_TRANSITIONS: dict[str, frozenset[str]] = {
    "scheduled": frozenset({"held", "adjourned", "cancelled"}),
    "adjourned": frozenset({"scheduled", "held", "cancelled"}),
    "cancelled": frozenset({"scheduled"}),
    "held": frozenset(),
}
# Hearings are recorded from the past (for the record) up to a few years ahead.
EARLIEST_HEARING = datetime(1950, 1, 1, tzinfo=UTC)
MAX_YEARS_AHEAD = 5
ORDER_TEXT_FIELDS = ("court", "case_number", "notes")
HEARING_TEXT_FIELDS = ("court", "notes", "outcome")
WHEN = ("all", "upcoming", "past")


@dataclass
class OrderRecord:
    """An order with its encrypted fields opened."""

    order: ProtectiveOrder
    court: str | None
    case_number: str | None
    conditions: list[str]
    notes: str | None

    def in_force(self, today: date) -> bool:
        o = self.order
        return o.status == "granted" and (o.expires_on is None or o.expires_on >= today)


@dataclass
class HearingRecord:
    """A court date with its encrypted fields opened."""

    hearing: CourtDate
    court: str | None
    notes: str | None
    outcome: str | None

    @property
    def local_starts_at(self) -> datetime:
        return self.hearing.starts_at.astimezone(ZoneInfo(self.hearing.time_zone))


# --- helpers ------------------------------------------------------------------------------


def _error(field: str, message: str, kind: str = "value") -> list[dict[str, str]]:
    return [{"field": field, "location": "body", "message": message, "type": kind}]


def _place(row: ProtectiveOrder | CourtDate, column: str) -> dict[str, Any]:
    return {"org_id": row.org_id, "client_id": row.client_id, "table": row.__tablename__,
            "column": column, "row_id": str(row.id)}


def _seal(db: Session, row: ProtectiveOrder | CourtDate, column: str, value: Any) -> None:
    if column == "conditions":
        setattr(row, column, keys.encrypt_json(db, value=list(value or []) or None,
                                               **_place(row, column)))
        return
    text = value.strip() if isinstance(value, str) else value
    setattr(row, column, keys.encrypt_field(db, plaintext=text or None, **_place(row, column)))


def _open_text(db: Session, row: ProtectiveOrder | CourtDate, column: str) -> str | None:
    return keys.decrypt_field(db, ciphertext=getattr(row, column), **_place(row, column))


def open_order(db: Session, order: ProtectiveOrder) -> OrderRecord:
    """The order with its court, case number, conditions and notes decrypted."""
    try:
        conditions = keys.decrypt_json(db, ciphertext=order.conditions,
                                       **_place(order, "conditions")) or []
        return OrderRecord(order, _open_text(db, order, "court"),
                           _open_text(db, order, "case_number"), conditions,
                           _open_text(db, order, "notes"))
    except keys.KeyDestroyed as exc:  # the client was erased
        raise NotFound("No such client.") from exc


def open_hearing(db: Session, hearing: CourtDate) -> HearingRecord:
    """The court date with its court, notes and outcome decrypted."""
    try:
        return HearingRecord(hearing, _open_text(db, hearing, "court"),
                             _open_text(db, hearing, "notes"),
                             _open_text(db, hearing, "outcome"))
    except keys.KeyDestroyed as exc:
        raise NotFound("No such client.") from exc


def _choice(field: str, value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise Invalid(f"Unknown {what}.", errors=_error(field, f"choose from {', '.join(allowed)}",
                                                        "choice"))


def _transition(field: str, before: str, after: str,
                transitions: dict[str, frozenset[str]]) -> None:
    if before != after and after not in transitions[before]:
        allowed = sorted(transitions[before])
        raise Invalid(f"The status cannot go from {before} to {after}.",
                      errors=_error(field, f"from {before}: "
                                    + (", ".join(allowed) if allowed else "no change allowed"),
                                    "transition"))


# --- protective orders --------------------------------------------------------------------


def _check_order(order: ProtectiveOrder, today: date) -> None:
    _choice("order_type", order.order_type, ORDER_TYPES, "type of order")
    _choice("status", order.status, ORDER_STATUSES, "order status")
    if (order.issued_on is not None and order.expires_on is not None
            and order.expires_on < order.issued_on):
        raise Invalid("An order cannot expire before it is issued.",
                      errors=_error("expires_on", "before issued_on", "date"))
    if order.issued_on is not None and order.issued_on > today + timedelta(days=1):
        # A day's slack for courts in time zones ahead of UTC.
        raise Invalid("An order cannot be issued in the future.",
                      errors=_error("issued_on", "in the future", "date"))
    if order.status in ISSUED_STATUSES and order.issued_on is None:
        raise Invalid(f"A {order.status} order has an issue date.",
                      errors=_error("issued_on", f"required when {order.status}", "missing"))
    if order.status == "expired" and (order.expires_on is None
                                      or order.expires_on > today + timedelta(days=1)):
        raise Invalid("An order expires on its expiry date; before that it is dismissed.",
                      errors=_error("expires_on", "required and not in the future when "
                                    "expired", "date"))


def _order_of(db: Session, client: Client, order_id: UUID) -> ProtectiveOrder:
    order = db.scalar(sa.select(ProtectiveOrder).where(
        ProtectiveOrder.id == order_id, ProtectiveOrder.client_id == client.id,
        ProtectiveOrder.org_id == client.org_id))
    if order is None:
        raise NotFound("No such protective order for this client.")
    return order


def record_order(db: Session, actor: Actor, client_id: UUID, *, order_type: str,
                 status: str = "requested", court: str | None = None,
                 case_number: str | None = None, issued_on: date | None = None,
                 expires_on: date | None = None, conditions: list[str] | None = None,
                 notes: str | None = None) -> OrderRecord:
    """Record a protective order the client asked for or holds (staff who may write the
    client). Expiry is not before issue; a granted order has an issue date."""
    access.require_client_staff(actor)
    client = clients.get_client(db, actor, client_id, for_write=True)
    order = ProtectiveOrder(org_id=client.org_id, client_id=client.id, order_type=order_type,
                            status=status, issued_on=issued_on, expires_on=expires_on,
                            created_by=actor.id, updated_by=actor.id)
    _check_order(order, utcnow().date())
    # Sealed before the row is added: encrypting may flush, and the row must be whole then.
    for column, value in (("court", court), ("case_number", case_number),
                          ("conditions", conditions), ("notes", notes)):
        _seal(db, order, column, value)
    db.add(order)
    db.flush()
    sync_reminders_for(db, "protective_order", order.id)
    audit.record(db, actor, "protective_order.created", order,
                 details={"client_id": str(client.id), "order_type": order_type,
                          "status": status})
    return open_order(db, order)


def update_order(db: Session, actor: Actor, client_id: UUID, order_id: UUID,
                 changes: dict[str, Any]) -> OrderRecord:
    """Change an order: only the fields in ``changes`` (None clears an optional one).
    Status changes follow ``ORDER_TRANSITIONS``."""
    access.require_client_staff(actor)
    client = clients.get_client(db, actor, client_id, for_write=True)
    order = _order_of(db, client, order_id)
    before = order.status
    for field in ("order_type", "status"):
        if changes.get(field, "") is None:
            raise Invalid("This field cannot be emptied.", errors=_error(field, "not null"))
    if "status" in changes:
        _choice("status", changes["status"], ORDER_STATUSES, "order status")
        _transition("status", before, changes["status"], ORDER_TRANSITIONS)
    for field in ("order_type", "status", "issued_on", "expires_on"):
        if field in changes:
            setattr(order, field, changes[field])
    _check_order(order, utcnow().date())
    for column in ("court", "case_number", "conditions", "notes"):
        if column in changes:
            _seal(db, order, column, changes[column])
    order.updated_at, order.updated_by = utcnow(), actor.id
    db.flush()
    sync_reminders_for(db, "protective_order", order.id)
    details: dict[str, Any] = {"client_id": str(client.id),
                               "fields": ",".join(sorted(changes)), "status": order.status}
    if order.status != before:
        details["status_before"] = before
    audit.record(db, actor, "protective_order.updated", order, details=details)
    return open_order(db, order)


def read_order(db: Session, actor: Actor, client_id: UUID, order_id: UUID) -> OrderRecord:
    """One order of a client within reach (the read is audited)."""
    access.require_client_staff(actor)
    client = clients.get_client(db, actor, client_id)
    order = _order_of(db, client, order_id)
    record = open_order(db, order)
    audit.record(db, actor, "protective_order.read", order,
                 details={"client_id": str(client.id)})
    return record


def list_orders(db: Session, actor: Actor, client_id: UUID,
                params: PageParams) -> tuple[list[OrderRecord], str | None]:
    """A client's orders: those not issued yet first, then by issue date, newest first
    (ties: newest recorded first); audited."""
    access.require_client_staff(actor)
    client = clients.get_client(db, actor, client_id)
    listing = f"protective-orders:{client.id}"
    query = sa.select(ProtectiveOrder).where(ProtectiveOrder.client_id == client.id,
                                             ProtectiveOrder.org_id == client.org_id)
    pending = ProtectiveOrder.issued_on.is_(None)
    if params.cursor:
        # Keyset on (issued?, issued_on desc, created_at desc, id desc). The shared
        # paginator does not encode dates, so the date travels as ISO text ("" = not issued).
        day_text, created, last_id = decode_cursor(listing, params.cursor, 3)
        later = sa.or_(ProtectiveOrder.created_at < created,
                       sa.and_(ProtectiveOrder.created_at == created,
                               ProtectiveOrder.id < last_id))
        if day_text == "":
            query = query.where(sa.or_(~pending, sa.and_(pending, later)))
        else:
            day = _cursor_date(day_text)
            query = query.where(~pending, sa.or_(
                ProtectiveOrder.issued_on < day,
                sa.and_(ProtectiveOrder.issued_on == day, later)))
    rows = list(db.scalars(query.order_by(
        sa.case((pending, 0), else_=1), ProtectiveOrder.issued_on.desc(),
        ProtectiveOrder.created_at.desc(), ProtectiveOrder.id.desc()).limit(params.limit + 1)))
    next_cursor = None
    if len(rows) > params.limit:
        rows = rows[:params.limit]
        last = rows[-1]
        next_cursor = encode_cursor(listing, (
            last.issued_on.isoformat() if last.issued_on else "", last.created_at, last.id))
    records = [open_order(db, row) for row in rows]
    _audit_listing(db, actor, client, "protective_order", ORDER_TABLE, [r.id for r in rows])
    return records, next_cursor


def _bad_cursor() -> InvalidCursor:
    return InvalidCursor("The cursor is not valid for this listing. Start again without a "
                         "cursor.", errors=[{"field": "cursor", "location": "query",
                                             "message": "invalid cursor", "type": "cursor"}])


def _cursor_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:  # signed by us, so only a change of format gets here
        raise _bad_cursor() from exc


def _audit_listing(db: Session, actor: Actor, client: Client, name: str, table: str,
                   ids: list[UUID]) -> None:
    audit.record(db, actor, f"{name}.listed", object_type="client", object_id=client.id,
                 details={"count": len(ids)})
    if ids:
        audit.append_many(db, action=f"{name}.read", org_id=actor.org_id,
                          actor_type=actor.kind, actor_id=str(actor.id), object_type=table,
                          object_ids=list(ids))


# --- court dates --------------------------------------------------------------------------


def _zone(field: str, name: str) -> ZoneInfo:
    try:
        return iana_zone(name)
    except ValueError as exc:
        raise Invalid("Unknown time zone.", errors=_error(
            field, "not an IANA time zone name", "time_zone")) from exc


def _check_hearing_time(starts_at: datetime, time_zone: str, now: datetime) -> datetime:
    """The moment in UTC, after checking it is aware, plausible, and that a local offset
    given with it is the time zone's own at that moment (a hearing an hour off is worse
    than a refusal)."""
    if starts_at.tzinfo is None or starts_at.utcoffset() is None:
        raise Invalid("Times need a UTC offset.",
                      errors=_error("starts_at", "timestamp without offset", "datetime"))
    zone = _zone("time_zone", time_zone)
    offset = starts_at.utcoffset()
    if offset and offset != starts_at.astimezone(zone).utcoffset():
        raise Invalid("The offset is not the time zone's offset at that moment.",
                      errors=_error("starts_at", "offset does not match time_zone; send UTC "
                                    "(Z) or the local offset", "datetime"))
    moment = starts_at.astimezone(UTC)
    if not EARLIEST_HEARING <= moment <= now + timedelta(days=366 * MAX_YEARS_AHEAD):
        raise Invalid("The hearing date is not plausible.",
                      errors=_error("starts_at", f"between 1950 and {MAX_YEARS_AHEAD} years "
                                    "ahead", "datetime"))
    return moment


def _check_held(hearing: CourtDate, now: datetime) -> None:
    if hearing.status == "held" and hearing.starts_at > now + timedelta(days=1):
        raise Invalid("A hearing is held once it has started.",
                      errors=_error("status", "held before starts_at", "transition"))


def _linked_order(db: Session, client: Client, order_id: UUID | None) -> UUID | None:
    if order_id is None:
        return None
    found = db.scalar(sa.select(ProtectiveOrder.id).where(
        ProtectiveOrder.id == order_id, ProtectiveOrder.client_id == client.id,
        ProtectiveOrder.org_id == client.org_id))
    if found is None:
        raise Invalid("No such protective order for this client.",
                      errors=_error("protective_order_id", "not an order of this client",
                                    "reference"))
    return found


def _hearing_of(db: Session, client: Client, court_date_id: UUID) -> CourtDate:
    hearing = db.scalar(sa.select(CourtDate).where(
        CourtDate.id == court_date_id, CourtDate.client_id == client.id,
        CourtDate.org_id == client.org_id))
    if hearing is None:
        raise NotFound("No such court date for this client.")
    return hearing


def record_court_date(db: Session, actor: Actor, client_id: UUID, *, kind: str,
                      starts_at: datetime, time_zone: str, status: str = "scheduled",
                      court: str | None = None, notes: str | None = None,
                      outcome: str | None = None,
                      protective_order_id: UUID | None = None) -> HearingRecord:
    """Record a hearing of the client (staff who may write the client); the time is kept
    in UTC with the court's IANA time zone."""
    access.require_client_staff(actor)
    client = clients.get_client(db, actor, client_id, for_write=True)
    _choice("kind", kind, HEARING_KINDS, "kind of hearing")
    _choice("status", status, HEARING_STATUSES, "hearing status")
    moment = _check_hearing_time(starts_at, time_zone, utcnow())
    hearing = CourtDate(org_id=client.org_id, client_id=client.id, kind=kind,
                        starts_at=moment, time_zone=time_zone, status=status,
                        protective_order_id=_linked_order(db, client, protective_order_id),
                        created_by=actor.id, updated_by=actor.id)
    _check_held(hearing, utcnow())
    for column, value in (("court", court), ("notes", notes), ("outcome", outcome)):
        _seal(db, hearing, column, value)
    db.add(hearing)
    db.flush()
    sync_reminders_for(db, "court_date", hearing.id)
    audit.record(db, actor, "court_date.created", hearing,
                 details={"client_id": str(client.id), "kind": kind, "status": status})
    return open_hearing(db, hearing)


def update_court_date(db: Session, actor: Actor, client_id: UUID, court_date_id: UUID,
                      changes: dict[str, Any]) -> HearingRecord:
    """Change a court date: only the fields in ``changes`` (None clears an optional one).
    Rescheduling is a change of ``starts_at``; status changes follow
    ``HEARING_TRANSITIONS``."""
    access.require_client_staff(actor)
    client = clients.get_client(db, actor, client_id, for_write=True)
    hearing = _hearing_of(db, client, court_date_id)
    before = hearing.status
    for field in ("kind", "starts_at", "time_zone", "status"):
        if changes.get(field, "") is None:
            raise Invalid("This field cannot be emptied.", errors=_error(field, "not null"))
    if "kind" in changes:
        _choice("kind", changes["kind"], HEARING_KINDS, "kind of hearing")
        hearing.kind = changes["kind"]
    if "status" in changes:
        _choice("status", changes["status"], HEARING_STATUSES, "hearing status")
        _transition("status", before, changes["status"], HEARING_TRANSITIONS)
        hearing.status = changes["status"]
    rescheduled = False
    if "starts_at" in changes or "time_zone" in changes:
        time_zone = changes.get("time_zone", hearing.time_zone)
        # A new zone alone keeps the instant: check it against the stored moment in UTC.
        moment = _check_hearing_time(changes.get("starts_at", hearing.starts_at), time_zone,
                                     utcnow())
        rescheduled = moment != hearing.starts_at
        hearing.starts_at, hearing.time_zone = moment, time_zone
    _check_held(hearing, utcnow())
    if "protective_order_id" in changes:
        hearing.protective_order_id = _linked_order(db, client, changes["protective_order_id"])
    for column in HEARING_TEXT_FIELDS:
        if column in changes:
            _seal(db, hearing, column, changes[column])
    hearing.updated_at, hearing.updated_by = utcnow(), actor.id
    db.flush()
    sync_reminders_for(db, "court_date", hearing.id)
    details: dict[str, Any] = {"client_id": str(client.id),
                               "fields": ",".join(sorted(changes)), "status": hearing.status,
                               "rescheduled": rescheduled}
    if hearing.status != before:
        details["status_before"] = before
    audit.record(db, actor, "court_date.updated", hearing, details=details)
    return open_hearing(db, hearing)


def read_court_date(db: Session, actor: Actor, client_id: UUID,
                    court_date_id: UUID) -> HearingRecord:
    """One court date of a client within reach (the read is audited)."""
    access.require_client_staff(actor)
    client = clients.get_client(db, actor, client_id)
    hearing = _hearing_of(db, client, court_date_id)
    record = open_hearing(db, hearing)
    audit.record(db, actor, "court_date.read", hearing, details={"client_id": str(client.id)})
    return record


def list_court_dates(db: Session, actor: Actor, client_id: UUID, params: PageParams, *,
                     when: str = "all") -> tuple[list[HearingRecord], str | None]:
    """A client's court dates, upcoming first (soonest first), then past ones (most recent
    first); ``when`` keeps only upcoming or past ones. Audited.

    "Now" is fixed by the first page and carried in the cursor, so a hearing that starts
    while someone pages through is neither shown twice nor skipped."""
    access.require_client_staff(actor)
    _choice_query("when", when, WHEN)
    client = clients.get_client(db, actor, client_id)
    listing = f"court-dates:{client.id}:{when}"
    base = sa.select(CourtDate).where(CourtDate.client_id == client.id,
                                      CourtDate.org_id == client.org_id)
    last_at: datetime | None = None
    last_id: UUID | None = None
    if params.cursor:
        anchor, phase, last_at, last_id = decode_cursor(listing, params.cursor, 4)
        if phase not in ("upcoming", "past"):
            raise _bad_cursor()
    else:
        anchor, phase = utcnow(), ("past" if when == "past" else "upcoming")
    phases = ["upcoming", "past"] if when == "all" and phase == "upcoming" else [phase]
    picked: list[tuple[str, CourtDate]] = []
    for current in phases:
        if current == "upcoming":
            query = base.where(CourtDate.starts_at >= anchor)
            if last_at is not None:
                query = query.where(sa.or_(CourtDate.starts_at > last_at, sa.and_(
                    CourtDate.starts_at == last_at, CourtDate.id > last_id)))
            query = query.order_by(CourtDate.starts_at.asc(), CourtDate.id.asc())
        else:
            query = base.where(CourtDate.starts_at < anchor)
            if last_at is not None:
                query = query.where(sa.or_(CourtDate.starts_at < last_at, sa.and_(
                    CourtDate.starts_at == last_at, CourtDate.id < last_id)))
            query = query.order_by(CourtDate.starts_at.desc(), CourtDate.id.desc())
        found = db.scalars(query.limit(params.limit + 1 - len(picked)))
        picked.extend((current, row) for row in found)
        if len(picked) > params.limit:
            break
        last_at = last_id = None  # the next phase starts from its beginning
    next_cursor = None
    if len(picked) > params.limit:
        picked = picked[:params.limit]
        last_phase, last = picked[-1]
        next_cursor = encode_cursor(listing, (anchor, last_phase, last.starts_at, last.id))
    hearings = [row for _, row in picked]
    records = [open_hearing(db, row) for row in hearings]
    _audit_listing(db, actor, client, "court_date", HEARING_TABLE, [h.id for h in hearings])
    return records, next_cursor


def _choice_query(field: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise Invalid("Unknown choice.", errors=[{
            "field": field, "location": "query", "message": f"choose from {', '.join(allowed)}",
            "type": "choice"}])
