"""Incidents: recorded, read, revised, retracted — never overwritten.

An :class:`Incident` head row is written once; everything it says is in numbered
:class:`IncidentRevision` rows. An edit or a retraction adds the next revision (with a
required reason), so every earlier revision stays readable exactly as it was. Incidents
are reached through their client (``clients.service.readable_clients``): an incident of
a client outside the caller's reach is simply not found (404), and partner apps never
find one. Personal content is encrypted under the client's key; every read and write is
audited by incident id and revision number, never by content.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased
from sqlmodel import Session

from app.clients import service as clients
from app.clients.models import Client
from app.core import audit, keys
from app.core.access import Actor, require
from app.core.errors import Conflict, Invalid, NotFound
from app.core.timezones import iana_zone
from app.db import utcnow
from app.incidents.models import (
    CATEGORIES,
    Incident,
    IncidentRevision,
    IncidentRevisionCategory,
)
from app.incidents.schemas import IncidentFields, Occurrence
from app.safety_plans.service import Change, diff_plans

TABLE = "incident_revision"
# What a list line shows of the current revision: its clear columns, never the ciphertexts.
LISTED_COLUMNS = (IncidentRevision.id, IncidentRevision.incident_id, IncidentRevision.client_id,
                  IncidentRevision.revision, IncidentRevision.retracted,
                  IncidentRevision.occurred_start, IncidentRevision.occurred_end,
                  IncidentRevision.occurred_precision, IncidentRevision.occurred_time_zone,
                  IncidentRevision.children_present, IncidentRevision.weapons_involved,
                  IncidentRevision.created_at, IncidentRevision.created_by)
# The encrypted part of a revision, in the order a record and its diff show them.
CONTENT_FIELDS = ("place", "client_account", "advocate_observations", "injuries",
                  "medical_care", "witnesses", "police", "respondent_identifiers")
# A phone's clock a few minutes ahead of the server's is not a future incident.
FUTURE_SKEW = timedelta(minutes=5)
EARLIEST_YEAR = 1900
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass
class RevisionRecord:
    """A revision with its encrypted fields opened."""

    incident: Incident
    revision: IncidentRevision
    categories: list[str]
    content: dict[str, Any]
    reason: str | None

    def state(self) -> dict[str, Any]:
        """Everything the revision says, as compared between revisions."""
        r = self.revision
        return {"occurred": occurrence_local(r), "categories": list(self.categories),
                **{name: self.content.get(name) for name in CONTENT_FIELDS},
                "children_present": r.children_present,
                "weapons_involved": r.weapons_involved, "retracted": r.retracted}


def diff_states(before: dict[str, Any], after: dict[str, Any]) -> list[Change]:
    """What changed from one revision's :meth:`RevisionRecord.state` to the next's, in
    document order. The categories are a set, kept in a fixed order: adding "threats" to
    "stalking" is one ``categories`` change of kind "added" with ``after`` "threats", not
    every category after it moved along by one. The rest is compared as ``diff_plans``
    does."""
    changes: list[Change] = []
    for key in list(before) + [k for k in after if k not in before]:
        was, now = before.get(key), after.get(key)
        if key == "categories" and isinstance(was, list) and isinstance(now, list):
            changes += [Change(key, c, None, "removed") for c in was if c not in now]
            changes += [Change(key, None, c, "added") for c in now if c not in was]
        else:
            changes += diff_plans({key: was} if key in before else {},
                                  {key: now} if key in after else {})
    return changes


@dataclass(frozen=True)
class OccurrenceWindow:
    """When an incident happened, checked: UTC bounds (``end`` exclusive) and the zone."""

    precision: str
    time_zone: str
    start: datetime
    end: datetime | None


@dataclass
class HistoryEntry:
    record: RevisionRecord
    changes: list[Change] = field(default_factory=list)


# --- reach --------------------------------------------------------------------------------


def readable_incidents(actor: Actor) -> sa.Select[Any]:
    """Incidents of the clients the actor may read (nothing for partner apps)."""
    reachable = clients.readable_clients(actor).with_only_columns(Client.id)
    query = sa.select(Incident).where(Incident.org_id == actor.org_id,
                                      Incident.client_id.in_(reachable))
    if not actor.is_user:
        query = query.where(sa.false())
    return query


def get_incident(db: Session, actor: Actor, incident_id: UUID, *,
                 for_write: bool = False) -> Incident:
    """The incident if its client is within reach (404 otherwise, and always for partner
    apps); writing also needs ``clients:write`` (403)."""
    if not actor.is_user:
        raise NotFound("No such incident.")
    incident = db.scalar(readable_incidents(actor).where(Incident.id == incident_id))
    if incident is None:
        raise NotFound("No such incident.")
    if for_write:
        require(actor, "clients:write")
    return incident


@functools.cache
def _is_current() -> sa.ColumnElement[bool]:
    # Made once: building the alias costs a list page about a tenth of its CPU, and an
    # expression is immutable, so every query can share it.
    later = aliased(IncidentRevision)
    return ~sa.exists().where(later.incident_id == IncidentRevision.incident_id,
                              later.revision > IncidentRevision.revision)


def current_revisions(client: Client) -> sa.Select[Any]:
    """The latest revision of each of a client's incidents."""
    return sa.select(IncidentRevision).where(IncidentRevision.org_id == client.org_id,
                                             IncidentRevision.client_id == client.id,
                                             _is_current())


