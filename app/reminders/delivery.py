"""Delivering due reminders exactly once, by claim, lease and a delivery row per channel.

1. Beat finds due reminders (``queue_due_reminders``) and enqueues one task per id, marking
   each ``queued_until`` the message expires; later sweeps leave it alone until then, or
   until a claim consumed the message (a claim clears the mark), so a backlog is queued
   once, not once per sweep.
2. ``claim_reminder`` takes one atomically — one conditional ``UPDATE`` whose conditions
   are the claimable ones — and leases it until ``claimed_until``; the caller commits. A
   second beat, a duplicate message or a redelivered one finds nothing to claim. A killed
   worker's lease runs out and the next sweep enqueues the reminder again.
3. ``record_delivery`` writes, per (reminder, round, channel), one ``ReminderDelivery`` row:
   the in-app notification in the same transaction as its row (exactly once by the unique
   key), the email row as ``sending`` (or ``waiting`` for quiet hours / the digest).
4. Emails are sent outside any transaction (``claim_email`` → SMTP → ``mark_sent``).
   The remaining window is SMTP's own: a worker that dies after the server accepted a
   message and before ``sent`` is committed leaves a ``sending`` row whose lease runs
   out; it is sent again, with the same Message-ID (at-least-once for those few
   milliseconds, so mail clients can fold the two). Nothing is ever lost.
5. ``finish_reminder`` marks the round delivered (or schedules a daily one's next
   occurrence), only while the claim is still the caller's.
"""

from __future__ import annotations

import atexit
import functools
import os
import secrets
import smtplib
import ssl
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage, Message
from email.mime.text import MIMEText
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from app.clients.models import Client
from app.core import keys
from app.db import utcnow
from app.identity.models import StaffUser
from app.notifications import service as notifications
from app.reminders.models import (
    NotificationPreference,
    Reminder,
    ReminderDelivery,
    ReminderState,
)
from app.reminders.rules import _client_json, local_instant, next_daily, zone
from app.settings import Settings, get_settings

LEASE = timedelta(seconds=60)
EMAIL_RETRY = timedelta(minutes=5)
# How long a message a sweep enqueued is trusted to be on its way: the message expires then,
# and only then does a sweep enqueue that reminder (or email) again. A message lost with a
# broker or with a killed worker's prefetch delays its reminder by at most this; a backlog
# longer than this is enqueued again, and the workers must then drain the expired copies
# before they reach the new ones — so it is long enough for a storm of 10,000 to be
# enqueued once, and short next to what a reminder is about (days, hours before).
QUEUE_TTL = timedelta(minutes=5)
# Ids a sweep enqueues at most, per kind: this bounds the broker's queue; it must also
# exceed what the workers can deliver in one QUEUE_TTL, or the sweep, not the workers, sets
# the pace.
SWEEP_LIMIT = 10_000
SMTP_TIMEOUT_S = 20
SMTP_IDLE_CHECK_S = 2.0  # a session silent this long is checked with NOOP before use
SMTP_MAX_IDLE_S = 60.0  # and one silent this long is closed and opened again
_R = Reminder
_D = ReminderDelivery

# What each kind of reminder is called in an email: never more than this and a case number.
KIND_LABELS = {
    "manual": "a reminder you set",
    "check_in_message": "a message to a client",
    "safety_plan_review": "a safety-plan review",
    "court_date": "a court date",
    "protective_order_expiry": "a protective order's expiry",
    "check_in": "an agreed check-in",
    "high_risk_no_contact": "contact with a client at high risk",
    "referral_unanswered": "a referral follow-up (no answer yet)",
}
# What a client receives: neutral words only, nothing about the agency or the case.
CLIENT_TEXT = {
    "court_date": "A reminder of your appointment.",
    "check_in": "A reminder to check in.",
    "check_in_message": "A reminder to check in.",
}


