"""Reminders generated from the record: which occurrences a source calls for, and keeping
the stored reminders in step with it (moved when its date moves, cancelled when it closes).

Each occurrence is a local date and wall time in an IANA zone; its UTC instant is
computed in that zone, so a 9:00 reminder stays at 9:00 across daylight-saving changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlmodel import Session

from app.clients.models import Client, ClientAssignment
from app.core import keys
from app.db import utcnow
from app.reminders.models import Reminder, ReminderSettings, ReminderState
from app.reminders.schemas import ReminderRules

SOURCE_KINDS = ("court_date", "protective_order", "safety_plan", "client", "referral")
OPEN_STATES = (ReminderState.scheduled, ReminderState.sending, ReminderState.held)


def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def local_instant(day: date, hhmm: str, time_zone: str) -> datetime:
    """The UTC instant of a wall time on a local date in a zone (DST-aware)."""
    hour, minute = (int(part) for part in hhmm.split(":"))
    return datetime.combine(day, time(hour, minute), tzinfo=zone(time_zone)).astimezone(UTC)


def next_daily(hhmm: str, time_zone: str, after: datetime) -> date:
    """The first local date whose ``hhmm`` in ``time_zone`` is after ``after``."""
    day = after.astimezone(zone(time_zone)).date()
    while local_instant(day, hhmm, time_zone) <= after:
        day += timedelta(days=1)
    return day


def rules_for(db: Session, org_id: UUID) -> ReminderRules:
    """The org's rules, or the defaults when it never changed them."""
    row = db.get(ReminderSettings, org_id)
    return ReminderRules.model_validate(row.rules) if row and row.rules else ReminderRules()


@dataclass(frozen=True)
class Occurrence:
    rule_key: str
    kind: str
    local_date: date
    local_time: str
    time_zone: str
    repeat_daily: bool = False
    overdue_ok: bool = False  # a condition already true: due now rather than dropped

    def due_at(self) -> datetime:
        return local_instant(self.local_date, self.local_time, self.time_zone)


@dataclass
class Source:
    org_id: UUID
    client_id: UUID | None
    fallback_assignee: UUID | None
    occurrences: list[Occurrence]


def _client_json(db: Session, client: Client, column: str) -> Any:
    ciphertext = getattr(client, column)
    if ciphertext is None:
        return None
    return keys.decrypt_json(db, ciphertext=ciphertext, org_id=client.org_id,
                             client_id=client.id, table="client", column=column,
                             row_id=str(client.id))


def _client_open(db: Session, client_id: UUID | None) -> bool:
    """Whether a client's sources may still call for reminders: the case is not closed
    and the record was not purged (a reminder about an erased record has nothing to say)."""
    if client_id is None:
        return True
    client = db.get(Client, client_id)
    return client is not None and client.status != "closed" and client.purged_at is None


def client_time_zone(db: Session, client: Client) -> str:
    safe = _client_json(db, client, "safe_contact") or {}
    return str(safe.get("time_zone") or "UTC")


def _court_date(db: Session, source_id: UUID) -> Source | None:
    from app.legal.models import CourtDate

    hearing = db.get(CourtDate, source_id)
    if hearing is None:
        return None
    rules = rules_for(db, hearing.org_id).court_date
    found: list[Occurrence] = []
    if rules.enabled and hearing.status == "scheduled" and _client_open(db, hearing.client_id):
        hearing_day = hearing.starts_at.astimezone(zone(hearing.time_zone)).date()
        found = [Occurrence(f"court_date:{lead}d", "court_date",
                            hearing_day - timedelta(days=lead), rules.at, hearing.time_zone)
                 for lead in sorted(set(rules.lead_days))]
    return Source(hearing.org_id, hearing.client_id, hearing.created_by, found)