def current_revision(db: Session, incident: Incident) -> IncidentRevision:
    """The incident's latest revision (what it says now, or that it was retracted)."""
    revision = db.scalar(sa.select(IncidentRevision)
                         .where(IncidentRevision.incident_id == incident.id)
                         .order_by(IncidentRevision.revision.desc()).limit(1))
    if revision is None:  # a head is always written with its first revision
        raise NotFound("No such incident.")
    return revision


@functools.cache
def _categories_query() -> sa.Select[Any]:
    return sa.select(IncidentRevisionCategory.revision_id, IncidentRevisionCategory.category) \
        .where(IncidentRevisionCategory.revision_id.in_(sa.bindparam("ids", expanding=True)))


def categories_of(db: Session, revision_ids: list[UUID]) -> dict[UUID, list[str]]:
    """Each revision's categories, in the fixed order of ``CATEGORIES``."""
    found: dict[UUID, list[str]] = {rid: [] for rid in revision_ids}
    if not revision_ids:
        return found
    rows = db.execute(_categories_query(), {"ids": revision_ids})
    for revision_id, category in rows:
        found[revision_id].append(category)
    for values in found.values():
        values.sort(key=CATEGORIES.index)
    return found


def _overlapping(query: sa.Select[Any], start: datetime | None,
                 end: datetime | None) -> sa.Select[Any]:
    # An incident belongs to a period when its occurrence window overlaps it.
    if start is not None:
        # A window's end is exclusive; an exact moment has no end and counts from start.
        query = query.where(sa.or_(
            IncidentRevision.occurred_end > start,
            sa.and_(IncidentRevision.occurred_end.is_(None),
                    IncidentRevision.occurred_start >= start)))
    if end is not None:
        query = query.where(IncidentRevision.occurred_start < end)
    return query


# --- for other modules ----------------------------------------------------------------------


def timeline_entries(db: Session, actor: Actor, client: Client, *, start: datetime | None,
                     end: datetime | None) -> list[dict[str, Any]]:
    """A client's incidents (current revision each, retracted ones included and marked) whose
    occurrence overlaps [start, end), oldest first, as timeline entries without any
    encrypted content. The client must be within the actor's reach (404 otherwise); which
    incidents were shown is audited."""
    client = clients.get_client(db, actor, client.id)
    query = _overlapping(current_revisions(client), start, end).order_by(
        IncidentRevision.occurred_start, IncidentRevision.incident_id)
    revisions = list(db.scalars(query))
    categories = categories_of(db, [r.id for r in revisions])
    audit.append_many(db, action="incident.listed", org_id=actor.org_id,
                      actor_type=actor.kind, actor_id=str(actor.id), object_type="incident",
                      object_ids=[r.incident_id for r in revisions])
    return [{"kind": "incident", "id": r.incident_id, "at": r.occurred_start,
             "precision": r.occurred_precision, "categories": categories[r.id],
             "retracted": r.retracted, "revision": r.revision} for r in revisions]


# --- when it happened ---------------------------------------------------------------------