@dataclass(frozen=True)
class Claim:
    reminder_id: UUID
    token: str
    round: int
    repeat_daily: bool = False
    # The claimed row (read-only columns) as the claiming transaction saw it, and that
    # transaction: the row stands for the reminder only while that transaction lasts.
    row: Any = field(default=None, compare=False, repr=False)
    transaction: Any = field(default=None, compare=False, repr=False)


# --- finding and claiming -----------------------------------------------------------------


def _claimable(now: datetime) -> sa.ColumnElement[bool]:
    return sa.or_(sa.and_(_R.state == ReminderState.scheduled, _R.due_at <= now),
                  sa.and_(_R.state == ReminderState.sending, _R.claimed_until < now))


def _not_queued(column: Any, now: datetime) -> sa.ColumnElement[bool]:
    return sa.or_(column.is_(None), column < now)


def _mark_queued(db: Session, table: Any, due: sa.ColumnElement[bool], order: list[Any],
                 now: datetime, limit: int) -> list[UUID]:
    """One statement: mark up to ``limit`` rows matching ``due`` and not already queued as
    queued until ``now + QUEUE_TTL``; their ids, in ``order``. Two sweeps at once mark each
    row once (PostgreSQL: the second skips the rows the first has locked and rechecks the
    mark on the rest; SQLite runs writers one at a time)."""
    c = table.c
    waiting = sa.and_(due, _not_queued(c.queued_until, now))
    pick = sa.select(c.id).where(waiting).order_by(*order).limit(limit)
    if db.get_bind().dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    rows = db.execute(sa.update(table).where(c.id.in_(pick.scalar_subquery()), waiting)
                      .values(queued_until=now + QUEUE_TTL)
                      .returning(c.id, *order)).all()
    return [row[0] for row in sorted(rows, key=lambda row: tuple(row[1:]))]


def due_reminder_ids(db: Session, now: datetime | None = None,
                     limit: int = SWEEP_LIMIT) -> list[UUID]:
    """Reminders due, or whose worker's lease ran out (oldest first)."""
    now = now or utcnow()
    return list(db.scalars(sa.select(_R.id).where(_claimable(now))
                           .order_by(_R.due_at, _R.id).limit(limit)))


def queue_due_reminders(db: Session, now: datetime | None = None,
                        limit: int = SWEEP_LIMIT) -> list[UUID]:
    """What a sweep enqueues: the due reminders (oldest first) that no unexpired message is
    already on its way for, marked as queued in the caller's transaction."""
    now = now or utcnow()
    table = _R.__table__
    return _mark_queued(db, table, _claimable(now), [table.c.due_at, table.c.id], now, limit)


def claim_reminder(db: Session, reminder_id: UUID, *, now: datetime | None = None
                   ) -> Claim | None:
    """Take one due reminder for delivery, atomically; None if it is not due, is held by
    another worker's live lease, or was taken a moment ago. The caller commits.

    One statement: an UPDATE whose conditions are the claimable ones. Of two claimers the
    second waits for the first one's commit, then finds the conditions no longer hold
    (PostgreSQL checks them again on the row as committed; SQLite runs writers one at a
    time). A row another transaction holds is waited for, never skipped: the message that
    asked for this claim is spent either way, so a claim that gave up on a due reminder
    would leave it to wait out ``QUEUE_TTL`` before a sweep sent it again. (Two sweeps at
    once hold rows like that on PostgreSQL: the second locks again the rows the first has
    just marked, until it commits.)"""
    now = now or utcnow()
    token = secrets.token_urlsafe(24)
    row = db.connection().execute(_claim_statement(), {
        "reminder_id": reminder_id, "now": now, "token": token,
        "lease": now + LEASE}).first()
    if row is None:
        return None
    _forget_loaded(db, reminder_id)
    return Claim(reminder_id, token, row.round, row.repeat_daily, row, db.get_transaction())