def _protective_order(db: Session, source_id: UUID) -> Source | None:
    from app.legal.models import ProtectiveOrder

    order = db.get(ProtectiveOrder, source_id)
    if order is None:
        return None
    org_rules = rules_for(db, order.org_id)
    rules = org_rules.protective_order_expiry
    found: list[Occurrence] = []
    if rules.enabled and order.status == "granted" and order.expires_on is not None \
            and _client_open(db, order.client_id):
        found = [Occurrence(f"order_expiry:{lead}d", "protective_order_expiry",
                            order.expires_on - timedelta(days=lead), rules.at,
                            org_rules.time_zone)
                 for lead in sorted(set(rules.lead_days))]
    return Source(order.org_id, order.client_id, order.created_by, found)


def _safety_plan(db: Session, client_id: UUID) -> Source | None:
    from app.safety_plans.models import SafetyPlanVersion

    plan = db.scalar(sa.select(SafetyPlanVersion).where(SafetyPlanVersion.client_id == client_id)
                     .order_by(SafetyPlanVersion.version.desc()).limit(1))
    client = db.get(Client, client_id)
    if plan is None or client is None:
        return None
    org_rules = rules_for(db, plan.org_id)
    found: list[Occurrence] = []
    if _client_open(db, client.id):  # (a purged plan could not be read anyway)
        review = org_rules.safety_plan_review
        if review.enabled:
            found.append(Occurrence("plan_review", "safety_plan_review",
                                    plan.review_date - timedelta(days=review.lead_days),
                                    review.at, org_rules.time_zone))
        if org_rules.check_in.enabled:
            content = keys.decrypt_json(db, ciphertext=plan.content, org_id=plan.org_id,
                                        client_id=plan.client_id, table="safety_plan_version",
                                        column="content", row_id=str(plan.id)) or {}
            check_in = (content.get("code_word") or {}).get("check_in_time")
            if check_in:
                tz = client_time_zone(db, client)
                found.append(Occurrence("check_in", "check_in",
                                        next_daily(check_in, tz, utcnow()), check_in, tz,
                                        repeat_daily=True))
    return Source(plan.org_id, plan.client_id, plan.created_by, found)


def _client(db: Session, client_id: UUID) -> Source | None:
    """A client at the highest risk level with no recorded contact for N days."""
    from app.risk.models import RiskAssessment
    from app.service_log.models import ServiceContact

    client = db.get(Client, client_id)
    if client is None:
        return None
    org_rules = rules_for(db, client.org_id)
    rule = org_rules.high_risk_no_contact
    latest = db.scalar(sa.select(RiskAssessment).where(RiskAssessment.client_id == client_id)
                       .order_by(RiskAssessment.assessed_at.desc()).limit(1))
    found: list[Occurrence] = []
    if rule.enabled and _client_open(db, client.id) and latest is not None \
            and latest.is_highest_level:
        last_contact = db.scalar(sa.select(sa.func.max(ServiceContact.occurred_on))
                                 .where(ServiceContact.client_id == client_id))
        since = max(filter(None, [last_contact, latest.assessed_at.date()]))
        found.append(Occurrence("high_risk_no_contact", "high_risk_no_contact",
                                since + timedelta(days=rule.days), "09:00",
                                org_rules.time_zone, overdue_ok=True))
    return Source(client.org_id, client.id, latest.assessed_by if latest else None, found)


def _referral(db: Session, referral_id: UUID) -> Source | None:
    from app.referrals.models import Referral

    referral = db.get(Referral, referral_id)
    if referral is None:
        return None
    org_rules = rules_for(db, referral.org_id)
    rule = org_rules.referral_unanswered
    found: list[Occurrence] = []
    if rule.enabled and referral.status == "sent" and referral.sent_at is not None \
            and _client_open(db, referral.client_id):
        day = referral.sent_at.astimezone(zone(org_rules.time_zone)).date()
        found.append(Occurrence("referral_unanswered", "referral_unanswered",
                                day + timedelta(days=rule.days), "09:00", org_rules.time_zone,
                                overdue_ok=True))
    return Source(referral.org_id, referral.client_id, referral.created_by, found)


_SOURCES = {"court_date": _court_date, "protective_order": _protective_order,
            "safety_plan": _safety_plan, "client": _client, "referral": _referral}