def _when_error(name: str, message: str, kind: str) -> Invalid:
    # The message names the rule, never the value sent.
    return Invalid("When the incident happened is not valid.", errors=[{
        "field": f"occurred.{name}", "location": "body", "message": message, "type": kind}])


def _zone(name: str) -> ZoneInfo:
    try:
        return iana_zone(name)
    except ValueError as exc:
        raise _when_error("time_zone", "not an IANA time zone name", "time_zone") from exc


def _day(text: str, name: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise _when_error(name, "not a date (YYYY-MM-DD)", "date") from None


def _day_start(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)


def _moment(text: str, name: str, zone: ZoneInfo) -> datetime:
    """A date and time: with an offset it is that instant; without, the wall-clock time in
    ``zone`` (refused when a clock change skips it there)."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise _when_error(name, "not a date and time (YYYY-MM-DDTHH:MM)", "datetime") from None
    if parsed.tzinfo is not None:
        return parsed.astimezone(UTC)
    local = parsed.replace(tzinfo=zone)
    if local.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != parsed:
        raise _when_error(name, "this local time does not exist in the time zone "
                                "(the clocks changed)", "datetime")
    return local.astimezone(UTC)


def _bound(text: str, name: str, zone: ZoneInfo, now: datetime, *,
           is_end: bool) -> datetime:
    """One end of a range: a date (its start, or for ``end`` the end of that day) or a
    date and time; never in the future."""
    if _DATE_ONLY.match(text):
        day = _day(text, name)
        if day > now.astimezone(zone).date():
            raise _when_error(name, "in the future", "future")
        return _day_start(day + timedelta(days=1) if is_end else day, zone)
    moment = _moment(text, name, zone)
    if moment > now + FUTURE_SKEW:
        raise _when_error(name, "in the future", "future")
    return moment


def check_occurrence(occurred: Occurrence, now: datetime | None = None) -> OccurrenceWindow:
    """When it happened, checked and turned into a UTC window (422 naming the field)."""
    now = now or utcnow()
    zone = _zone(occurred.time_zone)
    end: datetime | None = None
    if occurred.precision in ("exact", "date") and occurred.end is not None:
        raise _when_error("end", "only a range has an end", "range")
    if occurred.precision == "date":
        if not _DATE_ONLY.match(occurred.start):
            raise _when_error("start", "a date without a time (YYYY-MM-DD) for precision "
                                       "date; use exact for a known time", "date")
        day = _day(occurred.start, "start")
        if day > now.astimezone(zone).date():
            raise _when_error("start", "in the future", "future")
        start, end = _day_start(day, zone), _day_start(day + timedelta(days=1), zone)
    elif occurred.precision == "exact":
        if _DATE_ONLY.match(occurred.start):
            raise _when_error("start", "a time is needed for precision exact; use date for "
                                       "a day only", "datetime")
        start = _moment(occurred.start, "start", zone)
        if start > now + FUTURE_SKEW:
            raise _when_error("start", "in the future", "future")
    else:
        if occurred.end is None:
            raise _when_error("end", "a range needs an end", "missing")
        start = _bound(occurred.start, "start", zone, now, is_end=False)
        end = _bound(occurred.end, "end", zone, now, is_end=True)
        if end <= start:
            raise _when_error("end", "must be after the start", "range")
    if start.astimezone(zone).year < EARLIEST_YEAR:
        raise _when_error("start", f"before {EARLIEST_YEAR}", "date")
    return OccurrenceWindow(occurred.precision, occurred.time_zone, start, end)


def occurrence_local(revision: IncidentRevision | sa.Row[Any]) -> dict[str, Any]:
    """The occurrence as recorded (a revision, or a line of ``list_incidents``), in the
    client's time zone (a date for precision date)."""
    zone = ZoneInfo(revision.occurred_time_zone)
    start = revision.occurred_start.astimezone(zone)
    end = None
    if revision.occurred_precision == "range" and revision.occurred_end is not None:
        end = revision.occurred_end.astimezone(zone).isoformat()
    return {"precision": revision.occurred_precision, "time_zone": revision.occurred_time_zone,
            "start": (start.date().isoformat() if revision.occurred_precision == "date"
                      else start.isoformat()), "end": end}


# --- sealing ------------------------------------------------------------------------------


def _place(revision: IncidentRevision, column: str) -> dict[str, Any]:
    return {"org_id": revision.org_id, "client_id": revision.client_id, "table": TABLE,
            "column": column, "row_id": str(revision.id)}


def open_revision(db: Session, incident: Incident, revision: IncidentRevision,
                  categories: list[str]) -> RevisionRecord:
    """The revision with its content and reason decrypted (404 once the client's key is
    shredded)."""
    try:
        content = keys.decrypt_json(db, ciphertext=revision.content,
                                    **_place(revision, "content"))
        reason = keys.decrypt_field(db, ciphertext=revision.reason,
                                    **_place(revision, "reason"))
    except keys.KeyDestroyed as exc:
        raise NotFound("No such incident.") from exc
    return RevisionRecord(incident, revision, categories, content, reason)


def _open_many(db: Session, incident: Incident,
               revisions: Sequence[IncidentRevision]) -> list[RevisionRecord]:
    categories = categories_of(db, [r.id for r in revisions])
    return [open_revision(db, incident, r, categories[r.id]) for r in revisions]


def _new_revision(actor: Actor, incident: Incident, number: int, *,
                  window: OccurrenceWindow, children_present: bool | None,
                  weapons_involved: bool | None, retracted: bool) -> IncidentRevision:
    """A revision not yet sealed nor saved (its content is filled in by ``_save``)."""
    return IncidentRevision(
        org_id=incident.org_id, client_id=incident.client_id, incident_id=incident.id,
        revision=number, created_by=actor.id, retracted=retracted,
        occurred_start=window.start, occurred_end=window.end,
        occurred_precision=window.precision, occurred_time_zone=window.time_zone,
        children_present=children_present, weapons_involved=weapons_involved, content="")


def _save(db: Session, record: RevisionRecord) -> RevisionRecord:
    revision = record.revision
    # Sealed before the row is added: encrypting may flush, and the row must be whole then.
    revision.content = keys.encrypt_json(db, value=record.content,
                                         **_place(revision, "content")) or ""
    revision.reason = keys.encrypt_field(db, plaintext=record.reason,
                                         **_place(revision, "reason"))
    try:
        with db.begin_nested():
            db.add(revision)
            db.flush()
            db.add_all([IncidentRevisionCategory(revision_id=revision.id, category=c,
                                                 org_id=revision.org_id)
                        for c in record.categories])
            db.flush()
    except IntegrityError:
        raise Conflict("Another revision of this incident was saved at the same moment. "
                       "Reload the incident and make the change again.") from None
    return record


def _ordered(categories: Sequence[str]) -> list[str]:
    return sorted(set(categories), key=CATEGORIES.index)


def _fields(data: IncidentFields) -> dict[str, Any]:
    dumped = data.model_dump(mode="json")
    return {name: dumped[name] for name in CONTENT_FIELDS}


def _window_of(revision: IncidentRevision) -> OccurrenceWindow:
    return OccurrenceWindow(revision.occurred_precision, revision.occurred_time_zone,
                            revision.occurred_start, revision.occurred_end)


def _lock(db: Session, incident: Incident) -> None:
    # Revisions of one incident are serialised on its head row (a read lock, never an
    # UPDATE); where the database cannot lock (SQLite) the unique revision number does.
    db.execute(sa.select(Incident.id).where(Incident.id == incident.id).with_for_update())


# --- writing ------------------------------------------------------------------------------


def record_incident(db: Session, actor: Actor, client_id: UUID,
                    data: IncidentFields) -> RevisionRecord:
    """Record a new incident of a client (staff who may write the client) as revision 1."""
    client = clients.get_client(db, actor, client_id, for_write=True)
    window = check_occurrence(data.occurred)
    incident = Incident(org_id=client.org_id, client_id=client.id, created_by=actor.id)
    db.add(incident)
    db.flush()
    revision = _new_revision(actor, incident, 1, window=window,
                             children_present=data.children_present,
                             weapons_involved=data.weapons_involved, retracted=False)
    record = _save(db, RevisionRecord(incident, revision, _ordered(data.categories),
                                      _fields(data), None))
    audit.record(db, actor, "incident.created", incident,
                 details={"client_id": str(client.id), "revision": 1})
    return record


def _current_open(db: Session, incident: Incident) -> RevisionRecord:
    return _open_many(db, incident, [current_revision(db, incident)])[0]


def revise_incident(db: Session, actor: Actor, incident_id: UUID, data: IncidentFields, *,
                    reason: str, based_on_revision: int) -> RevisionRecord:
    """Correct an incident: the whole record as it should now read becomes the next
    revision, with the reason; every earlier revision stays as it was. 409 when the
    incident was retracted or someone saved a revision after ``based_on_revision``."""
    incident = get_incident(db, actor, incident_id, for_write=True)
    window = check_occurrence(data.occurred)
    _lock(db, incident)
    current = _current_open(db, incident)
    if current.revision.retracted:
        raise Conflict("This incident was retracted; it can no longer be revised. Record a "
                       "new incident instead.")
    if based_on_revision != current.revision.revision:
        raise Conflict(f"Revision {current.revision.revision} is the current one; reload the "
                       "incident and make the change on it.")
    candidate = RevisionRecord(
        incident, _new_revision(actor, incident, current.revision.revision + 1, window=window,
                                children_present=data.children_present,
                                weapons_involved=data.weapons_involved, retracted=False),
        _ordered(data.categories), _fields(data), reason)
    if candidate.state() == current.state():
        raise Invalid("Nothing differs from the current revision.", errors=[{
            "field": "body", "location": "body",
            "message": "no field differs from the current revision", "type": "unchanged"}])
    made = _save(db, candidate)
    audit.record(db, actor, "incident.revised", incident,
                 details={"client_id": str(incident.client_id),
                          "revision": made.revision.revision})
    return made


def retract_incident(db: Session, actor: Actor, incident_id: UUID, *,
                     reason: str) -> RevisionRecord:
    """Retract an incident: the next revision says the same and is marked retracted, with
    the reason. Nothing is removed; the incident stays listed, marked retracted."""
    incident = get_incident(db, actor, incident_id, for_write=True)
    _lock(db, incident)
    current = _current_open(db, incident)
    if current.revision.retracted:
        raise Conflict("This incident is already retracted.")
    r = current.revision
    made = _save(db, RevisionRecord(
        incident, _new_revision(actor, incident, r.revision + 1, window=_window_of(r),
                                children_present=r.children_present,
                                weapons_involved=r.weapons_involved, retracted=True),
        current.categories, current.content, reason))
    audit.record(db, actor, "incident.retracted", incident,
                 details={"client_id": str(incident.client_id),
                          "revision": made.revision.revision})
    return made


# --- reading ------------------------------------------------------------------------------


def read_incident(db: Session, actor: Actor, incident_id: UUID) -> RevisionRecord:
    """The incident as its current revision says (retracted ones too, marked); audited."""
    incident = get_incident(db, actor, incident_id)
    record = _current_open(db, incident)
    audit.record(db, actor, "incident.read", incident,
                 details={"client_id": str(incident.client_id),
                          "revision": record.revision.revision,
                          "retracted": record.revision.retracted})
    return record


def list_incidents(db: Session, actor: Actor, client_id: UUID, *,
                   categories: Sequence[str] = (), occurred_from: datetime | None = None,
                   occurred_to: datetime | None = None,
                   include_retracted: bool = True) -> sa.Select[Any]:
    """The query of a client's incidents as a list shows them, whose occurrence overlaps
    [occurred_from, occurred_to) and that have any of ``categories`` (404 when the client
    is out of reach): rows of the current revision's clear columns (``LISTED_COLUMNS``)
    and of when and by whom the incident was first recorded (``recorded_at``,
    ``recorded_by``), in one statement; no ciphertext is read."""
    if occurred_from is not None and occurred_to is not None and occurred_to <= occurred_from:
        raise Invalid("The period ends before it starts.", errors=[{
            "field": "occurred_to", "location": "query", "message": "must be after "
            "occurred_from", "type": "range"}])
    client = clients.get_client(db, actor, client_id)
    query = _overlapping(current_revisions(client), occurred_from, occurred_to)
    if categories:
        query = query.where(IncidentRevision.id.in_(
            sa.select(IncidentRevisionCategory.revision_id).where(
                IncidentRevisionCategory.category.in_(list(categories)))))
    if not include_retracted:
        query = query.where(IncidentRevision.retracted.is_(False))
    return query.with_only_columns(
        *LISTED_COLUMNS, Incident.created_at.label("recorded_at"),
        Incident.created_by.label("recorded_by"),
    ).join(Incident, Incident.id == IncidentRevision.incident_id)


def audit_listing(db: Session, actor: Actor, revisions: Sequence[sa.Row[Any]]) -> None:
    """A list shows when and what kind, no narrative: record which incidents were listed."""
    audit.append_many(db, action="incident.listed", org_id=actor.org_id,
                      actor_type=actor.kind, actor_id=str(actor.id), object_type="incident",
                      object_ids=[r.incident_id for r in revisions])


def list_revisions(db: Session, actor: Actor, incident_id: UUID) -> sa.Select[Any]:
    """The query of an incident's revisions (404 when out of reach)."""
    incident = get_incident(db, actor, incident_id)
    return sa.select(IncidentRevision).where(IncidentRevision.org_id == incident.org_id,
                                             IncidentRevision.incident_id == incident.id)


def open_history(db: Session, actor: Actor, incident_id: UUID,
                 revisions: Sequence[IncidentRevision]) -> list[HistoryEntry]:
    """Revisions (consecutive, oldest first) opened, each with what changed from the one
    before it; the read is audited."""
    incident = get_incident(db, actor, incident_id)
    rows = list(revisions)
    previous: RevisionRecord | None = None
    if rows and rows[0].revision > 1:
        before = db.scalar(sa.select(IncidentRevision).where(
            IncidentRevision.incident_id == incident.id,
            IncidentRevision.revision == rows[0].revision - 1))
        if before is not None:
            previous = _open_many(db, incident, [before])[0]
    return _history(db, actor, incident, _open_many(db, incident, rows), previous)


def _history(db: Session, actor: Actor, incident: Incident, records: list[RevisionRecord],
             previous: RevisionRecord | None = None) -> list[HistoryEntry]:
    """Opened revisions (oldest first) with what each changed from the one before; the
    read is audited."""
    entries = []
    for record in records:
        changes = diff_states(previous.state(), record.state()) if previous else []
        entries.append(HistoryEntry(record, changes))
        previous = record
    if records:
        audit.record(db, actor, "incident.revisions_read", incident,
                     details={"client_id": str(incident.client_id),
                              "from_revision": records[0].revision.revision,
                              "to_revision": records[-1].revision.revision})
    return entries


def open_histories(db: Session, actor: Actor, incident_ids: Sequence[UUID]
                   ) -> list[tuple[Incident, list[HistoryEntry]]]:
    """Every revision of each incident (a report's), opened oldest first with what changed
    from the one before, in the order of ``incident_ids``: what :func:`open_history` gives
    for one incident, each read audited the same way, in three statements for them all.
    404 when any of them is out of reach."""
    if not actor.is_user:
        raise NotFound("No such incident.")
    wanted = list(dict.fromkeys(incident_ids))
    found: dict[UUID, Incident] = {}
    revisions: dict[UUID, list[IncidentRevision]] = {}
    for lo in range(0, len(wanted), 500):  # bounded IN lists
        chunk = wanted[lo:lo + 500]
        for incident in db.scalars(readable_incidents(actor).where(
                Incident.id.in_(chunk))):  # type: ignore[attr-defined]
            found[incident.id] = incident
        for revision in db.scalars(sa.select(IncidentRevision).where(
                IncidentRevision.org_id == actor.org_id,
                IncidentRevision.incident_id.in_(chunk))  # type: ignore[attr-defined]
                .order_by(IncidentRevision.incident_id, IncidentRevision.revision)):
            revisions.setdefault(revision.incident_id, []).append(revision)
    if len(found) != len(wanted):
        raise NotFound("No such incident.")
    categories = categories_of(db, [r.id for rows in revisions.values() for r in rows])
    out = []
    for incident_id in wanted:
        incident = found[incident_id]
        records = [open_revision(db, incident, revision, categories[revision.id])
                   for revision in revisions.get(incident_id, [])]
        out.append((incident, _history(db, actor, incident, records)))
    return out


def summaries(db: Session, revisions: Sequence[sa.Row[Any]]) -> dict[UUID, list[str]]:
    """The categories of listed revisions (clear, no decryption needed)."""
    return categories_of(db, [r.id for r in revisions])