@functools.cache
def _claim_statement() -> Any:
    """The claim, built once: building this statement costs more than running it, and a
    storm of reminders is mostly this path (Core, not the ORM, for the same reason).
    Parameters: reminder_id, now, token, lease."""
    now = sa.bindparam("now")
    return (sa.update(_R.__table__).where(_R.id == sa.bindparam("reminder_id"),
                                          _claimable(now))
            .values(state=ReminderState.sending, claim_token=sa.bindparam("token"),
                    claimed_until=sa.bindparam("lease"), attempts=_R.attempts + 1,
                    queued_until=None)  # its message is consumed
            .returning(*_R.__table__.c))


def _forget_loaded(db: Session, reminder_id: UUID) -> None:
    """A Core UPDATE leaves a reminder this session loaded earlier as it was: expire it,
    so the session reads the row again if asked."""
    loaded = db.identity_map.get(db.identity_key(Reminder, reminder_id))
    if loaded is not None:
        db.expire(loaded)


def _claimed(db: Session, claim: Claim) -> Any:
    """The claimed reminder, to read, if the claim still holds: the claiming
    transaction's row while that transaction lasts, otherwise read again."""
    if claim.row is not None and claim.transaction is not None \
            and db.get_transaction() is claim.transaction:
        return claim.row
    return _still_ours(db, claim)


def _still_ours(db: Session, claim: Claim) -> Reminder | None:
    """The claimed reminder, loaded to change, if the claim still holds (else None)."""
    row = db.get(Reminder, claim.reminder_id, populate_existing=True)
    if row is None or row.state != ReminderState.sending or row.claim_token != claim.token:
        return None
    return row


# --- recording a delivery -------------------------------------------------------------------


def _delivery_values(row: Any, channel: str, state: str, *,
                     recipient_id: UUID | None = None, not_before: datetime | None = None,
                     lease: datetime | None = None) -> dict[str, Any]:
    """One delivery row's columns (every column, so that rows insert together)."""
    stamp = utcnow()
    return {"id": uuid4(), "org_id": row.org_id, "reminder_id": row.id, "round": row.round,
            "channel": channel, "recipient_id": recipient_id, "state": state,
            "not_before": not_before, "claimed_until": lease, "queued_until": None,
            "attempts": 1 if state == "sending" else 0, "created_at": stamp,
            "sent_at": stamp if state in ("sent", "needs_person") else None}


def _add_deliveries(db: Session, rows: list[dict[str, Any]]) -> dict[str, UUID]:
    """The new delivery rows' ids by channel: one INSERT … ON CONFLICT DO NOTHING for
    every row, so a row that exists already for (reminder, round, channel) — an earlier
    attempt at this round — is left alone and missing from the answer."""
    statement = _delivery_insert(db.get_bind().dialect.name == "postgresql")
    made = db.connection().execute(statement, rows).all()
    return {channel: delivery_id for channel, delivery_id in made}


@functools.cache
def _delivery_insert(postgresql: bool) -> Any:
    insert: Any = postgresql_insert if postgresql else sqlite_insert
    table = _D.__table__
    return (insert(table).on_conflict_do_nothing(
        index_elements=["reminder_id", "round", "channel"])
        .returning(table.c.channel, table.c.id))


def _add_delivery(db: Session, row: Reminder, channel: str, state: str, *,
                  recipient_id: UUID | None = None, not_before: datetime | None = None,
                  lease: datetime | None = None) -> UUID | None:
    """The new delivery row's id for (reminder, round, channel), or None when that row
    exists already (an earlier attempt at this round)."""
    return _add_deliveries(db, [_delivery_values(
        row, channel, state, recipient_id=recipient_id, not_before=not_before,
        lease=lease)]).get(channel)


