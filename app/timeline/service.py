"""A client's timeline: incidents, court dates, protective orders (issued, expiring), risk
assessments and safety-plan versions, merged in time order.

Entries carry what happened and when, never narrative: the kind, the record's id, the
moment in UTC with its precision, and a small summary of plain facts (a hearing's kind
and status, an order's type and status, a risk level, a plan's version number, an
incident's categories and whether it was retracted). The order is (at, kind, id), which
is total (kinds at one moment in the order of ``KINDS``), so the cursor is exactly the last
entry shown.

Each source runs its own keyset query after the cursor, limited to one page more than
asked, and the pages are merged; incidents come from their own module
(``incidents.service.timeline_entries``), which applies their period rule (an incident
belongs to a period its occurrence window overlaps). The read is audited once per
request (``timeline.read``) with the count and the filters, never the entries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlmodel import Session

from app.clients import service as clients
from app.clients.models import Client
from app.core import access, audit
from app.core.access import Actor
from app.core.errors import Invalid, InvalidCursor
from app.core.pagination import PageParams, decode_cursor, encode_cursor
from app.incidents import service as incidents
from app.legal.models import CourtDate, ProtectiveOrder
from app.risk.models import RiskAssessment
from app.safety_plans import service as safety_plans
from app.safety_plans.models import SafetyPlanVersion

INCIDENT = "incident"
COURT_DATE = "court_date"
ORDER_ISSUED = "protective_order_issued"
ORDER_EXPIRY = "protective_order_expiry"
RISK = "risk_assessment"
PLAN = "safety_plan_version"
# Also the order of entries at the same moment (an order issued and expiring on one day
# reads issued, then expiry).
KINDS: tuple[str, ...] = (INCIDENT, COURT_DATE, ORDER_ISSUED, ORDER_EXPIRY, RISK, PLAN)
RANK = {kind: rank for rank, kind in enumerate(KINDS)}
# One name for both events of an order.
ALIASES: dict[str, tuple[str, ...]] = {"protective_order": (ORDER_ISSUED, ORDER_EXPIRY)}
# An order's expiry is an event only while the order runs to it.
EXPIRING_STATUSES = ("granted", "expired")
MAX_KINDS_TEXT = 400

Key = tuple[datetime, int, UUID]  # (at, rank of the kind, id)


@dataclass(frozen=True)
class Entry:
    """One event of the timeline. ``precision``: "exact" (a moment), "date" (a day, ``at``
    its midnight UTC) or "range" (an incident known to within a window starting ``at``)."""

    kind: str
    id: UUID
    at: datetime
    precision: str
    summary: dict[str, Any]

    @property
    def key(self) -> Key:
        return (self.at, RANK[self.kind], self.id)


@dataclass(frozen=True)
class Window:
    """What a source must return: entries in [start, end), strictly after ``after``."""

    start: datetime | None
    end: datetime | None
    after: Key | None
    limit: int


# --- parsing filters ----------------------------------------------------------------------


def _query_error(field: str, message: str, kind: str = "value") -> list[dict[str, str]]:
    return [{"field": field, "location": "query", "message": message, "type": kind}]


def parse_kinds(values: Iterable[str] | None) -> tuple[str, ...]:
    """The kinds asked for, from repeated and/or comma-separated values (all when none);
    ``protective_order`` stands for both order events. Unknown names are refused."""
    asked: set[str] = set()
    for value in values or ():
        if len(value) > MAX_KINDS_TEXT:
            raise Invalid("Too long a list of kinds.",
                          errors=_query_error("kind", "too long", "string_too_long"))
        for name in (part.strip() for part in value.split(",")):
            if not name:
                continue
            if name in ALIASES:
                asked.update(ALIASES[name])
            elif name in KINDS:
                asked.add(name)
            else:
                # The offending value is not echoed: a refusal never repeats input.
                raise Invalid("Unknown kind of timeline entry.", errors=_query_error(
                    "kind", f"choose from {', '.join(KINDS + tuple(ALIASES))}", "choice"))
    return tuple(k for k in KINDS if k in asked) if asked else KINDS


def parse_bound(field: str, text: str | None, *, end: bool = False) -> datetime | None:
    """A period bound: an RFC 3339 timestamp with an offset, or a date (a whole day in UTC:
    ``from`` its start, ``to`` its end — so ``to=2026-03-31`` includes the 31st)."""
    if text is None or text == "":
        return None
    text = text.strip()
    if len(text) == 10:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            pass
        else:
            moment = datetime.combine(day, time(), UTC)
            return moment + timedelta(days=1) if end else moment
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise Invalid("Not a date or a timestamp.", errors=_query_error(
            field, "YYYY-MM-DD or an RFC 3339 timestamp with offset", "datetime")) from exc
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise Invalid("Times need a UTC offset.", errors=_query_error(
            field, "timestamp without offset", "datetime"))
    return moment.astimezone(UTC)


# --- sources ------------------------------------------------------------------------------


def _after_moment(column: Any, id_column: Any, kind: str, after: Key) -> sa.ColumnElement[bool]:
    """Rows of one kind whose (at, kind, id) comes after ``after``; ``at`` is ``column``."""
    at, after_rank, after_id = after
    if RANK[kind] > after_rank:
        return column >= at
    if RANK[kind] < after_rank:
        return column > at
    return sa.or_(column > at, sa.and_(column == at, id_column > after_id))


def _moment_window(query: sa.Select[Any], column: Any, id_column: Any, kind: str,
                   window: Window) -> sa.Select[Any]:
    if window.start is not None:
        query = query.where(column >= window.start)
    if window.end is not None:
        query = query.where(column < window.end)
    if window.after is not None:
        query = query.where(_after_moment(column, id_column, kind, window.after))
    return query.order_by(column.asc(), id_column.asc()).limit(window.limit)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def _first_day_at_or_after(moment: datetime) -> date:
    """The first day whose midnight (UTC) is not before ``moment``."""
    day = moment.astimezone(UTC).date()
    return day if _midnight(day) >= moment else day + timedelta(days=1)


def _date_window(query: sa.Select[Any], column: Any, id_column: Any, kind: str,
                 window: Window) -> sa.Select[Any]:
    """As :func:`_moment_window` for a date column, whose ``at`` is the day's midnight UTC."""
    if window.start is not None:
        query = query.where(column >= _first_day_at_or_after(window.start))
    if window.end is not None:
        query = query.where(column < _first_day_at_or_after(window.end))
    if window.after is not None:
        at, after_rank, after_id = window.after
        if RANK[kind] > after_rank:
            query = query.where(column >= _first_day_at_or_after(at))
        elif RANK[kind] < after_rank:
            query = query.where(column > at.astimezone(UTC).date())
        else:
            same_moment = sa.and_(column == at.astimezone(UTC).date(), id_column > after_id)
            query = query.where(sa.or_(column > at.astimezone(UTC).date(), same_moment)
                                if _midnight(at.astimezone(UTC).date()) == at
                                else column > at.astimezone(UTC).date())
    return query.order_by(column.asc(), id_column.asc()).limit(window.limit)


