"""Reminders and notifications in a real headless Chromium against a real server: an
advocate works through "My day" (an overdue and a today reminder, one done, one snoozed),
sets a reminder from a client page (a field error on the way), and the header's bell
picks up a notification made on the server without a reload. Every page passed through is
checked with axe-core, and no page may break its Content-Security-Policy.

The server polls quickly here (``ADVOCASE_DASHBOARD_BELL_POLL_SECONDS=1``); the
production default is 15 seconds."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa

from app.identity.models import StaffUser
from app.notifications import service as notifications
from app.reminders.models import Reminder
from tests.dashboard.browser import (
    Server,
    enrol_mfa,
    follow,
    running_server,
    serious_violations,
    sign_in,
)
from tests.dashboard.test_clients_browser import by_id, open_case

POLL_SECONDS = "1"
REMINDER_URL = re.compile(r".*/dashboard/reminders/([0-9a-f-]{36})\?done=reminder-created$")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("reminders-server"),
                        {"ADVOCASE_DASHBOARD_BELL_POLL_SECONDS": POLL_SECONDS}) as running:
        yield running


@pytest.fixture
def policy_breaks(tab: Any) -> list[str]:
    found: list[str] = []
    tab.on("console", lambda message: found.append(message.text)
           if "Content Security Policy" in message.text else None)
    tab.on("pageerror", lambda error: found.append(str(error)))
    return found


def user_of(server: Server, email: str) -> tuple[UUID, UUID]:
    with server.database() as db:
        user = db.scalar(sa.select(StaffUser).where(StaffUser.email == email))
        assert user is not None
        return user.id, user.org_id


def put_reminder(server: Server, email: str, due_at: datetime) -> UUID:
    """A reminder for staff only, written straight into the server's database (a reminder
    left undone is in the past, which no form accepts)."""
    user_id, org_id = user_of(server, email)
    with server.database() as db:
        row = Reminder(org_id=org_id, assignee_id=user_id, kind="manual", due_at=due_at,
                       created_by=user_id)
        db.add(row)
        db.flush()
        return row.id


def notify(server: Server, email: str) -> None:
    """A notification made on the server, as a reminder worker makes one."""
    user_id, org_id = user_of(server, email)
    with server.database() as db:
        notifications.notify(db, org_id=org_id, user_ids=[user_id], kind="reminder_due")


def not_near_midnight() -> datetime:
    """Now, at least five minutes before the end of the (UTC) day, so that a reminder due
    later today stays today's while the test runs."""
    now = datetime.now(UTC)
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
    if midnight - now < timedelta(minutes=5):
        time.sleep((midnight - now).total_seconds() + 1)
        now = datetime.now(UTC)
    return now


def row_in(page: Any, table_id: str, reminder_id: UUID) -> Any:
    return page.locator(f'table[id="{table_id}"] tr[id="reminder-{reminder_id}"]')


def test_an_advocate_works_through_my_day(tab, server, axe_source, policy_breaks) -> None:
    checked: dict[str, list[str]] = {}
    email = server.create_user("advocate", "Kai Fictional-Advocate")
    now = not_near_midnight()
    end_of_day = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
    overdue = put_reminder(server, email, now - timedelta(hours=5))
    today = put_reminder(server, email, now + (end_of_day - now) / 2)

    sign_in(tab, email)
    follow(tab.get_by_role("navigation", name="Main").get_by_role("link", name="My day"))
    assert tab.title() == "My day — advocase"
    assert row_in(tab, "overdue", overdue).count() == 1
    assert row_in(tab, "today", today).count() == 1
    assert tab.locator("#done-empty").is_visible()
    checked["my day"] = serious_violations(tab, axe_source)

    # The overdue one is done: it moves to what was done today.
    follow(row_in(tab, "overdue", overdue).get_by_role("button", name=re.compile("^Done")))
    tab.wait_for_url("**/dashboard/my-day?done=reminder-completed")
    assert tab.get_by_role("status").inner_text() == "The reminder is marked done."
    assert row_in(tab, "overdue", overdue).count() == 0
    assert tab.locator("#overdue-empty").inner_text() == "Nothing is overdue."
    assert row_in(tab, "done-today", overdue).count() == 1
    checked["my day after one is done"] = serious_violations(tab, axe_source)

    # Today's is put off for a week: it moves to the coming days.
    row = row_in(tab, "today", today)
    row.get_by_label(re.compile("^Snooze")).select_option("week")
    follow(row.get_by_role("button", name=re.compile("^Snooze")))
    tab.wait_for_url("**/dashboard/my-day?done=reminder-snoozed")
    assert row_in(tab, "today", today).count() == 0
    assert row_in(tab, "upcoming", today).count() == 1

    # From a client's page: a reminder about the case, with a field error on the way.
    open_case(tab, "Robin Fictional-Browser")
    follow(tab.get_by_role("navigation", name="Case file").get_by_role(
        "link", name="Add a reminder"))
    case_number = tab.get_by_label("Case number").input_value()
    assert case_number and "Robin" not in tab.title()
    assert tab.get_by_label("Time zone", exact=True).input_value() == "UTC"
    checked["reminder form"] = serious_violations(tab, axe_source)
    day = (now + timedelta(days=3)).date().isoformat()
    by_id(tab, "due_on").fill(day)
    by_id(tab, "due_time").fill("10:30")
    tab.get_by_label("Time zone", exact=True).fill("Mars/Olympus")
    tab.get_by_label("Note").fill("Fictional: call about the hearing papers")
    follow(tab.get_by_role("button", name="Set the reminder"))
    assert tab.get_by_role("alert").is_visible()
    assert by_id(tab, "time_zone").get_attribute("aria-invalid") == "true"
    assert by_id(tab, "time_zone-error").text_content().startswith("Error: not an IANA")
    assert tab.get_by_label("Note").input_value() == "Fictional: call about the hearing papers"
    checked["reminder form with errors"] = serious_violations(tab, axe_source)
    tab.get_by_label("Time zone", exact=True).fill("Europe/Lisbon")
    follow(tab.get_by_role("button", name="Set the reminder"))
    tab.wait_for_url(REMINDER_URL)
    assert tab.get_by_role("status").inner_text() == "The reminder is set."
    assert tab.locator("#reminder-case").inner_text() == case_number
    assert "Fictional: call about the hearing papers" in tab.locator("#reminder-note").inner_text()
    assert tab.title() == f"Reminder for {case_number} — advocase"
    checked["reminder page"] = serious_violations(tab, axe_source)
    made = REMINDER_URL.match(tab.url)
    assert made

    follow(tab.get_by_role("link", name="Back to My day"))
    upcoming = row_in(tab, "upcoming", UUID(made.group(1)))
    assert upcoming.count() == 1
    assert case_number in upcoming.inner_text()
    assert "Robin" not in tab.content()
    assert {name: found for name, found in checked.items() if found} == {}
    assert policy_breaks == []