def _hhmm_minutes(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def quiet_until(pref: NotificationPreference | None, now: datetime) -> datetime | None:
    """The end of the user's quiet hours if ``now`` falls within them, else None."""
    if pref is None or not pref.quiet_start or not pref.quiet_end:
        return None
    local = now.astimezone(zone(pref.time_zone))
    minute = local.hour * 60 + local.minute
    start, end = _hhmm_minutes(pref.quiet_start), _hhmm_minutes(pref.quiet_end)
    inside = start <= minute < end if start < end else (minute >= start or minute < end)
    if not inside:
        return None
    day = local.date() if minute < end else local.date() + timedelta(days=1)
    return local_instant(day, pref.quiet_end, pref.time_zone)


def next_digest(pref: NotificationPreference, now: datetime) -> datetime:
    day = next_daily(pref.digest_time, pref.time_zone, now)
    return local_instant(day, pref.digest_time, pref.time_zone)


@dataclass
class DeliveryPlan:
    """What a claimed reminder still needs sent by email (delivery ids), after its in-app
    notification and every other row were recorded."""

    emails: list[UUID] = field(default_factory=list)
    # Messages composed while recording (staff emails): no second look-up before sending.
    messages: dict[UUID, Message] = field(default_factory=dict)

    def composed(self, db: Session) -> list[tuple[UUID, Message]]:
        """Every email of the plan with its message (composed now where it was not yet);
        call within the recording transaction."""
        found = []
        for delivery_id in self.emails:
            message = self.messages.get(delivery_id) or compose_email(db, delivery_id)
            if message is not None:
                found.append((delivery_id, message))
        return found


# Who a staff reminder goes to, and their preferences (None: the defaults), built once.
_ASSIGNEE = sa.select(StaffUser.id, StaffUser.email, StaffUser.is_active,
                      NotificationPreference).outerjoin(
    NotificationPreference, NotificationPreference.user_id == StaffUser.id).where(
    StaffUser.id == sa.bindparam("user_id"))


def _staff_delivery(db: Session, row: Reminder, settings: Settings, now: datetime,
                    plan: DeliveryPlan) -> None:
    """The in-app notification and, by the assignee's preferences, the email (now, after
    quiet hours, or in the digest): every delivery row in one INSERT."""
    found = db.execute(_ASSIGNEE, {"user_id": row.assignee_id}).first()
    rows = [_delivery_values(row, "in_app", "sent", recipient_id=row.assignee_id)]
    sending = False
    if found is not None and settings.smtp_host and found.is_active \
            and (found.NotificationPreference is None
                 or found.NotificationPreference.email_enabled):
        user_id, pref = found.id, found.NotificationPreference
        if pref is not None and pref.daily_digest:
            rows.append(_delivery_values(row, "digest", "waiting", recipient_id=user_id,
                                         not_before=next_digest(pref, now)))
        elif (later := quiet_until(pref, now)) is not None:
            rows.append(_delivery_values(row, "email", "waiting", recipient_id=user_id,
                                         not_before=later))
        else:
            rows.append(_delivery_values(row, "email", "sending", recipient_id=user_id,
                                         lease=now + LEASE))
            sending = True
    made = _add_deliveries(db, rows)
    if "in_app" in made:
        notifications.record_notification(db, org_id=row.org_id, user_id=row.assignee_id,
                                          kind="reminder_due", object_type="reminder",
                                          object_id=row.id)
    email = made.get("email") if sending else None
    if email is not None:
        assert found is not None
        plan.emails.append(email)
        plan.messages[email] = staff_message(row, found.email, email, case_number(db, row),
                                             settings)


def client_gate(db: Session, row: Reminder, now: datetime,
                settings: Settings) -> tuple[str | None, str | None]:
    """(held reason, email address): may this reminder reach the client on its channel
    now, by the client's safe-contact preferences? The default is never."""
    client = db.get(Client, row.client_id)
    if client is None or client.status == "closed" or client.purged_at is not None:
        return "client_closed", None
    try:
        safe = _client_json(db, client, "safe_contact") or {}
    except keys.KeyDestroyed:
        return "client_closed", None
    channels = [c for c in safe.get("channels", []) if c.get("channel") == row.channel]
    if not safe.get("channels"):
        return "never_contact", None
    if not channels or not any(c.get("safe") for c in channels):
        return "channel_not_safe", None
    local = now.astimezone(zone(safe.get("time_zone")))
    day = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[local.weekday()]
    minute = local.hour * 60 + local.minute
    allowed = False
    for channel in channels:
        if not channel.get("safe"):
            continue
        windows = channel.get("windows") or []
        if not windows or any(day in w["days"] and _hhmm_minutes(w["start"]) <= minute
                              < _hhmm_minutes(w["end"]) for w in windows):
            allowed = True
    if not allowed:
        return "outside_window", None
    if row.channel != "email":
        return None, None
    if not settings.smtp_host:
        return "email_unavailable", None
    details = _client_json(db, client, "contact_details") or []
    address = next((d["value"] for d in details if d.get("kind") == "email"), None)
    if address is None:
        return "no_address", None
    return None, address


def _client_delivery(db: Session, row: Reminder, settings: Settings, now: datetime,
                     plan: DeliveryPlan) -> str | None:
    """Returns the held reason, if the client's preferences do not allow it now."""
    if db.scalar(sa.select(_D.id).where(_D.reminder_id == row.id, _D.round == row.round,
                                        _D.channel.like("client_%"))) is not None:
        return None  # recorded by an earlier attempt at this round
    reason, _address = client_gate(db, row, now, settings)
    if reason is not None:
        notifications.notify(db, org_id=row.org_id, user_ids=[row.assignee_id],
                             kind=f"reminder_held_{reason}", object_type="reminder",
                             object_id=row.id)
        return reason
    if row.channel == "email":
        email = _add_delivery(db, row, "client_email", "sending", lease=now + LEASE)
        if email is not None:
            plan.emails.append(email)
    else:
        # SMS and phone are not sent automatically: a person makes the contact.
        if _add_delivery(db, row, f"client_{row.channel}", "needs_person") is not None:
            notifications.notify(db, org_id=row.org_id, user_ids=[row.assignee_id],
                                 kind="reminder_needs_person", object_type="reminder",
                                 object_id=row.id)
    return None


def record_delivery(db: Session, claim: Claim, *, now: datetime | None = None,
                    settings: Settings | None = None) -> tuple[DeliveryPlan, str | None]:
    """Record what a claimed reminder delivers (idempotent per channel). Returns the plan
    and, for a message to the client its preferences refuse, the held reason."""
    now, settings = now or utcnow(), settings or get_settings()
    plan = DeliveryPlan()
    row = _claimed(db, claim)
    if row is None:
        return plan, None
    if row.audience == "client":
        return plan, _client_delivery(db, row, settings, now, plan)
    _staff_delivery(db, row, settings, now, plan)
    return plan, None


# The common end of a round (delivered, the claim still the caller's), built once.
_DELIVERED = sa.update(_R.__table__).where(
    _R.id == sa.bindparam("reminder_id"), _R.state == ReminderState.sending,
    _R.claim_token == sa.bindparam("token")).values(
    state=ReminderState.delivered, delivered_at=sa.bindparam("now"), claim_token=None,
    claimed_until=None, updated_at=sa.bindparam("now")).returning(_R.id)


def finish_reminder(db: Session, claim: Claim, held_reason: str | None = None,
                    *, now: datetime | None = None) -> str | None:
    """Close the claimed round: delivered, held (with its reason), or — for a daily
    reminder — scheduled at its next local occurrence. None if the claim was lost
    (cancelled, moved or completed meanwhile)."""
    now = now or utcnow()
    if held_reason is None and not claim.repeat_daily:
        # The common case in one statement: delivered, if the claim still holds.
        done = db.connection().execute(_DELIVERED, {
            "reminder_id": claim.reminder_id, "token": claim.token, "now": now}).first()
        _forget_loaded(db, claim.reminder_id)
        return ReminderState.delivered if done is not None else None
    row = _still_ours(db, claim)
    if row is None:
        return None
    row.claim_token = row.claimed_until = None
    row.updated_at = now
    if held_reason is not None:
        row.state, row.held_reason = ReminderState.held, held_reason
    elif row.repeat_daily and row.local_time and row.time_zone:
        row.local_date = next_daily(row.local_time, row.time_zone, max(now, row.due_at))
        row.due_at = local_instant(row.local_date, row.local_time, row.time_zone)
        row.state, row.round, row.delivered_at = ReminderState.scheduled, row.round + 1, now
    else:
        row.state, row.delivered_at = ReminderState.delivered, now
    db.flush()
    return row.state


# --- email ----------------------------------------------------------------------------------


def due_email_ids(db: Session, now: datetime | None = None,
                  limit: int = SWEEP_LIMIT) -> list[UUID]:
    """Single emails waiting for the end of quiet hours or a retry, or whose sender's
    lease ran out (a worker killed mid-send)."""
    now = now or utcnow()
    return list(db.scalars(sa.select(_D.id).where(
        _D.channel.in_(("email", "client_email")), _email_claimable(now))
        .order_by(_D.not_before, _D.id).limit(limit)))


def queue_due_emails(db: Session, now: datetime | None = None,
                     limit: int = SWEEP_LIMIT) -> list[UUID]:
    """What a sweep enqueues: the emails of :func:`due_email_ids` that no unexpired message
    is already on its way for, marked as queued in the caller's transaction."""
    now = now or utcnow()
    table = _D.__table__
    due = sa.and_(table.c.channel.in_(("email", "client_email")), _email_claimable(now))
    return _mark_queued(db, table, due, [table.c.not_before, table.c.id], now, limit)


def _email_claimable(now: datetime) -> sa.ColumnElement[bool]:
    return sa.or_(sa.and_(_D.state == "waiting", _D.not_before <= now),
                  sa.and_(_D.state == "sending", _D.claimed_until < now))


def claim_email(db: Session, delivery_id: UUID, *, now: datetime | None = None) -> bool:
    """Take a waiting or abandoned email for one attempt (atomic, leased); commit after."""
    now = now or utcnow()
    seen = db.execute(sa.select(_D.state, _D.attempts).where(
        _D.id == delivery_id, _email_claimable(now))).first()
    if seen is None:
        return False
    done = db.execute(sa.update(_D.__table__).where(
        _D.id == delivery_id, _email_claimable(now), _D.state == seen.state,
        _D.attempts == seen.attempts).values(
        state="sending", claimed_until=now + LEASE, attempts=seen.attempts + 1,
        queued_until=None)
        .returning(_D.id)).first()
    return done is not None


def _message_id(delivery_id: UUID, settings: Settings) -> str:
    host = urlsplit(settings.public_url).hostname or "advocase.invalid"
    return f"<reminder-{delivery_id}@{host}>"


def compose_email(db: Session, delivery_id: UUID, *, now: datetime | None = None,
                  settings: Settings | None = None) -> Message | None:
    """The message for a delivery in ``sending``: to staff, what is due, the case number
    and a link — never a client's name, address, note or narrative. To a client, a
    neutral line only, and only while their preferences still allow it."""
    now, settings = now or utcnow(), settings or get_settings()
    delivery = db.get(ReminderDelivery, delivery_id, populate_existing=True)
    if delivery is None or delivery.state != "sending":
        return None
    row = db.get(Reminder, delivery.reminder_id)
    assert row is not None
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["Message-ID"] = _message_id(delivery.id, settings)
    if delivery.channel == "client_email":
        reason, address = client_gate(db, row, now, settings)
        if reason is not None or address is None:
            delivery.state = "skipped"
            notifications.notify(db, org_id=row.org_id, user_ids=[row.assignee_id],
                                 kind=f"reminder_held_{reason or 'no_address'}",
                                 object_type="reminder", object_id=row.id)
            db.flush()
            return None
        message["To"] = address
        message["Subject"] = "Reminder"
        message.set_content(CLIENT_TEXT.get(row.kind, "A reminder.") + "\n")
        return message
    user = db.get(StaffUser, delivery.recipient_id)
    if user is None:
        delivery.state = "skipped"
        db.flush()
        return None
    return staff_message(row, user.email, delivery.id, case_number(db, row), settings)


def case_number(db: Session, row: Reminder) -> str | None:
    if row.client_id is None:
        return None
    return db.scalar(sa.select(Client.case_number).where(Client.id == row.client_id))


def staff_message(row: Any, to: str, delivery_id: UUID, case: str | None,
                  settings: Settings) -> Message:
    """A staff email: what is due, the case number and a link — nothing of the client.
    Plain MIMEText: a fifth of EmailMessage's cost, the same message on the wire."""
    label = KIND_LABELS.get(row.kind, "a reminder")
    link = f"{settings.public_url.rstrip('/')}/dashboard/reminders/{row.id}"
    lines = [f"Due {row.due_at.strftime('%Y-%m-%d %H:%M')} UTC: {label}."]
    if case:
        lines.append(f"Case number: {case}")
    lines += [f"Open it in advocase: {link}", "",
              "(Details are in the dashboard only; this email carries none.)"]
    message: Message
    if (to + settings.smtp_from).isascii():
        message = MIMEText("\n".join(lines) + "\n", "plain", "utf-8")
    else:  # an internationalised address needs the modern policy (SMTPUTF8)
        message = EmailMessage()
        message.set_content("\n".join(lines) + "\n")
    message["From"] = settings.smtp_from
    message["Message-ID"] = _message_id(delivery_id, settings)
    message["To"] = to
    message["Subject"] = f"Due: {label}" + (f" (case {case})" if case else "")
    return message


def compose_digest(db: Session, user_id: UUID, delivery_ids: list[UUID],
                   settings: Settings | None = None) -> EmailMessage | None:
    settings = settings or get_settings()
    user = db.get(StaffUser, user_id)
    if user is None or not delivery_ids:
        return None
    rows = db.execute(sa.select(_R.kind, _R.due_at, _R.id, Client.case_number)
                      .join(_D, _D.reminder_id == _R.id)
                      .outerjoin(Client, Client.id == _R.client_id)
                      .where(_D.id.in_(delivery_ids)).order_by(_R.due_at)).all()
    base = settings.public_url.rstrip("/")
    message = EmailMessage()
    message["From"], message["To"] = settings.smtp_from, user.email
    message["Subject"] = f"Your reminders: {len(rows)} due"
    message["Message-ID"] = _message_id(min(delivery_ids), settings).replace(
        "reminder-", "digest-")
    lines = [f"{r.due_at.strftime('%Y-%m-%d %H:%M')} UTC: {KIND_LABELS.get(r.kind, 'a reminder')}"
             + (f" (case {r.case_number})" if r.case_number else "")
             + f" {base}/dashboard/reminders/{r.id}" for r in rows]
    message.set_content("\n".join(lines) + "\n")
    return message


@dataclass
class _SmtpLink:
    """A worker thread's open SMTP session, kept between messages: a reminder storm
    would otherwise pay a connection, EHLO, STARTTLS and login per email. One per thread
    (an SMTP conversation cannot be shared; Celery's threads pool runs tasks side by
    side) and per process (never used across a fork)."""

    key: tuple[Any, ...]
    pid: int
    smtp: smtplib.SMTP
    used: float


class _Links(threading.local):
    link: _SmtpLink | None = None


_links = _Links()


def _settings_key(settings: Settings) -> tuple[Any, ...]:
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    return (settings.smtp_host, settings.smtp_port, settings.smtp_starttls,
            settings.smtp_username, password)


def _open_smtp(settings: Settings) -> smtplib.SMTP:
    assert settings.smtp_host
    smtp = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=SMTP_TIMEOUT_S)
    try:
        if settings.smtp_starttls:
            smtp.starttls(context=ssl.create_default_context())
        if settings.smtp_username and settings.smtp_password:
            smtp.login(settings.smtp_username, settings.smtp_password.get_secret_value())
    except BaseException:
        smtp.close()
        raise
    return smtp


