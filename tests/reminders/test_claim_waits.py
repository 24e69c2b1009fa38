"""Claiming a reminder while another transaction holds its row: the claim waits for that
transaction and then takes the reminder, or finds it taken. It never gives up at once: a
message whose claim gave up is spent, and the reminder would wait out ``QUEUE_TTL`` (five
minutes) before a sweep sent it again. Two sweeps at once hold rows like this on
PostgreSQL, where the second re-locks rows the first has just marked.

On both databases, each on a database of its own, with committed rows."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa

from app.db import unit_of_work
from app.reminders import delivery
from app.reminders.models import Reminder
from tests.reminders.conftest import make_due_reminder
from tests.support import services

HOLD_SECONDS = 0.5


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path: Path) -> Iterator[sa.Engine]:
    with services.own_engine(request.param, tmp_path, "claim_waits") as made:
        yield made


def _due_reminder(engine: sa.Engine) -> UUID:
    with unit_of_work(engine) as db:
        return make_due_reminder(db).id


def _claim_in_thread(engine: sa.Engine, reminder_id: UUID) -> tuple[threading.Thread,
                                                                    dict[str, Any]]:
    seen: dict[str, Any] = {}

    def claim() -> None:
        started = time.monotonic()
        try:
            with unit_of_work(engine) as db:
                seen["claim"] = delivery.claim_reminder(db, reminder_id)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            seen["error"] = exc
        seen["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=claim)
    thread.start()
    return thread, seen


def test_a_claim_waits_for_a_transaction_holding_the_row_then_takes_it(engine) -> None:
    reminder_id = _due_reminder(engine)
    with unit_of_work(engine) as holder:
        # Another transaction holds the row (a sweep, an edit) and changes nothing.
        holder.execute(sa.update(Reminder).where(Reminder.id == reminder_id)
                       .values(note=Reminder.note))
        thread, seen = _claim_in_thread(engine, reminder_id)
        time.sleep(HOLD_SECONDS)
        assert thread.is_alive(), "the claim did not wait for the row"
    thread.join(timeout=30)
    assert "error" not in seen, seen.get("error")
    assert seen["claim"] is not None, "the claim gave up on a due reminder"
    assert seen["seconds"] >= HOLD_SECONDS * 0.8
    with unit_of_work(engine) as db:
        row = db.get(Reminder, reminder_id)
        assert (row.state, row.attempts, row.queued_until) == ("sending", 1, None)


def test_of_two_claimers_the_second_waits_and_finds_it_taken(engine) -> None:
    reminder_id = _due_reminder(engine)
    with unit_of_work(engine) as first:
        assert delivery.claim_reminder(first, reminder_id) is not None
        thread, seen = _claim_in_thread(engine, reminder_id)
        time.sleep(HOLD_SECONDS)
        assert thread.is_alive(), "the second claim did not wait for the first"
    thread.join(timeout=30)
    assert "error" not in seen, seen.get("error")
    assert seen["claim"] is None
    with unit_of_work(engine) as db:
        assert db.get(Reminder, reminder_id).attempts == 1