def _court_dates(db: Session, actor: Actor, client: Client, window: Window) -> list[Entry]:
    query = sa.select(CourtDate).where(CourtDate.client_id == client.id,
                                       CourtDate.org_id == client.org_id)
    rows = db.scalars(_moment_window(query, CourtDate.starts_at, CourtDate.id, COURT_DATE,
                                     window))
    return [Entry(COURT_DATE, row.id, row.starts_at, "exact",
                  {"hearing_kind": row.kind, "status": row.status,
                   "protective_order_id": row.protective_order_id}) for row in rows]


def _orders(client: Client) -> sa.Select[Any]:
    return sa.select(ProtectiveOrder).where(ProtectiveOrder.client_id == client.id,
                                            ProtectiveOrder.org_id == client.org_id)


def _orders_issued(db: Session, actor: Actor, client: Client, window: Window) -> list[Entry]:
    query = _orders(client).where(ProtectiveOrder.issued_on.is_not(None))
    rows = db.scalars(_date_window(query, ProtectiveOrder.issued_on, ProtectiveOrder.id,
                                   ORDER_ISSUED, window))
    return [Entry(ORDER_ISSUED, row.id, _midnight(row.issued_on), "date",
                  {"order_type": row.order_type, "status": row.status}) for row in rows]


def _orders_expiring(db: Session, actor: Actor, client: Client,
                     window: Window) -> list[Entry]:
    query = _orders(client).where(ProtectiveOrder.expires_on.is_not(None),
                                  ProtectiveOrder.status.in_(EXPIRING_STATUSES))
    rows = db.scalars(_date_window(query, ProtectiveOrder.expires_on, ProtectiveOrder.id,
                                   ORDER_EXPIRY, window))
    return [Entry(ORDER_EXPIRY, row.id, _midnight(row.expires_on), "date",
                  {"order_type": row.order_type, "status": row.status}) for row in rows]


def _risk_assessments(db: Session, actor: Actor, client: Client,
                      window: Window) -> list[Entry]:
    # Written here rather than through risk.service.assessment_history, which audits a
    # history read of its own: the timeline is audited once, as one read.
    query = sa.select(RiskAssessment).where(RiskAssessment.client_id == client.id,
                                            RiskAssessment.org_id == client.org_id)
    rows = db.scalars(_moment_window(query, RiskAssessment.assessed_at, RiskAssessment.id,
                                     RISK, window))
    return [Entry(RISK, row.id, row.assessed_at, "exact",
                  {"instrument_id": row.instrument_id,
                   "instrument_version": row.instrument_version, "level": row.level,
                   "is_highest_level": row.is_highest_level, "complete": row.complete})
            for row in rows]


