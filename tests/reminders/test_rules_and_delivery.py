"""Rules (court dates, orders, plan reviews, check-ins across DST), moving and cancelling
with the source; delivery in process: claims, email content, client gating, quiet hours."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from app.db import utcnow
from app.legal import service as legal
from app.notifications.models import Notification
from app.reminders import delivery, rules
from app.reminders.models import NotificationPreference, Reminder, ReminderDelivery
from app.reminders.schemas import ReminderCreate
from app.reminders.service import create_reminder
from app.safety_plans import service as plans
from tests.reminders.conftest import (
    CLIENT_ADDRESS,
    CLIENT_EMAIL,
    CLIENT_NAME,
    NOTE,
    Agency,
    actor_of,
    make_agency,
    smtp_settings,
)


def generated(db: Session, kind: str, source_id: Any) -> list[Reminder]:
    return list(db.scalars(sa.select(Reminder).where(
        Reminder.source_kind == kind, Reminder.source_id == source_id).order_by(Reminder.due_at)))


def test_court_date_reminders_appear_move_and_vanish(db: Session, agency: Agency) -> None:
    actor = actor_of(agency.advocate)
    starts = (utcnow() + timedelta(days=10)).replace(hour=14, minute=0, second=0, microsecond=0)
    hearing = legal.record_court_date(db, actor, agency.client_id, kind="custody",
                                      starts_at=starts, time_zone="Europe/London").hearing
    made = generated(db, "court_date", hearing.id)
    assert [r.rule_key for r in made] == ["court_date:7d", "court_date:1d"]
    london = starts.astimezone(rules.zone("Europe/London")).date()
    assert made[0].local_date == london - timedelta(days=7) and made[0].local_time == "09:00"
    assert made[0].due_at == rules.local_instant(london - timedelta(days=7), "09:00",
                                                 "Europe/London")
    assert all(r.assignee_id == agency.advocate.id and r.state == "scheduled" for r in made)

    legal.update_court_date(db, actor, agency.client_id, hearing.id,
                            {"starts_at": starts + timedelta(days=14)})
    moved = generated(db, "court_date", hearing.id)
    assert [r.id for r in moved] == [r.id for r in made]
    assert moved[0].local_date == london + timedelta(days=7)

    legal.update_court_date(db, actor, agency.client_id, hearing.id, {"status": "cancelled"})
    assert {r.state for r in generated(db, "court_date", hearing.id)} == {"cancelled"}


def test_a_lead_already_past_is_not_created(db: Session, agency: Agency) -> None:
    hearing = legal.record_court_date(db, actor_of(agency.advocate), agency.client_id,
                                      kind="criminal", starts_at=utcnow() + timedelta(days=3),
                                      time_zone="UTC").hearing
    assert [r.rule_key for r in generated(db, "court_date", hearing.id)] == ["court_date:1d"]


def test_order_expiry_reminders(db: Session, agency: Agency) -> None:
    actor = actor_of(agency.advocate)
    expires = utcnow().date() + timedelta(days=60)
    order = legal.record_order(db, actor, agency.client_id, order_type="final",
                               status="granted", issued_on=utcnow().date(),
                               expires_on=expires).order
    assert [(r.rule_key, r.local_date) for r in generated(db, "protective_order", order.id)] \
        == [("order_expiry:30d", expires - timedelta(days=30)),
            ("order_expiry:7d", expires - timedelta(days=7))]
    legal.update_order(db, actor, agency.client_id, order.id, {"status": "dismissed"})
    assert {r.state for r in generated(db, "protective_order", order.id)} == {"cancelled"}


def test_plan_review_and_a_daily_check_in_stay_at_local_time_across_dst(
        db: Session) -> None:
    made = make_agency(db, safe_contact={"time_zone": "Europe/London", "channels": []})
    review = utcnow().date() + timedelta(days=20)
    plans.create_version(db, actor_of(made.advocate), made.client_id,
                         content={"code_word": {"check_in_time": "09:00"}}, review_date=review)
    by_key = {r.rule_key: r for r in generated(db, "safety_plan", made.client_id)}
    assert by_key["plan_review"].local_date == review
    check_in = by_key["check_in"]
    assert check_in.repeat_daily and check_in.time_zone == "Europe/London"

    # Freeze the clock around the changes of March and October 2027 (London).
    for day, utc_hour in ((date(2027, 3, 27), 9), (date(2027, 3, 28), 8),
                          (date(2027, 10, 30), 8), (date(2027, 10, 31), 9)):
        assert rules.local_instant(day, "09:00", "Europe/London") == datetime(
            day.year, day.month, day.day, utc_hour, tzinfo=UTC)
    check_in.local_date = date(2027, 3, 27)
    check_in.due_at = rules.local_instant(check_in.local_date, "09:00", "Europe/London")
    db.flush()
    now = check_in.due_at + timedelta(seconds=1)
    claim = delivery.claim_reminder(db, check_in.id, now=now)
    assert claim is not None
    delivery.finish_reminder(db, claim, now=now)
    db.refresh(check_in)
    assert check_in.state == "scheduled" and check_in.round == 2
    assert check_in.due_at == datetime(2027, 3, 28, 8, 0, tzinfo=UTC)  # 09:00 BST
    check_in.local_date = date(2027, 10, 30)
    check_in.due_at = rules.local_instant(check_in.local_date, "09:00", "Europe/London")
    db.flush()
    now = check_in.due_at + timedelta(seconds=1)
    claim = delivery.claim_reminder(db, check_in.id, now=now)
    assert claim is not None
    delivery.finish_reminder(db, claim, now=now)
    db.refresh(check_in)
    assert check_in.due_at == datetime(2027, 10, 31, 9, 0, tzinfo=UTC)  # 09:00 GMT


def test_a_reminder_is_claimed_once(db: Session, agency: Agency) -> None:
    record = create_reminder(db, actor_of(agency.advocate),
                             ReminderCreate(due_at=utcnow() + timedelta(minutes=1)))
    later = utcnow() + timedelta(minutes=2)
    assert delivery.claim_reminder(db, record.reminder.id, now=later - timedelta(minutes=5)) \
        is None  # not due yet
    first = delivery.claim_reminder(db, record.reminder.id, now=later)
    assert first is not None
    assert delivery.claim_reminder(db, record.reminder.id, now=later) is None
    # The lease of a vanished worker runs out: taken again, and the first claim is void.
    again = delivery.claim_reminder(db, record.reminder.id,
                                    now=later + delivery.LEASE + timedelta(seconds=1))
    assert again is not None and again.token != first.token
    assert delivery.finish_reminder(db, first) is None
    assert delivery.finish_reminder(db, again) == "delivered"


def _queued_until(db: Session, table: Any, row_id: Any) -> datetime | None:
    return db.scalar(sa.select(table.queued_until).where(table.id == row_id))


def test_a_due_reminder_is_queued_once_until_its_message_expires_or_is_consumed(
        db: Session, agency: Agency) -> None:
    record = create_reminder(db, actor_of(agency.advocate),
                             ReminderCreate(due_at=utcnow() + timedelta(minutes=1)))
    reminder_id = record.reminder.id
    due = utcnow() + timedelta(minutes=2)
    assert reminder_id not in delivery.queue_due_reminders(db, now=due - timedelta(minutes=5))
    assert reminder_id in delivery.queue_due_reminders(db, now=due)
    assert _queued_until(db, Reminder, reminder_id) == due + delivery.QUEUE_TTL
    # The next sweeps (or a second beat) while that message may still be waiting: nothing.
    for seconds in (0, 15, 45):
        assert reminder_id not in delivery.queue_due_reminders(
            db, now=due + timedelta(seconds=seconds))
    # The message expired unconsumed (lost with a broker, or with a killed worker's queue).
    expired = due + delivery.QUEUE_TTL + timedelta(seconds=1)
    assert reminder_id in delivery.queue_due_reminders(db, now=expired)
    # A claim consumes it: once the claimer's lease runs out, the next sweep queues it at once.
    claim = delivery.claim_reminder(db, reminder_id, now=expired)
    assert claim is not None and _queued_until(db, Reminder, reminder_id) is None
    lease_over = expired + delivery.LEASE + timedelta(seconds=1)
    assert reminder_id in delivery.queue_due_reminders(db, now=lease_over)


def test_a_sweep_queues_at_most_its_limit_oldest_first(db: Session, agency: Agency) -> None:
    now = utcnow()
    made = [create_reminder(db, actor_of(agency.advocate), ReminderCreate(
        due_at=now + timedelta(minutes=minutes))).reminder.id for minutes in (3, 1, 2)]
    later = now + timedelta(minutes=4)
    mine = set(made)
    first = [i for i in delivery.queue_due_reminders(db, now=later, limit=10_000) if i in mine]
    assert first == [made[1], made[2], made[0]]


def _deliver(db: Session, reminder: Reminder, settings: Any, smtp: Any,
             now: datetime | None = None) -> tuple[str | None, list[Any]]:
    now = now or reminder.due_at + timedelta(seconds=1)
    claim = delivery.claim_reminder(db, reminder.id, now=now)
    assert claim is not None
    plan, held = delivery.record_delivery(db, claim, now=now, settings=settings)
    for delivery_id in plan.emails:
        message = delivery.compose_email(db, delivery_id, now=now, settings=settings)
        assert message is not None
        delivery.smtp_send(message, settings)
        delivery.mark_sent(db, [delivery_id], now=now)
    delivery.finish_reminder(db, claim, held, now=now)
    return held, plan.emails


def test_staff_email_names_the_case_and_nothing_of_the_client(
        db: Session, agency: Agency, settings: Any, smtp_server: Any) -> None:
    configured = smtp_settings(settings, smtp_server.port)
    record = create_reminder(db, actor_of(agency.advocate), ReminderCreate(
        due_at=utcnow() + timedelta(minutes=1), client_id=agency.client_id, note=NOTE))
    held, emails = _deliver(db, record.reminder, configured, smtp_server)
    assert held is None and len(emails) == 1
    [message] = smtp_server.messages
    text = message.as_string() + message.get_payload(decode=True).decode()
    assert record.case_number in text and str(record.reminder.id) in text
    for secret in (CLIENT_NAME, CLIENT_ADDRESS, CLIENT_EMAIL, NOTE, "Robin", "Imaginary"):
        assert secret not in text
    assert message["To"] == agency.advocate.email
    assert db.scalar(sa.select(sa.func.count()).select_from(Notification).where(
        Notification.object_id == record.reminder.id, Notification.kind == "reminder_due")) == 1
    assert db.get(Reminder, record.reminder.id).state == "delivered"


def test_quiet_hours_hold_the_email_until_they_end(db: Session, agency: Agency,
                                                   settings: Any, smtp_server: Any) -> None:
    configured = smtp_settings(settings, smtp_server.port)
    db.add(NotificationPreference(user_id=agency.advocate.id, org_id=agency.org.id,
                                  time_zone="UTC", quiet_start="00:00", quiet_end="23:59"))
    record = create_reminder(db, actor_of(agency.advocate),
                             ReminderCreate(due_at=utcnow() + timedelta(minutes=1)))
    now = datetime.combine(utcnow().date() + timedelta(days=1), datetime.min.time(),
                           tzinfo=UTC) + timedelta(hours=12)
    record.reminder.due_at = now - timedelta(minutes=1)
    _, emails = _deliver(db, record.reminder, configured, smtp_server, now=now)
    assert emails == [] and smtp_server.messages == []
    row = db.scalar(sa.select(ReminderDelivery).where(
        ReminderDelivery.reminder_id == record.reminder.id, ReminderDelivery.channel == "email"))
    assert row.state == "waiting" and row.not_before > now
    assert delivery.due_email_ids(db, now=now) == []
    assert row.id in delivery.due_email_ids(db, now=row.not_before)
    assert row.id not in delivery.queue_due_emails(db, now=now)
    assert row.id in delivery.queue_due_emails(db, now=row.not_before)
    assert row.id not in delivery.queue_due_emails(db, now=row.not_before)  # queued once
    assert delivery.claim_email(db, row.id, now=row.not_before)
    assert _queued_until(db, ReminderDelivery, row.id) is None  # its message was consumed


SAFE_EMAIL_WEEKDAYS = {"time_zone": "America/New_York", "channels": [
    {"channel": "email", "safe": True,
     "windows": [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "10:00", "end": "16:00"}]},
    {"channel": "sms", "safe": False}]}


def _client_message(db: Session, made: Agency, channel: str) -> Reminder:
    return create_reminder(db, actor_of(made.advocate), ReminderCreate(
        due_at=utcnow() + timedelta(minutes=1), client_id=made.client_id, audience="client",
        channel=channel)).reminder


def _held_notice(db: Session, made: Agency, reminder: Reminder) -> str:
    return db.scalar(sa.select(Notification.kind).where(
        Notification.object_id == reminder.id, Notification.user_id == made.advocate.id))


def test_client_messages_are_held_unless_the_client_allows_channel_and_time(
        db: Session, settings: Any, smtp_server: Any) -> None:
    configured = smtp_settings(settings, smtp_server.port)
    # Default: never contact.
    never = make_agency(db)
    reminder = _client_message(db, never, "email")
    assert _deliver(db, reminder, configured, smtp_server)[0] == "never_contact"
    assert db.get(Reminder, reminder.id).state == "held"
    assert _held_notice(db, never, reminder) == "reminder_held_never_contact"

    made = make_agency(db, safe_contact=SAFE_EMAIL_WEEKDAYS)
    wednesday_noon = datetime(2027, 1, 13, 17, 0, tzinfo=UTC)  # 12:00 in New York
    saturday_noon = datetime(2027, 1, 16, 17, 0, tzinfo=UTC)
    wednesday_night = datetime(2027, 1, 14, 3, 0, tzinfo=UTC)  # 22:00 in New York
    for when, reason in ((saturday_noon, "outside_window"), (wednesday_night, "outside_window")):
        reminder = _client_message(db, made, "email")
        reminder.due_at = when - timedelta(minutes=1)
        assert _deliver(db, reminder, configured, smtp_server, now=when)[0] == reason
        assert _held_notice(db, made, reminder) == f"reminder_held_{reason}"
    sms = _client_message(db, made, "sms")
    assert _deliver(db, sms, configured, smtp_server, now=wednesday_noon)[0] \
        == "channel_not_safe"
    assert smtp_server.messages == []

    allowed = _client_message(db, made, "email")
    allowed.due_at = wednesday_noon - timedelta(minutes=1)
    held, emails = _deliver(db, allowed, configured, smtp_server, now=wednesday_noon)
    assert held is None and len(emails) == 1
    [message] = smtp_server.messages
    assert message["To"] == CLIENT_EMAIL
    body = message.get_payload(decode=True).decode()
    assert CLIENT_NAME not in message.as_string() + body and "case" not in body.lower()


def test_sms_to_the_client_needs_a_person(db: Session, settings: Any, smtp_server: Any) -> None:
    made = make_agency(db, safe_contact={"time_zone": "UTC", "channels": [
        {"channel": "sms", "safe": True}]})
    reminder = _client_message(db, made, "sms")
    held, emails = _deliver(db, reminder, smtp_settings(settings, smtp_server.port),
                            smtp_server)
    assert held is None and emails == []
    assert _held_notice(db, made, reminder) == "reminder_needs_person"
    row = db.scalar(sa.select(ReminderDelivery).where(
        ReminderDelivery.reminder_id == reminder.id))
    assert row.channel == "client_sms" and row.state == "needs_person"
