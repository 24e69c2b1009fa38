"""The delivery task holds one connection for both of its transactions: when the database
drops that connection while the email is being sent (a restart, a failover), the round
is still closed — on a fresh connection — so the sent email is not left ``sending`` for
the sweep to send a second time when its lease runs out."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from app.db import unit_of_work, utcnow
from app.notifications.models import Notification
from app.reminders import delivery
from app.reminders.models import Reminder, ReminderDelivery
from tests.reminders.conftest import make_due_reminder, smtp_settings
from workers import tasks


@pytest.fixture
def due_reminder(engine: Engine) -> Iterator[UUID]:
    """One reminder due a second ago, committed (the task runs its own transactions)."""
    with unit_of_work(engine) as db:
        reminder = make_due_reminder(db)
        org_id, reminder_id = reminder.org_id, reminder.id
    yield reminder_id
    with unit_of_work(engine) as db:
        for table in (ReminderDelivery, Notification, Reminder):
            db.execute(sa.delete(table).where(table.org_id == org_id))


def _drop(engine: Engine, dbapi_connection: Any) -> None:
    """The database ends one connection, as a restart ends them all."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as other:
            other.execute(sa.text("SELECT pg_terminate_backend(:pid)"),
                          {"pid": dbapi_connection.info.backend_pid})
    else:
        dbapi_connection.close()


def test_the_round_is_closed_when_the_connection_drops_during_the_send(
        engine: Engine, settings: Any, due_reminder: UUID,
        monkeypatch: pytest.MonkeyPatch) -> None:
    checked_out: list[Any] = []
    sent: list[str] = []

    def on_checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        checked_out.append(dbapi_connection)

    def send_and_lose_the_database(message: Any, settings: Any = None) -> None:
        sent.append(str(message["Message-ID"]))
        _drop(engine, checked_out[0])  # the task's connection, held while it sends

    monkeypatch.setattr(delivery, "get_settings", lambda: smtp_settings(settings, 25))
    monkeypatch.setattr(delivery, "smtp_send", send_and_lose_the_database)
    sa.event.listen(engine, "checkout", on_checkout)
    try:
        assert tasks.deliver_reminder(str(due_reminder)) == "delivered"
    finally:
        sa.event.remove(engine, "checkout", on_checkout)

    assert len(checked_out) >= 2  # the round was closed on another connection
    with unit_of_work(engine) as db:
        reminder = db.get(Reminder, due_reminder)
        assert reminder is not None and reminder.state == "delivered"
        emails = db.execute(sa.select(ReminderDelivery.id, ReminderDelivery.state).where(
            ReminderDelivery.reminder_id == due_reminder,
            ReminderDelivery.channel == "email")).all()
        assert [state for _, state in emails] == ["sent"]
        assert sent == [f"<reminder-{emails[0].id}@127.0.0.1>"]
        assert delivery.queue_due_emails(db, now=utcnow() + timedelta(hours=1)) == []
        assert db.scalar(sa.select(sa.func.count()).select_from(Notification).where(
            Notification.object_id == due_reminder)) == 1


def test_one_connection_serves_both_transactions(
        engine: Engine, settings: Any, due_reminder: UUID,
        monkeypatch: pytest.MonkeyPatch) -> None:
    checkouts: list[Any] = []
    monkeypatch.setattr(delivery, "get_settings", lambda: smtp_settings(settings, 25))
    monkeypatch.setattr(delivery, "smtp_send", lambda message, settings=None: None)

    def on_checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        checkouts.append(dbapi_connection)

    sa.event.listen(engine, "checkout", on_checkout)
    try:
        assert tasks.deliver_reminder(str(due_reminder)) == "delivered"
        assert tasks.deliver_reminder(str(due_reminder)) == "not_claimed"
    finally:
        sa.event.remove(engine, "checkout", on_checkout)
    assert len(checkouts) == 2  # one per task, not one per transaction
    with unit_of_work(engine) as db:
        assert db.scalar(sa.select(ReminderDelivery.state).where(
            ReminderDelivery.reminder_id == due_reminder,
            ReminderDelivery.channel == "email")) == "sent"
