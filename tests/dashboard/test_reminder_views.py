"""Reminder and notification pages through the real app (no browser): refusals first —
reach (404), CSRF, bad times and zones, other people's notifications — then "My day",
snoozing, completing and reassigning through the forms, the bell's count, and the
notification settings and reminder rules forms."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session

from app.clients import service as clients
from app.core.access import Actor
from app.db import utcnow
from app.identity.models import AuthSession, StaffUser
from app.legal import service as legal
from app.notifications import service as notifications
from app.notifications.models import Notification
from app.reminders import service as reminders
from app.reminders.models import (
    NotificationPreference,
    Reminder,
    ReminderDelivery,
    ReminderSettings,
)
from app.reminders.schemas import ReminderCreate, ReminderRules
from tests.dashboard.helpers import csrf_from, page_csrf, sign_in
from tests.dashboard.test_views import PAGES
from tests.support.identity import make_org, make_user
from tests.support.privacy import assert_not_stored

CLIENT_NAME = "Fictional Robin Example"
NOTE = "Fictional note: ask Robin Example about the school pick-up"
NEW_PAGES = ("/dashboard/my-day", "/dashboard/reminders/new",
             "/dashboard/reminders/{reminder_id}", "/dashboard/notifications",
             "/dashboard/notifications/unread-count", "/dashboard/notification-settings",
             "/dashboard/reminder-rules")


def actor_of(user: StaffUser) -> Actor:
    return Actor(kind="user", id=user.id, org_id=user.org_id, role=user.role)


@dataclass
class Agency:
    advocate: StaffUser
    colleague: StaffUser
    supervisor: StaffUser
    stranger: StaffUser  # an advocate of another agency
    client_id: UUID  # in the advocate's caseload, time zone America/Chicago
    case_number: str
    other_client_id: UUID  # in the colleague's caseload


@pytest.fixture
def agency(db: Session) -> Agency:
    org = make_org(db)
    advocate, colleague = make_user(db, org, "advocate"), make_user(db, org, "advocate")
    supervisor = make_user(db, org, "supervisor")
    stranger = make_user(db, make_org(db), "advocate")
    own = clients.create_client(db, actor_of(advocate), personal={
        "preferred_name": CLIENT_NAME,
        "safe_contact": {"time_zone": "America/Chicago", "channels": []}}).client
    other = clients.create_client(db, actor_of(colleague), personal={
        "preferred_name": "Fictional Sam Other"}).client
    db.commit()
    return Agency(advocate, colleague, supervisor, stranger, own.id, own.case_number, other.id)


def make_reminder(db: Session, user: StaffUser, *, due_at: datetime,
                  client_id: UUID | None = None, note: str | None = None) -> Reminder:
    """A reminder set by ``user`` for themselves, then moved to ``due_at`` (which may be
    in the past, as a reminder left undone becomes)."""
    made = reminders.create_reminder(db, actor_of(user), ReminderCreate(
        due_at=utcnow() + timedelta(hours=1), client_id=client_id, note=note))
    row = made.reminder
    row.due_at = due_at
    db.commit()
    return row


def reload(db: Session, row: Reminder) -> Reminder:
    db.expire_all()
    found = db.get(Reminder, row.id)
    assert found is not None
    return found


def count(db: Session, model: type) -> int:
    return int(db.scalar(sa.select(sa.func.count()).select_from(model)) or 0)


def table(html: str, table_id: str) -> str:
    """The HTML of one table of a page ("" when the page has no such table)."""
    match = re.search(rf'<table id="{table_id}".*?</table>', html, re.S)
    return match.group(0) if match else ""


def error_of(html: str, field: str) -> str:
    match = re.search(rf'id="{re.escape(field)}-error">(.*?)</p>', html, re.S)
    assert match, f"no error shown for {field}"
    return re.sub(r"<[^>]+>", "", match.group(1))


# --- refusals --------------------------------------------------------------------------------


def test_every_new_page_has_a_row() -> None:
    rows = {page.path for page in PAGES}
    assert set(NEW_PAGES) <= rows


def test_a_reminder_out_of_reach_is_not_found(web: TestClient, db: Session,
                                              agency: Agency) -> None:
    colleagues = make_reminder(db, agency.colleague, due_at=utcnow() + timedelta(hours=2))
    of_their_client = make_reminder(db, agency.colleague, due_at=utcnow() + timedelta(hours=2),
                                    client_id=agency.other_client_id, note=NOTE)
    strangers = make_reminder(db, agency.stranger, due_at=utcnow() + timedelta(hours=2))
    sign_in(web, db, agency.advocate)
    token = page_csrf(web, "/dashboard/my-day")
    tomorrow = (utcnow() + timedelta(days=1)).date().isoformat()
    for row in (colleagues, of_their_client, strangers):
        page = web.get(f"/dashboard/reminders/{row.id}")
        assert page.status_code == 404
        assert "There is nothing at this address." in page.text
        assert NOTE not in page.text
        for action, data in (
                ("snooze", {"until_on": tomorrow, "until_time": "10:00",
                            "until_zone": "UTC", "back": "reminder"}),
                ("snooze", {"snooze_for": "1h", "back": "my-day"}),
                ("complete", {"back": "my-day"}),
                ("reassign", {"assignee_id": str(agency.advocate.id)})):
            response = web.post(f"/dashboard/reminders/{row.id}/{action}",
                                data={"csrf_token": token, **data})
            assert response.status_code == 404, (action, response.text[:300])
        after = reload(db, row)
        assert (after.state, after.due_at, after.assignee_id) == (
            row.state, row.due_at, row.assignee_id)
    assert web.get("/dashboard/reminders/not-a-reminder").status_code == 404


def test_forms_without_their_csrf_token_change_nothing(web: TestClient, db: Session,
                                                        agency: Agency) -> None:
    row = make_reminder(db, agency.advocate, due_at=utcnow() - timedelta(hours=1))
    sign_in(web, db, agency.advocate)
    tomorrow = (utcnow() + timedelta(days=1)).date().isoformat()
    before = count(db, Reminder)
    for path, data in (
            (f"/dashboard/reminders/{row.id}/snooze", {"snooze_for": "1h", "back": "my-day"}),
            (f"/dashboard/reminders/{row.id}/snooze", {"until_on": tomorrow,
                                                       "until_time": "10:00",
                                                       "until_zone": "UTC"}),
            (f"/dashboard/reminders/{row.id}/complete", {"back": "my-day"}),
            (f"/dashboard/reminders/{row.id}/reassign",
             {"assignee_id": str(agency.colleague.id)}),
            ("/dashboard/reminders/new", {"due_on": tomorrow, "due_time": "10:00",
                                          "time_zone": "UTC",
                                          "assignee_id": str(agency.advocate.id)})):
        for token in ({}, {"csrf_token": "not-the-token"}):
            response = web.post(path, data={**data, **token})
            assert response.status_code == 403, path
            assert "This form could not be accepted" in response.text
    after = reload(db, row)
    assert (after.state, after.due_at, after.assignee_id) == (
        "scheduled", row.due_at, agency.advocate.id)
    assert count(db, Reminder) == before


def test_bad_due_times_and_zones_are_field_errors_and_nothing_is_stored(
        web: TestClient, db: Session, agency: Agency) -> None:
    sign_in(web, db, agency.advocate)
    token = page_csrf(web, "/dashboard/reminders/new")
    before = count(db, Reminder)
    later = (utcnow() + timedelta(days=10)).date().isoformat()
    yesterday = (utcnow() - timedelta(days=1)).date().isoformat()
    good = {"csrf_token": token, "due_on": later, "due_time": "10:00", "time_zone": "UTC",
            "assignee_id": str(agency.advocate.id), "note": NOTE, "case_number": ""}
    for change, field, words in (
            ({"due_on": "2026-13-45"}, "due_on", "not a date"),
            ({"due_on": ""}, "due_on", "give the date"),
            ({"due_time": "25:00"}, "due_time", "not a time"),
            ({"time_zone": "Mars/Olympus"}, "time_zone", "not an IANA time zone"),
            ({"time_zone": "localtime"}, "time_zone", "not an IANA time zone"),
            ({"time_zone": ""}, "time_zone", "give the time zone"),
            # The clocks went forward at 01:00 on that day: 01:30 never happened in London.
            ({"due_on": "2030-03-31", "due_time": "01:30", "time_zone": "Europe/London"},
             "due_time", "does not exist"),
            ({"due_on": yesterday}, "due_on", "in the past"),
            ({"due_on": "2099-01-01"}, "due_on", "years ahead"),
            ({"assignee_id": str(agency.stranger.id)}, "assignee_id", "not an assignable"),
            ({"assignee_id": "someone"}, "assignee_id", "UUID"),
            ({"note": "x" * 2001}, "note", "at most 2000"),
            ({"case_number": "FICT-0000-99999"}, "case_number", "no case with this number"),
            # A case of a colleague's caseload is refused in the same words.
            ({"case_number": clients.get_client(db, actor_of(agency.colleague),
                                                agency.other_client_id).case_number},
             "case_number", "no case with this number")):
        response = web.post("/dashboard/reminders/new", data={**good, **change})
        assert response.status_code == 422, (change, response.text[:500])
        assert words in error_of(response.text, field), change
        assert f'id="{field}"' in response.text
        assert NOTE in response.text or change.get("note")  # what was typed is kept
    assert count(db, Reminder) == before


def test_a_reminder_is_set_in_the_agencys_time_zone(web: TestClient, db: Session,
                                                    agency: Agency) -> None:
    reminders.update_rules(db, actor_of(agency.supervisor),
                           ReminderRules(time_zone="Europe/London"))
    db.commit()
    sign_in(web, db, agency.advocate)
    form = web.get(f"/dashboard/reminders/new?client_id={agency.client_id}")
    assert form.status_code == 200
    assert 'name="time_zone" type="text" value="Europe/London"' in form.text
    assert f'value="{agency.case_number}"' in form.text
    assert CLIENT_NAME not in form.text
    day = (utcnow() + timedelta(days=40)).date()
    response = web.post("/dashboard/reminders/new", data={
        "csrf_token": csrf_from(form.text), "due_on": day.isoformat(), "due_time": "09:30",
        "time_zone": "Europe/London", "assignee_id": str(agency.colleague.id),
        "note": NOTE, "case_number": agency.case_number})
    assert response.status_code == 303, response.text[:500]
    match = re.fullmatch(r"/dashboard/reminders/([0-9a-f-]{36})\?done=reminder-created",
                         response.headers["location"])
    assert match
    row = db.get(Reminder, UUID(match.group(1)))
    assert row is not None
    expected = datetime(day.year, day.month, day.day, 9, 30,
                        tzinfo=ZoneInfo("Europe/London")).astimezone(UTC)
    assert row.due_at == expected
    assert (row.client_id, row.assignee_id, row.created_by) == (
        agency.client_id, agency.colleague.id, agency.advocate.id)
    assert_not_stored(row.note or "", [NOTE])  # encrypted under the client's key
    page = web.get(response.headers["location"])
    assert page.status_code == 200
    assert "The reminder is set." in page.text
    assert NOTE in page.text
    assert f"{day.isoformat()} 09:30 (Europe/London)" in page.text
    client_time = expected.astimezone(ZoneInfo("America/Chicago"))
    assert f"Client's time: {client_time:%Y-%m-%d %H:%M} (America/Chicago)" in page.text
    assert f"<title>Reminder for {agency.case_number} — advocase</title>" in page.text


def test_the_form_for_another_caseloads_client_is_not_found(web: TestClient, db: Session,
                                                            agency: Agency) -> None:
    sign_in(web, db, agency.advocate)
    assert web.get(f"/dashboard/reminders/new?client_id={agency.other_client_id}"
                   ).status_code == 404
    client_page = web.get(f"/dashboard/clients/{agency.client_id}")
    assert f'href="/dashboard/reminders/new?client_id={agency.client_id}"' in client_page.text


# --- My day ------------------------------------------------------------------------------------


def test_my_day_groups_the_callers_reminders(web: TestClient, db: Session,
                                             agency: Agency) -> None:
    now = utcnow()
    end_of_day = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
    overdue = make_reminder(db, agency.advocate, due_at=now - timedelta(hours=3),
                            client_id=agency.client_id, note=NOTE)
    today = make_reminder(db, agency.advocate, due_at=now + (end_of_day - now) / 2)
    upcoming = make_reminder(db, agency.advocate, due_at=now + timedelta(days=3))
    later = make_reminder(db, agency.advocate, due_at=now + timedelta(days=20))
    done = make_reminder(db, agency.advocate, due_at=now - timedelta(hours=1))
    reminders.complete(db, actor_of(agency.advocate), done.id)
    theirs = make_reminder(db, agency.colleague, due_at=now - timedelta(hours=1))
    db.commit()

    sign_in(web, db, agency.advocate)
    page = web.get("/dashboard/my-day")
    assert page.status_code == 200
    html = page.text
    assert str(overdue.id) in table(html, "overdue")
    assert str(today.id) in table(html, "today")
    assert str(upcoming.id) in table(html, "upcoming")
    assert str(done.id) in table(html, "done-today")
    for absent in (later, theirs):
        assert str(absent.id) not in html
    row = re.search(rf'<tr id="reminder-{overdue.id}".*?</tr>', html, re.S)
    assert row
    assert agency.case_number in row.group(0)
    # In the agency's zone (UTC by default) and the client's own.
    local = overdue.due_at.astimezone(ZoneInfo("America/Chicago"))
    assert f"Client's time: {local:%Y-%m-%d %H:%M} (America/Chicago)" in row.group(0)
    assert CLIENT_NAME not in html and "Robin" not in html and NOTE not in html
    assert 'href="/dashboard/my-day" aria-current="page"' in html

    home = web.get("/dashboard")
    cards = re.search(r'<ul class="cards">.*?</ul>', home.text, re.S)
    assert cards and 'href="/dashboard/my-day"' in cards.group(0)

    wrong = web.get("/dashboard/my-day?view=everyone")
    assert wrong.status_code == 422
    assert "choose from the list" in error_of(wrong.text, "view")


def test_supervisors_see_the_agencys_reminders_when_they_ask(web: TestClient, db: Session,
                                                              agency: Agency) -> None:
    theirs = make_reminder(db, agency.advocate, due_at=utcnow() - timedelta(hours=1),
                           client_id=agency.client_id)
    strangers = make_reminder(db, agency.stranger, due_at=utcnow() - timedelta(hours=1))
    sign_in(web, db, agency.supervisor)
    assert str(theirs.id) not in web.get("/dashboard/my-day").text
    everyone = web.get("/dashboard/my-day?view=all").text
    assert str(theirs.id) in table(everyone, "overdue")
    assert str(strangers.id) not in everyone
    assert CLIENT_NAME not in everyone
    assert agency.advocate.display_name in table(everyone, "overdue")


# --- snooze, complete, reassign ----------------------------------------------------------------


def test_snooze_complete_and_reassign_change_the_record(web: TestClient, db: Session,
                                                        agency: Agency) -> None:
    row = make_reminder(db, agency.advocate, due_at=utcnow() - timedelta(hours=2),
                        client_id=agency.client_id)
    sign_in(web, db, agency.advocate)
    token = page_csrf(web, "/dashboard/my-day")

    # From "My day": a choice of how long.
    response = web.post(f"/dashboard/reminders/{row.id}/snooze",
                        data={"csrf_token": token, "snooze_for": "3h", "back": "my-day"})
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard/my-day?done=reminder-snoozed"
    snoozed = reload(db, row).due_at
    assert timedelta(hours=2, minutes=59) < snoozed - utcnow() <= timedelta(hours=3)

    # From its page: a date and time in a zone.
    day = (utcnow() + timedelta(days=5)).date()
    response = web.post(f"/dashboard/reminders/{row.id}/snooze", data={
        "csrf_token": token, "until_on": day.isoformat(), "until_time": "08:15",
        "until_zone": "Asia/Tokyo", "back": "reminder"})
    assert response.status_code == 303
    assert response.headers["location"] == (
        f"/dashboard/reminders/{row.id}?done=reminder-snoozed")
    assert reload(db, row).due_at == datetime(
        day.year, day.month, day.day, 8, 15, tzinfo=ZoneInfo("Asia/Tokyo")).astimezone(UTC)

    # A bad time on the page: the field says so, nothing changes.
    before = reload(db, row).due_at
    for data, field in (({"until_on": "soon", "until_time": "08:15", "until_zone": "UTC"},
                         "until_on"),
                        ({"until_on": day.isoformat(), "until_time": "08:15",
                          "until_zone": "Nowhere/Atlantis"}, "until_zone"),
                        ({"until_on": (utcnow() - timedelta(days=2)).date().isoformat(),
                          "until_time": "08:15", "until_zone": "UTC"}, "until_on")):
        response = web.post(f"/dashboard/reminders/{row.id}/snooze",
                            data={"csrf_token": token, "back": "reminder", **data})
        assert response.status_code == 422, data
        assert error_of(response.text, field)
    bad_choice = web.post(f"/dashboard/reminders/{row.id}/snooze",
                          data={"csrf_token": token, "snooze_for": "forever",
                                "back": "my-day"})
    assert bad_choice.status_code == 422
    assert "choose how long" in error_of(bad_choice.text, f"snooze-{row.id}")
    assert reload(db, row).due_at == before

    response = web.post(f"/dashboard/reminders/{row.id}/complete",
                        data={"csrf_token": token, "back": "my-day-all"})
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard/my-day?done=reminder-completed&view=all"
    done = reload(db, row)
    assert done.state == "completed" and done.completed_at is not None
    # Done is done: snoozing it now is a conflict, shown on the page.
    again = web.post(f"/dashboard/reminders/{row.id}/snooze",
                     data={"csrf_token": token, "snooze_for": "1h", "back": "my-day"})
    assert again.status_code == 409
    assert "This reminder is completed." in again.text

    other = make_reminder(db, agency.advocate, due_at=utcnow() + timedelta(hours=5))
    page = web.get(f"/dashboard/reminders/{other.id}")
    assert f'<option value="{agency.colleague.id}"' in page.text
    assert f'<option value="{agency.stranger.id}"' not in page.text
    refused = web.post(f"/dashboard/reminders/{other.id}/reassign",
                       data={"csrf_token": token, "assignee_id": str(agency.stranger.id)})
    assert refused.status_code == 422
    assert "not an assignable colleague" in error_of(refused.text, "assignee_id")
    assert reload(db, other).assignee_id == agency.advocate.id
    response = web.post(f"/dashboard/reminders/{other.id}/reassign",
                        data={"csrf_token": token, "assignee_id": str(agency.colleague.id)})
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard/my-day?done=reminder-reassigned"
    assert reload(db, other).assignee_id == agency.colleague.id
    # A staff-only reminder given away has left the advocate's reach.
    assert web.get(f"/dashboard/reminders/{other.id}").status_code == 404


def test_the_reminder_page_links_its_source_and_shows_its_history(
        web: TestClient, db: Session, agency: Agency) -> None:
    hearing = legal.record_court_date(db, actor_of(agency.advocate), agency.client_id,
                                      kind="criminal",
                                      starts_at=utcnow() + timedelta(days=20),
                                      time_zone="Europe/Paris").hearing
    generated = db.scalars(sa.select(Reminder).where(Reminder.source_id == hearing.id)
                           .order_by(Reminder.due_at)).first()
    assert generated is not None
    db.add(ReminderDelivery(org_id=generated.org_id, reminder_id=generated.id, round=1,
                            channel="in_app", recipient_id=agency.advocate.id, state="sent",
                            sent_at=utcnow()))
    db.commit()
    sign_in(web, db, agency.advocate)
    page = web.get(f"/dashboard/reminders/{generated.id}")
    assert page.status_code == 200
    assert (f'href="/dashboard/clients/{agency.client_id}/court-dates/{hearing.id}"'
            in page.text)
    assert "Court date (" in page.text and "days ahead)" in page.text
    history = table(page.text, "reminder-history")
    assert "Made by the agency&#39;s rules" in history
    assert "Round 1: In the dashboard — Sent" in history
    assert "(Europe/Paris)" in page.text  # where the hearing is
    assert CLIENT_NAME not in page.text


# --- notifications and the bell ----------------------------------------------------------------


def notify(db: Session, user: StaffUser, object_id: UUID | None = None) -> Notification:
    row = notifications.notify(db, org_id=user.org_id, user_ids=[user.id], kind="reminder_due",
                               object_type="reminder" if object_id else None,
                               object_id=object_id)[0]
    db.commit()
    return row


def test_notifications_are_the_callers_own(web: TestClient, db: Session,
                                           agency: Agency) -> None:
    reminder = make_reminder(db, agency.advocate, due_at=utcnow() + timedelta(hours=1),
                             client_id=agency.client_id, note=NOTE)
    mine = notify(db, agency.advocate, reminder.id)
    plain = notify(db, agency.advocate)
    colleagues = notify(db, agency.colleague)
    strangers = notify(db, agency.stranger)
    sign_in(web, db, agency.advocate)
    page = web.get("/dashboard/notifications")
    assert page.status_code == 200
    listed = table(page.text, "notifications")
    assert str(mine.id) in listed and str(plain.id) in listed
    assert str(colleagues.id) not in page.text and str(strangers.id) not in page.text
    assert f'href="/dashboard/reminders/{reminder.id}"' in listed
    assert CLIENT_NAME not in page.text and NOTE not in page.text
    token = csrf_from(page.text)

    for other in (colleagues, strangers):
        response = web.post(f"/dashboard/notifications/{other.id}/read",
                            data={"csrf_token": token})
        assert response.status_code == 404
        db.expire_all()
        assert db.get(Notification, other.id).read_at is None
    refused = web.post(f"/dashboard/notifications/{mine.id}/read")
    assert refused.status_code == 403
    db.expire_all()
    assert db.get(Notification, mine.id).read_at is None

    response = web.post(f"/dashboard/notifications/{mine.id}/read", data={"csrf_token": token})
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard/notifications?done=notification-read"
    db.expire_all()
    assert db.get(Notification, mine.id).read_at is not None
    assert db.get(Notification, plain.id).read_at is None


def test_mark_all_read_leaves_what_arrived_since(web: TestClient, db: Session,
                                                 agency: Agency) -> None:
    first = notify(db, agency.advocate)
    colleagues = notify(db, agency.colleague)
    sign_in(web, db, agency.advocate)
    page = web.get("/dashboard/notifications")
    shown_at = re.search(r'name="shown_at" value="([^"]+)"', page.text)
    assert shown_at
    arrived = notify(db, agency.advocate)
    arrived_row = db.get(Notification, arrived.id)
    arrived_row.created_at = datetime.fromisoformat(shown_at.group(1)) + timedelta(seconds=1)
    db.commit()
    bad = web.post("/dashboard/notifications/read-all",
                   data={"csrf_token": csrf_from(page.text), "shown_at": "yesterday"})
    assert bad.status_code == 422
    response = web.post("/dashboard/notifications/read-all",
                        data={"csrf_token": csrf_from(page.text),
                              "shown_at": shown_at.group(1)})
    assert response.status_code == 303
    db.expire_all()
    assert db.get(Notification, first.id).read_at is not None
    assert db.get(Notification, arrived.id).read_at is None
    assert db.get(Notification, colleagues.id).read_at is None


def test_the_bell_counts_unread_without_keeping_the_session_alive(
        web: TestClient, db: Session, agency: Agency) -> None:
    for _ in range(2):
        notify(db, agency.advocate)
    notify(db, agency.colleague)
    session = sign_in(web, db, agency.advocate)

    home = web.get("/dashboard")
    assert re.search(r'id="bell-count"[^>]*>2 unread</span>', home.text)
    assert 'data-poll-seconds="15' in home.text
    assert '<script src="/dashboard/static/notification-bell.js" defer></script>' in home.text

    idle_since = utcnow() - timedelta(minutes=5)
    db.get(AuthSession, session.id).last_seen_at = idle_since
    db.commit()
    answer = web.get("/dashboard/notifications/unread-count")
    assert answer.status_code == 200
    assert answer.json() == {"unread": 2}
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["content-type"] == "application/json"
    db.expire_all()
    assert db.get(AuthSession, session.id).last_seen_at == idle_since  # not activity
    web.get("/dashboard/my-day")
    db.expire_all()
    assert db.get(AuthSession, session.id).last_seen_at > idle_since  # a person's request is

    web.cookies.clear()
    anonymous = web.get("/dashboard/notifications/unread-count")
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == "/dashboard/login"


# --- notification settings and reminder rules ----------------------------------------------------


def test_notification_settings_refuse_bad_zones_and_half_quiet_hours(
        web: TestClient, db: Session, agency: Agency) -> None:
    sign_in(web, db, agency.advocate)
    page = web.get("/dashboard/notification-settings")
    assert page.status_code == 200
    assert 'href="/dashboard/reminder-rules"' not in page.text  # advocates keep no rules
    good = {"csrf_token": csrf_from(page.text), "email_enabled": "on",
            "time_zone": "Europe/Berlin", "quiet_start": "22:00", "quiet_end": "07:00",
            "digest_time": "08:00"}
    for change, field, words in (({"time_zone": "localtime"}, "time_zone", "IANA"),
                                 ({"time_zone": "Mars/Olympus"}, "time_zone", "IANA"),
                                 ({"quiet_end": ""}, "quiet_end", "required with the other"),
                                 ({"digest_time": "8 o'clock"}, "digest_time", "pattern")):
        response = web.post("/dashboard/notification-settings", data={**good, **change})
        assert response.status_code == 422, change
        assert words in error_of(response.text, field), change
        assert db.get(NotificationPreference, agency.advocate.id) is None
    response = web.post("/dashboard/notification-settings",
                        data={**good, "daily_digest": "on"})
    assert response.status_code == 303
    stored = db.get(NotificationPreference, agency.advocate.id)
    assert stored is not None
    assert (stored.email_enabled, stored.time_zone, stored.quiet_start, stored.quiet_end,
            stored.daily_digest) == (True, "Europe/Berlin", "22:00", "07:00", True)
    shown = web.get("/dashboard/notification-settings?done=preferences-saved").text
    assert "Your notification settings are saved." in shown
    assert 'value="Europe/Berlin"' in shown


def test_reminder_rules_are_for_supervisors_and_admins(web: TestClient, db: Session,
                                                       agency: Agency) -> None:
    sign_in(web, db, agency.advocate)
    token = page_csrf(web, "/dashboard/my-day")
    assert web.get("/dashboard/reminder-rules").status_code == 404
    refused = web.post("/dashboard/reminder-rules",
                       data={"csrf_token": token, "time_zone": "Europe/Paris"})
    assert refused.status_code == 404
    assert db.get(ReminderSettings, agency.advocate.org_id) is None


def test_the_reminder_rules_form_checks_what_the_api_checks(web: TestClient, db: Session,
                                                            agency: Agency) -> None:
    sign_in(web, db, agency.supervisor)
    settings_page = web.get("/dashboard/notification-settings")
    assert 'href="/dashboard/reminder-rules"' in settings_page.text
    page = web.get("/dashboard/reminder-rules")
    assert page.status_code == 200
    assert 'value="7, 1"' in page.text and 'value="30, 7"' in page.text
    good = {"csrf_token": csrf_from(page.text), "time_zone": "Europe/Paris",
            "court_date.enabled": "on", "court_date.lead_days": "14, 2", "court_date.at": "08:30",
            "protective_order_expiry.enabled": "on",
            "protective_order_expiry.lead_days": "30, 7", "protective_order_expiry.at": "09:00",
            "safety_plan_review.enabled": "on", "safety_plan_review.lead_days": "3",
            "safety_plan_review.at": "09:00", "check_in.enabled": "on",
            "high_risk_no_contact.enabled": "on", "high_risk_no_contact.days": "10",
            "referral_unanswered.days": "5"}
    for change, field, words in (
            ({"time_zone": "localtime"}, "time_zone", "IANA"),
            ({"court_date.lead_days": "7, soon"}, "court_date.lead_days", "whole numbers"),
            ({"court_date.lead_days": "1, 2, 3, 4, 5, 6"}, "court_date.lead_days", "at most 5"),
            ({"safety_plan_review.lead_days": "61"}, "safety_plan_review.lead_days",
             "less than or equal to 60"),
            ({"high_risk_no_contact.days": "0"}, "high_risk_no_contact.days",
             "greater than or equal to 1"),
            ({"court_date.at": "9am"}, "court_date.at", "pattern")):
        response = web.post("/dashboard/reminder-rules", data={**good, **change})
        assert response.status_code == 422, (change, response.text[:400])
        assert words in error_of(response.text, field), change
        assert db.get(ReminderSettings, agency.supervisor.org_id) is None
    response = web.post("/dashboard/reminder-rules", data=good)
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard/reminder-rules?done=rules-saved"
    stored = reminders.read_rules(db, actor_of(agency.supervisor))
    assert stored.time_zone == "Europe/Paris"
    assert stored.court_date.lead_days == [14, 2] and stored.court_date.at == "08:30"
    assert stored.safety_plan_review.lead_days == 3
    assert stored.referral_unanswered.enabled is False
    assert stored.high_risk_no_contact.days == 10