def close_smtp() -> None:
    """End this thread's SMTP session, if any (QUIT, then close)."""
    link, _links.link = _links.link, None
    if link is None or link.pid != os.getpid():
        return
    try:
        link.smtp.quit()
    except (smtplib.SMTPException, OSError):
        link.smtp.close()


def _session(settings: Settings) -> smtplib.SMTP:
    """This thread's SMTP session for these settings: reused while it is fresh; after
    SMTP_IDLE_CHECK_S of silence checked with a NOOP first (servers close idle sessions),
    and opened again when that fails. Never shared across a fork or between threads."""
    key, now = _settings_key(settings), time.monotonic()
    link = _links.link
    if link is not None and (link.pid != os.getpid() or link.key != key
                             or now - link.used > SMTP_MAX_IDLE_S):
        if link.pid == os.getpid():
            close_smtp()
        link = _links.link = None
    if link is not None and now - link.used > SMTP_IDLE_CHECK_S:
        try:
            alive = link.smtp.noop()[0] == 250
        except (smtplib.SMTPException, OSError):
            alive = False
        if not alive:
            link.smtp.close()
            link = _links.link = None
    if link is None:
        link = _links.link = _SmtpLink(key, os.getpid(), _open_smtp(settings), now)
    return link.smtp


atexit.register(close_smtp)