def primary_advocate(db: Session, client_id: UUID | None) -> UUID | None:
    """The client's first-assigned advocate who can still sign in."""
    if client_id is None:
        return None
    from app.identity.models import StaffUser

    return db.scalar(sa.select(ClientAssignment.user_id)
                     .join(StaffUser, StaffUser.id == ClientAssignment.user_id)
                     .where(ClientAssignment.client_id == client_id, StaffUser.is_active)
                     .order_by(ClientAssignment.assigned_at, ClientAssignment.user_id).limit(1))


def _same_time(row: Reminder, occurrence: Occurrence) -> bool:
    if occurrence.repeat_daily:
        return row.local_time == occurrence.local_time and row.time_zone == occurrence.time_zone
    return (row.local_date, row.local_time, row.time_zone) == (
        occurrence.local_date, occurrence.local_time, occurrence.time_zone)


def _cancel(row: Reminder, now: datetime) -> None:
    if row.state in OPEN_STATES:
        row.state, row.claim_token, row.claimed_until = ReminderState.cancelled, None, None
        row.updated_at = now


def _schedule(row: Reminder, occurrence: Occurrence, due: datetime, now: datetime) -> None:
    if row.state != ReminderState.scheduled:
        row.round += 1  # a new round: delivered again, once
    row.local_date, row.local_time, row.time_zone = (
        occurrence.local_date, occurrence.local_time, occurrence.time_zone)
    row.due_at, row.state, row.held_reason = due, ReminderState.scheduled, None
    row.claim_token = row.claimed_until = None
    row.completed_at, row.updated_at = None, now


def sync_reminders_for(db: Session, source_kind: str, source_id: UUID) -> list[Reminder]:
    """Bring the reminders generated from one source in line with it: create what its
    rules call for, move what moved, cancel what it no longer calls for. Past occurrences
    are not created (a 7-day reminder for a hearing in 3 days), except conditions already
    true (no contact since N days), which are due at once. Returns the open reminders."""
    if source_kind not in _SOURCES:
        raise ValueError(f"unknown reminder source {source_kind}")
    now = utcnow()
    source = _SOURCES[source_kind](db, source_id)
    existing = {row.rule_key: row for row in db.scalars(sa.select(Reminder).where(
        Reminder.source_kind == source_kind, Reminder.source_id == source_id))}
    wanted = {o.rule_key: o for o in (source.occurrences if source else [])}
    for key, row in existing.items():
        if key not in wanted:
            _cancel(row, now)
    assignee = None
    for key, occurrence in wanted.items():
        due = occurrence.due_at()
        if due <= now and occurrence.overdue_ok:
            due = now
        row = existing.get(key)
        if row is not None:
            if _same_time(row, occurrence) and row.state != ReminderState.cancelled:
                continue
            if due <= now and not occurrence.overdue_ok:
                _cancel(row, now)
            else:
                _schedule(row, occurrence, due, now)
            continue
        if due <= now and not occurrence.overdue_ok:
            continue
        assert source is not None
        assignee = assignee or primary_advocate(db, source.client_id) or source.fallback_assignee
        if assignee is None:
            continue
        db.add(Reminder(org_id=source.org_id, client_id=source.client_id, assignee_id=assignee,
                        kind=occurrence.kind, source_kind=source_kind, source_id=source_id,
                        rule_key=key, due_at=due, local_date=occurrence.local_date,
                        local_time=occurrence.local_time, time_zone=occurrence.time_zone,
                        repeat_daily=occurrence.repeat_daily))
    db.flush()
    return list(db.scalars(sa.select(Reminder).where(
        Reminder.source_kind == source_kind, Reminder.source_id == source_id,
        Reminder.state.in_(OPEN_STATES))))


def sources_of_client(db: Session, client_id: UUID) -> list[tuple[str, UUID]]:
    """Every source whose reminders belong to one client."""
    from app.legal.models import CourtDate, ProtectiveOrder
    from app.referrals.models import Referral

    found = [("safety_plan", client_id), ("client", client_id)]
    for kind, model in (("court_date", CourtDate), ("protective_order", ProtectiveOrder),
                        ("referral", Referral)):
        found += [(kind, source_id) for source_id in db.scalars(
            sa.select(model.id).where(model.client_id == client_id).order_by(model.id))]
    return found