def test_the_bell_counts_new_notifications_without_a_reload(tab, server, axe_source,
                                                            policy_breaks) -> None:
    checked: dict[str, list[str]] = {}
    email = server.create_user("advocate", "Lane Fictional-Advocate")
    for _ in range(2):
        notify(server, email)
    sign_in(tab, email)
    bell = tab.locator("#bell-count")
    assert bell.inner_text() == "2 unread"
    assert bell.get_attribute("aria-live") == "polite"
    assert tab.locator("#bell").get_attribute("data-poll-seconds").startswith(POLL_SECONDS)

    tab.evaluate("() => { window.sameDocument = true; }")
    notify(server, email)
    tab.wait_for_function(
        "() => document.getElementById('bell-count').textContent === '3 unread'",
        timeout=10_000)
    assert tab.evaluate("() => window.sameDocument") is True  # no reload happened

    follow(tab.locator("#bell"))
    tab.wait_for_url("**/dashboard/notifications")
    assert tab.locator("#notifications tbody tr.unread").count() == 3
    checked["notifications"] = serious_violations(tab, axe_source)
    follow(tab.locator("#notifications tbody tr").first.get_by_role(
        "button", name=re.compile("^Mark as read")))
    tab.wait_for_url("**/dashboard/notifications?done=notification-read")
    assert bell.inner_text() == "2 unread"
    follow(tab.get_by_role("button", name="Mark all as read"))
    tab.wait_for_url("**/dashboard/notifications?done=notifications-read")
    assert bell.inner_text() == "0 unread"
    assert tab.locator("#notifications tbody tr.unread").count() == 0
    checked["notifications, all read"] = serious_violations(tab, axe_source)

    follow(tab.get_by_role("link", name="Notification settings"))
    checked["notification settings"] = serious_violations(tab, axe_source)
    tab.get_by_label("Your time zone").fill("localtime")
    follow(tab.get_by_role("button", name="Save the settings"))
    assert by_id(tab, "time_zone-error").text_content().startswith("Error: not an IANA")
    checked["notification settings with errors"] = serious_violations(tab, axe_source)
    tab.get_by_label("Your time zone").fill("Europe/Dublin")
    tab.get_by_label("Send me reminders by email").uncheck()
    follow(tab.get_by_role("button", name="Save the settings"))
    tab.wait_for_url("**?done=preferences-saved")
    assert not tab.get_by_label("Send me reminders by email").is_checked()
    assert tab.get_by_label("Your time zone").input_value() == "Europe/Dublin"

    # On any page, the count keeps following what the server makes.
    notify(server, email)
    tab.wait_for_function(
        "() => document.getElementById('bell-count').textContent === '1 unread'",
        timeout=10_000)
    assert {name: found for name, found in checked.items() if found} == {}
    assert policy_breaks == []


def test_a_supervisor_keeps_the_agencys_reminder_rules(tab, server, axe_source,
                                                       policy_breaks) -> None:
    checked: dict[str, list[str]] = {}
    sign_in(tab, server.create_user("supervisor", "Morgan Fictional-Supervisor"))
    enrol_mfa(tab)
    tab.goto("/dashboard/notification-settings")
    follow(tab.get_by_role("link", name="The agency's reminder rules and lead times"))
    assert tab.title() == "Reminder rules — advocase"
    checked["reminder rules"] = serious_violations(tab, axe_source)
    by_id(tab, "court_date.lead_days").fill("7, soon")
    follow(tab.get_by_role("button", name="Save the rules"))
    assert by_id(tab, "court_date.lead_days-error").text_content().startswith(
        "Error: whole numbers")
    checked["reminder rules with errors"] = serious_violations(tab, axe_source)
    by_id(tab, "court_date.lead_days").fill("10, 2")
    tab.get_by_label("The agency's time zone").fill("America/Denver")
    follow(tab.get_by_role("button", name="Save the rules"))
    tab.wait_for_url("**/dashboard/reminder-rules?done=rules-saved")
    assert by_id(tab, "court_date.lead_days").input_value() == "10, 2"

    follow(tab.get_by_role("navigation", name="Main").get_by_role("link", name="My day"))
    assert "America/Denver" in tab.locator(".lead").inner_text()
    tab.get_by_label("Show").select_option("all")
    follow(tab.get_by_role("button", name="Show", exact=True))
    tab.wait_for_url("**/dashboard/my-day?view=all")
    checked["my day, everything within reach"] = serious_violations(tab, axe_source)
    assert {name: found for name, found in checked.items() if found} == {}
    assert policy_breaks == []