def smtp_send(message: Message, settings: Settings | None = None) -> None:
    """Hand one message to the configured SMTP server (raises on failure). A failure
    drops the session, so the next message starts with a new one; the message is never
    sent again here (the caller records the failure and the sweep retries later)."""
    settings = settings or get_settings()
    smtp = _session(settings)
    try:
        smtp.send_message(message)
    except BaseException:
        _links.link = None
        smtp.close()
        raise
    if _links.link is not None:
        _links.link.used = time.monotonic()


_SENT = sa.update(_D.__table__).where(
    _D.id.in_(sa.bindparam("ids", expanding=True)), _D.state == "sending").values(
    state="sent", sent_at=sa.bindparam("now"), claimed_until=None)


def mark_sent(db: Session, delivery_ids: list[UUID], *, now: datetime | None = None) -> None:
    db.connection().execute(_SENT, {"ids": list(delivery_ids), "now": now or utcnow()})


def mark_failed(db: Session, delivery_ids: list[UUID], *, now: datetime | None = None) -> None:
    """SMTP refused or could not be reached: wait and try again (the sweep sends it)."""
    now = now or utcnow()
    db.execute(sa.update(_D.__table__).where(_D.id.in_(delivery_ids), _D.state == "sending")
               .values(state="waiting", not_before=now + EMAIL_RETRY, claimed_until=None))


# --- digest ---------------------------------------------------------------------------------


def users_with_due_digest(db: Session, now: datetime | None = None) -> list[UUID]:
    now = now or utcnow()
    return list(db.scalars(sa.select(_D.recipient_id).where(
        _D.channel == "digest", _email_claimable(now)).distinct()))


def claim_digest(db: Session, user_id: UUID, *, now: datetime | None = None) -> list[UUID]:
    """Take every digest line due for one user (atomically per line); commit after."""
    now = now or utcnow()
    ids = list(db.scalars(sa.select(_D.id).where(_D.channel == "digest",
                                                 _D.recipient_id == user_id,
                                                 _email_claimable(now))))
    taken = []
    for delivery_id in ids:
        if claim_email(db, delivery_id, now=now):
            taken.append(delivery_id)
    return taken


def summary(db: Session) -> dict[str, Any]:
    """Counts by state (for diagnostics and tests; no personal data)."""
    return dict(db.execute(sa.select(_R.state, sa.func.count()).group_by(_R.state)).all())