def _plan_versions(db: Session, actor: Actor, client: Client, window: Window) -> list[Entry]:
    query = safety_plans.list_versions(db, actor, client.id)
    rows = db.scalars(_moment_window(query, SafetyPlanVersion.created_at, SafetyPlanVersion.id,
                                     PLAN, window))
    return [Entry(PLAN, row.id, row.created_at, "exact",
                  {"version": row.version, "review_date": row.review_date}) for row in rows]


def _incidents(db: Session, actor: Actor, client: Client, window: Window) -> list[Entry]:
    # Their period rule (overlap) picks the incidents; the cursor is applied here. The
    # window starts no earlier than the cursor: everything before it was on earlier pages.
    start = window.start
    if window.after is not None and (start is None or window.after[0] > start):
        start = window.after[0]
    found = incidents.timeline_entries(db, actor, client, start=start, end=window.end)
    entries = [Entry(INCIDENT, item["id"], item["at"], item["precision"],
                     {"categories": list(item["categories"]), "retracted": item["retracted"],
                      "revision": item["revision"]}) for item in found]
    if window.after is not None:
        entries = [e for e in entries if e.key > window.after]
    return sorted(entries, key=lambda e: e.key)[:window.limit]


Source = Callable[[Session, Actor, Client, Window], list[Entry]]
SOURCES: dict[str, Source] = {
    COURT_DATE: _court_dates, ORDER_ISSUED: _orders_issued, ORDER_EXPIRY: _orders_expiring,
    RISK: _risk_assessments, PLAN: _plan_versions, INCIDENT: _incidents,
}


# --- the timeline -------------------------------------------------------------------------


def _listing(client_id: UUID, kinds: tuple[str, ...], start: datetime | None,
             end: datetime | None) -> str:
    # A cursor is bound to the client and the filters it was made for.
    bounds = [b.isoformat() if b else "" for b in (start, end)]
    return ":".join(["timeline", str(client_id), ",".join(kinds), *bounds])


def client_timeline(db: Session, actor: Actor, client_id: UUID, *,
                    kinds: tuple[str, ...] = KINDS, start: datetime | None = None,
                    end: datetime | None = None,
                    params: PageParams) -> tuple[list[Entry], str | None]:
    """One page of a client's timeline, oldest first, of the ``kinds`` asked for and in
    [start, end) (incidents: overlapping it). Audited once, as ``timeline.read``."""
    access.require_client_staff(actor)
    if start is not None and end is not None and end <= start:
        raise Invalid("The period ends before it starts.",
                      errors=_query_error("to", "not after from", "range"))
    client = clients.get_client(db, actor, client_id)
    listing = _listing(client.id, kinds, start, end)
    after: Key | None = None
    if params.cursor:
        at, kind, last_id = decode_cursor(listing, params.cursor, 3)
        if kind not in RANK:  # signed by us: only an older format of cursor gets here
            raise InvalidCursor("The cursor is not valid for this listing. Start again "
                                "without a cursor.", errors=_query_error(
                                    "cursor", "invalid cursor", "cursor"))
        after = (at, RANK[kind], last_id)
    window = Window(start, end, after, params.limit + 1)
    entries: list[Entry] = []
    for kind in kinds:
        if kind != INCIDENT:
            entries.extend(SOURCES[kind](db, actor, client, window))
    entries.sort(key=lambda e: e.key)
    if INCIDENT in kinds:
        # Incidents after the last entry that can still be on this page cannot be on it:
        # asking for fewer keeps their module from reporting more as shown than was.
        incident_end = end
        if len(entries) > params.limit:
            boundary = entries[params.limit].at + timedelta(microseconds=1)
            incident_end = boundary if end is None else min(end, boundary)
        entries.extend(_incidents(db, actor, client,
                                  Window(start, incident_end, after, params.limit + 1)))
        entries.sort(key=lambda e: e.key)
    next_cursor = None
    if len(entries) > params.limit:
        entries = entries[:params.limit]
        last = entries[-1]
        next_cursor = encode_cursor(listing, (last.at, last.kind, last.id))
    audit.record(db, actor, "timeline.read", object_type="client", object_id=client.id,
                 details={"count": len(entries), "kinds": ",".join(kinds),
                          "from": start.isoformat() if start else None,
                          "to": end.isoformat() if end else None,
                          "page": "next" if after else "first"})
    return entries, next_cursor