def sync_client(db: Session, client_id: UUID) -> None:
    """After a client is closed, reopened or purged: every reminder generated from its
    record follows (closing cancels them, reopening brings back those still ahead). On a
    purge, reminders written by hand about the client are cancelled too."""
    for kind, source_id in sources_of_client(db, client_id):
        sync_reminders_for(db, kind, source_id)
    client = db.get(Client, client_id)
    if client is not None and client.purged_at is not None:
        now = utcnow()
        for row in db.scalars(sa.select(Reminder).where(Reminder.client_id == client_id,
                                                        Reminder.state.in_(OPEN_STATES))):
            _cancel(row, now)
        db.flush()


def sources_of_org(db: Session, org_id: UUID) -> list[tuple[str, UUID]]:
    """Every source of an org whose rules may call for reminders: its open clients' plans
    and risk, their scheduled court dates, granted orders and sent referrals, and every
    source that has an open generated reminder (a rule switched off cancels it)."""
    from app.legal.models import CourtDate, ProtectiveOrder
    from app.referrals.models import Referral
    from app.safety_plans.models import SafetyPlanVersion

    open_clients = sa.select(Client.id).where(Client.org_id == org_id,
                                              Client.status != "closed",
                                              Client.purged_at.is_(None))
    found = {("safety_plan", cid) for cid in db.scalars(
        sa.select(SafetyPlanVersion.client_id).where(
            SafetyPlanVersion.client_id.in_(open_clients)).distinct())}
    found |= {("client", cid) for cid in db.scalars(open_clients)}
    found |= {("court_date", sid) for sid in db.scalars(sa.select(CourtDate.id).where(
        CourtDate.org_id == org_id, CourtDate.status == "scheduled",
        CourtDate.client_id.in_(open_clients)))}
    found |= {("protective_order", sid) for sid in db.scalars(
        sa.select(ProtectiveOrder.id).where(ProtectiveOrder.org_id == org_id,
                                            ProtectiveOrder.status == "granted",
                                            ProtectiveOrder.client_id.in_(open_clients)))}
    found |= {("referral", sid) for sid in db.scalars(sa.select(Referral.id).where(
        Referral.org_id == org_id, Referral.status == "sent"))}
    found |= {(kind, sid) for kind, sid in db.execute(
        sa.select(Reminder.source_kind, Reminder.source_id).where(
            Reminder.org_id == org_id, Reminder.source_kind.is_not(None),
            Reminder.state.in_(OPEN_STATES)).distinct())}
    return sorted(found, key=lambda item: (item[0], str(item[1])))


def sources_to_reevaluate(db: Session) -> list[tuple[str, UUID]]:
    """Sources whose reminders depend on time passing rather than on an edit: clients whose
    latest risk level is the highest, sent referrals, and the generated rows already open
    for either (so a condition that ended cancels its reminder)."""
    from app.referrals.models import Referral
    from app.risk.models import RiskAssessment

    latest = (sa.select(RiskAssessment.client_id,
                        sa.func.max(RiskAssessment.assessed_at).label("at"))
              .group_by(RiskAssessment.client_id).subquery())
    high = sa.select(RiskAssessment.client_id).join(
        latest, sa.and_(latest.c.client_id == RiskAssessment.client_id,
                        latest.c.at == RiskAssessment.assessed_at)).where(
        RiskAssessment.is_highest_level)
    found = {("client", cid) for cid in db.scalars(high)}
    found |= {("referral", rid) for rid in db.scalars(
        sa.select(Referral.id).where(Referral.status == "sent"))}
    found |= {(kind, sid) for kind, sid in db.execute(
        sa.select(Reminder.source_kind, Reminder.source_id).where(
            Reminder.source_kind.in_(("client", "referral")),
            Reminder.state.in_(OPEN_STATES)).distinct())}
    return sorted(found, key=lambda item: (item[0], str(item[1])))
