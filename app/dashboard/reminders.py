"""Dashboard pages for reminders and notifications: "My day", one reminder (snooze,
complete, reassign), the form to set one, the notifications with the header's bell, your
email preferences and (supervisors and admins) the agency's reminder rules.

Thin adapters over the reminders and notifications services, making the same calls as
their API modules: reach (404 outside it), rules and audit are the services'. Bodies are
checked with the API's own schemas before a service is called.

Times are shown in the agency's time zone (the zone of its reminder rules) and, where a
reminder names a client within reach whose time zone differs, in the client's too. A time
typed in a form is read in the zone the form names (the agency's unless changed), with
the one IANA check every domain uses (``app.core.timezones``).

No personal data in a URL or a page title: lists show what is due and the case number,
never a name or a note; redirects carry fixed ``done`` codes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode
from uuid import UUID
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Form, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlmodel import Session
from starlette.responses import RedirectResponse

from app.clients import service as clients
from app.clients.models import Client
from app.core import keys
from app.core.errors import DomainError, Invalid, NotFound
from app.core.pagination import PageParams, SortKey, paginate
from app.core.timezones import iana_zone
from app.dashboard.auth import (
    CsrfChecked,
    DashboardRoute,
    PolledSigned,
    Signed,
    SignedIn,
    allowed,
    refuse,
    request_db,
)
from app.dashboard.client_forms import FormProblem, FormReader, invalid_form
from app.dashboard.clients import Cursor, Done, PostedForm
from app.dashboard.clients import _staff_names as staff_names
from app.dashboard.web import render
from app.db import SessionDep, utcnow
from app.evidence.models import Evidence
from app.notifications import service as notifications
from app.notifications.models import Notification
from app.referrals.models import Referral
from app.reminders import rules as reminder_rules
from app.reminders import service as reminders
from app.reminders.models import Reminder, ReminderDelivery, ReminderState
from app.reminders.schemas import PreferencesIn, ReminderCreate, ReminderRules

router = APIRouter(prefix="/dashboard", route_class=DashboardRoute, include_in_schema=False,
                   dependencies=[Depends(request_db)])

ReminderWriter = Annotated[Signed, Depends(allowed("clients:write"))]
"""Staff who may set reminders (advocates, supervisors); to everyone else no form exists."""

GROUP_SIZE = 100  # rows of each group on "My day"
NOTIFICATIONS_PAGE = 50
NOTE_MAX = 2000
MY_DAY = "/dashboard/my-day"
NOTIFICATIONS = "/dashboard/notifications"

DONE_NOTES = {
    "reminder-created": "The reminder is set.",
    "reminder-snoozed": "The reminder is snoozed.",
    "reminder-completed": "The reminder is marked done.",
    "reminder-reassigned": "The reminder is given to your colleague.",
    "notification-read": "The notification is marked read.",
    "notifications-read": "Your notifications are marked read.",
    "preferences-saved": "Your notification settings are saved.",
    "rules-saved": "The agency's reminder rules are saved.",
}

KIND_LABELS = {
    "manual": "Reminder",
    "check_in_message": "Message to the client",
    "safety_plan_review": "Safety-plan review",
    "court_date": "Court date",
    "protective_order_expiry": "Protective order expires",
    "check_in": "Agreed check-in",
    "high_risk_no_contact": "No recent contact with a client at high risk",
    "referral_unanswered": "Referral not answered",
}
STATE_LABELS = {
    ReminderState.scheduled: "Scheduled", ReminderState.sending: "Being sent",
    ReminderState.delivered: "Delivered", ReminderState.held: "Held",
    ReminderState.completed: "Done", ReminderState.cancelled: "Cancelled",
}
HELD_LABELS = {
    "never_contact": "the client has not agreed to be contacted",
    "channel_not_safe": "that channel is not safe by the client's preferences",
    "outside_window": "it is not a safe time to contact the client by that channel",
    "no_address": "no email address is recorded for the client",
    "email_unavailable": "email is not configured",
    "client_closed": "the case is closed",
}
CHANNEL_LABELS = {"in_app": "In the dashboard", "email": "Email", "digest": "Daily digest",
                  "client_email": "Email to the client", "client_sms": "Text to the client",
                  "client_phone": "Call to the client", "sms": "Text message",
                  "phone": "Phone call"}
DELIVERY_STATE_LABELS = {"waiting": "Waiting (quiet hours or digest)", "sending": "Sending",
                         "sent": "Sent", "needs_person": "Needs a person",
                         "skipped": "Not sent"}
SOURCE_LABELS = {"court_date": "the court date", "protective_order": "the protective order",
                 "safety_plan": "the safety plan", "client": "the client's record",
                 "referral": "the referral"}
VIEWS = {"mine": "Assigned to you", "all": "Everything you can see"}
SNOOZE_CHOICES = (("1h", "For 1 hour"), ("3h", "For 3 hours"),
                  ("tomorrow", "Until tomorrow 09:00"), ("week", "For a week"))
BACK_PAGES = ("my-day", "my-day-all", "reminder")
OPEN_STATES = (ReminderState.scheduled, ReminderState.sending, ReminderState.delivered,
               ReminderState.held)

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIME = re.compile(r"^\d{2}:\d{2}(:\d{2})?$")
_LEAD = re.compile(r":(\d+)d$")


def _redirect(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def _page(request: Request, template: str, *, title: str, **context: Any) -> Response:
    return render(request, template, title=title, kind_label=KIND_LABELS,
                  state_label=STATE_LABELS, **context)


def _error(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}


def _schema_errors(reader: FormReader, exc: ValidationError, errors: list[dict[str, str]],
                   renames: dict[str, str] | None = None) -> list[dict[str, str]]:
    """A schema's errors on this form's inputs (a composed value's on the input it was
    typed in), after the errors already found, one message per input."""
    seen = {e["field"] for e in errors}
    found = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        loc = [str(part) for part in error["loc"]]
        if loc and renames and loc[0] in renames:
            loc = [renames[loc[0]], *loc[1:]]
        name = reader.field(loc)
        if name not in seen:
            seen.add(name)
            found.append(_error(name, str(error.get("msg") or "invalid")))
    return errors + found


class _FormInvalid(Exception):
    """A form refused before any service was called (nothing to roll back)."""

    def __init__(self, problem: FormProblem) -> None:
        super().__init__(problem.detail)
        self.problem = problem


# --- time zones ----------------------------------------------------------------------------


def org_zone(db: Session, signed: Signed) -> str:
    """The agency's time zone: the one its reminder rules are kept in."""
    name = reminder_rules.rules_for(db, signed.actor.org_id).time_zone
    try:
        iana_zone(name)
    except ValueError:
        return "UTC"
    return name


def _at(moment: datetime | None, zone_name: str) -> str:
    if moment is None:
        return "—"
    return f"{moment.astimezone(ZoneInfo(zone_name)):%Y-%m-%d %H:%M} ({zone_name})"


def _client_zones(db: Session, signed: Signed, client_ids: set[UUID]) -> dict[UUID, str]:
    """The time zones of the named clients within the caller's reach (the clients
    service's reach); their being shown is recorded as a listing of those clients."""
    if not client_ids:
        return {}
    found = list(db.scalars(clients.readable_clients(signed.actor)
                            .where(Client.id.in_(client_ids))))
    zones: dict[UUID, str] = {}
    for client in found:
        try:
            name = reminder_rules.client_time_zone(db, client)
            iana_zone(name)
        except (keys.KeyDestroyed, ValueError):
            continue
        zones[client.id] = name
    if found:
        clients.audit_listing(db, signed.actor, found)
    return zones


def _case_numbers(db: Session, signed: Signed, client_ids: set[UUID]) -> dict[UUID, str]:
    if not client_ids:
        return {}
    rows = db.execute(sa.select(Client.id, Client.case_number).where(
        Client.org_id == signed.actor.org_id, Client.id.in_(client_ids)))
    return {client_id: case_number for client_id, case_number in rows}


def local_moment(day: str, clock: str, zone_name: str, fields: tuple[str, str, str],
                 errors: list[dict[str, str]]) -> datetime | None:
    """A date and a wall-clock time typed in a zone, as an aware moment; the errors go on
    the date, time and zone inputs named by ``fields``."""
    day_field, time_field, zone_field = fields
    before = len(errors)
    if not day:
        errors.append(_error(day_field, "give the date"))
    elif not (_DATE.match(day) and _parses(date.fromisoformat, day)):
        errors.append(_error(day_field, "not a date (YYYY-MM-DD)"))
    if not clock:
        errors.append(_error(time_field, "give the time"))
    elif not (_TIME.match(clock) and _parses(time.fromisoformat, clock)):
        errors.append(_error(time_field, "not a time (HH:MM)"))
    zone: ZoneInfo | None = None
    if not zone_name:
        errors.append(_error(zone_field, "give the time zone"))
    else:
        try:
            zone = iana_zone(zone_name)
        except ValueError:
            errors.append(_error(zone_field, "not an IANA time zone name, e.g. Europe/London"))
    if len(errors) > before or zone is None:
        return None
    naive = datetime.combine(date.fromisoformat(day), time.fromisoformat(clock))
    moment = naive.replace(tzinfo=zone)
    if moment.astimezone(ZoneInfo("UTC")).astimezone(zone).replace(tzinfo=None) != naive:
        errors.append(_error(time_field, "this time does not exist in the time zone "
                                         "(the clocks changed)"))
        return None
    return moment


def _parses(parse: Any, text: str) -> bool:
    try:
        parse(text)
    except ValueError:
        return False
    return True


# --- what a reminder is, in words ------------------------------------------------------------


def what_is_due(row: Reminder) -> str:
    label = KIND_LABELS.get(row.kind, row.kind.replace("_", " ").capitalize())
    lead = _LEAD.search(row.rule_key or "")
    if lead:
        days = int(lead.group(1))
        label += f" ({days} day{'s' if days != 1 else ''} ahead)" if days else " (today)"
    return label


def _route_paths(request: Request) -> set[str]:
    return {route.path for route in request.app.router.routes
            if "GET" in (getattr(route, "methods", None) or ())
            and hasattr(route, "path")}


def source_link(request: Request, row: Reminder) -> tuple[str, str] | None:
    """The dashboard page of what a generated reminder is about, where there is one."""
    if row.source_kind is None or row.client_id is None or row.source_id is None:
        return None
    base = f"/dashboard/clients/{row.client_id}"
    pages = {
        "court_date": ("/dashboard/clients/{client_id}/court-dates/{court_date_id}",
                       f"{base}/court-dates/{row.source_id}"),
        "protective_order": ("/dashboard/clients/{client_id}/orders/{order_id}",
                             f"{base}/orders/{row.source_id}"),
        "safety_plan": ("/dashboard/clients/{client_id}", f"{base}#safety-plan"),
        "client": ("/dashboard/clients/{client_id}", base),
        "referral": ("/dashboard/clients/{client_id}/referrals/{referral_id}",
                     f"{base}/referrals/{row.source_id}"),
    }
    found = pages.get(row.source_kind)
    if found is None or found[0] not in _route_paths(request):
        return None
    return found[1], SOURCE_LABELS.get(row.source_kind, "the record")


# --- My day ----------------------------------------------------------------------------------


@dataclass
class ReminderRow:
    id: UUID
    what: str
    when: str
    client_when: str | None
    case_number: str | None
    client_id: UUID | None
    state: str
    assignee: str


@dataclass
class Group:
    key: str
    heading: str
    rows: list[ReminderRow]
    more: bool
    empty: str


def _rows(found: list[Reminder], zone_name: str,
          client_zones: dict[UUID, str], case_numbers: dict[UUID, str],
          names: dict[UUID, str]) -> list[ReminderRow]:
    listed = []
    for row in found:
        client_zone = client_zones.get(row.client_id) if row.client_id else None
        listed.append(ReminderRow(
            id=row.id, what=what_is_due(row), when=_at(row.due_at, zone_name),
            client_when=_at(row.due_at, client_zone)
            if client_zone and client_zone != zone_name else None,
            case_number=case_numbers.get(row.client_id) if row.client_id else None,
            client_id=row.client_id, state=row.state,
            assignee=names.get(row.assignee_id, "a former colleague")))
    return listed


def _my_day_page(request: Request, db: Session, signed: Signed, *, view: str = "mine",
                 status_code: int = 200, problem: Any = None,
                 note: str | None = None) -> Response:
    errors: list[dict[str, str]] = []
    if view not in VIEWS:
        errors.append(_error("view", "choose from the list"))
        view = "mine"
    if errors and problem is None:
        problem, status_code = invalid_form(errors), 422
    zone_name = org_zone(db, signed)
    now = utcnow()
    today = now.astimezone(ZoneInfo(zone_name)).date()
    start_of_today = reminder_rules.local_instant(today, "00:00", zone_name)
    end_of_today = reminder_rules.local_instant(today + timedelta(days=1), "00:00", zone_name)
    end_of_week = reminder_rules.local_instant(today + timedelta(days=8), "00:00", zone_name)
    within = reminders.list_query(signed.actor, mine=view == "mine")
    open_ = within.where(Reminder.state.in_(OPEN_STATES))
    wanted = [
        ("overdue", "Overdue", open_.where(Reminder.due_at < now),
         "Nothing is overdue."),
        ("today", "Due today", open_.where(Reminder.due_at >= now,
                                           Reminder.due_at < end_of_today),
         "Nothing else is due today."),
        ("upcoming", "Upcoming: the next 7 days",
         open_.where(Reminder.due_at >= end_of_today, Reminder.due_at < end_of_week),
         "Nothing is due in the next 7 days."),
    ]
    found: dict[str, list[Reminder]] = {}
    for key, _heading, query, _empty in wanted:
        found[key] = list(db.scalars(query.order_by(Reminder.due_at, Reminder.id)
                                     .limit(GROUP_SIZE + 1)))
    found["done"] = list(db.scalars(
        within.where(Reminder.state == ReminderState.completed,
                     Reminder.completed_at >= start_of_today)
        .order_by(Reminder.completed_at.desc(), Reminder.id).limit(GROUP_SIZE + 1)))
    shown = [row for rows in found.values() for row in rows[:GROUP_SIZE]]
    client_ids = {row.client_id for row in shown if row.client_id}
    client_zones = _client_zones(db, signed, client_ids)
    case_numbers = _case_numbers(db, signed, client_ids)
    names = staff_names(db, signed, {row.assignee_id for row in shown})
    groups = [Group(key, heading, _rows(found[key][:GROUP_SIZE], zone_name, client_zones,
                                        case_numbers, names),
                    len(found[key]) > GROUP_SIZE, empty)
              for key, heading, _query, empty in wanted]
    done = Group("done", "Done today", _rows(found["done"][:GROUP_SIZE], zone_name,
                                             client_zones, case_numbers, names),
                 len(found["done"]) > GROUP_SIZE, "Nothing is marked done yet today.")
    return _page(request, "my_day.html", title="My day", groups=groups, done=done,
                 view=view, views=list(VIEWS.items()), zone=zone_name,
                 today=today.isoformat(), snooze_choices=SNOOZE_CHOICES,
                 back="my-day-all" if view == "all" else "my-day",
                 can_write=signed.can("clients:write"), problem=problem, note=note,
                 status_code=status_code)


@router.get("/my-day")
def my_day(request: Request, db: SessionDep, signed: SignedIn,
           view: Annotated[str, Query(max_length=8)] = "mine",
           done: Done = None) -> Response:
    """Your reminders: overdue, due today and in the next 7 days, and what you did today.
    ``view=all``: every reminder within your reach (your caseload's; supervisors: the
    agency's)."""
    return _my_day_page(request, db, signed, view=view, note=DONE_NOTES.get(done or ""))


# --- one reminder ------------------------------------------------------------------------------


@dataclass
class HistoryRow:
    when: str
    what: str


def _history(record: reminders.ReminderRecord, deliveries: list[ReminderDelivery],
             zone_name: str, created_by: str | None) -> list[HistoryRow]:
    row = record.reminder
    history = [HistoryRow(_at(row.created_at, zone_name),
                          f"Set by {created_by}" if created_by else "Made by the agency's rules")]
    for delivery in deliveries:
        channel = CHANNEL_LABELS.get(delivery.channel, delivery.channel)
        state = DELIVERY_STATE_LABELS.get(delivery.state, delivery.state)
        history.append(HistoryRow(_at(delivery.sent_at or delivery.created_at, zone_name),
                                  f"Round {delivery.round}: {channel} — {state}"))
    if row.completed_at is not None:
        history.append(HistoryRow(_at(row.completed_at, zone_name), "Marked done"))
    return history


def _reminder_page(request: Request, db: Session, signed: Signed, reminder_id: UUID, *,
                   status_code: int = 200, problem: Any = None, note: str | None = None,
                   values: dict[str, str] | None = None) -> Response:
    record = reminders.read_reminder(db, signed.actor, reminder_id)
    row = record.reminder
    zone_name = org_zone(db, signed)
    client_zone = _client_zones(db, signed, {row.client_id}).get(row.client_id) \
        if row.client_id else None
    deliveries = reminders.deliveries_of(db, signed.actor, reminder_id)
    names = staff_names(db, signed, {row.assignee_id} | ({row.created_by} if row.created_by
                                                         else set()))
    created_by = names.get(row.created_by, "a former colleague") if row.created_by else None
    colleagues = [(str(user.id), "You" if user.id == signed.actor.id else user.display_name)
                  for user in reminders.assignable_colleagues(db, signed.actor)
                  if user.id != row.assignee_id]
    tomorrow = (utcnow().astimezone(ZoneInfo(zone_name)).date() + timedelta(days=1))
    form = {"until_on": tomorrow.isoformat(), "until_time": "09:00", "until_zone": zone_name,
            "assignee_id": ""} | (values or {})
    title = f"Reminder for {record.case_number}" if record.case_number else "Reminder"
    return _page(
        request, "reminder.html", title=title, record=record, r=row, what=what_is_due(row),
        when=_at(row.due_at, zone_name),
        client_when=_at(row.due_at, client_zone)
        if client_zone and client_zone != zone_name else None,
        own_when=_at(row.due_at, row.time_zone)
        if row.time_zone and row.time_zone not in (zone_name, client_zone)
        and _valid_zone(row.time_zone) else None,
        assignee=names.get(row.assignee_id, "a former colleague"),
        held=HELD_LABELS.get(row.held_reason or "", row.held_reason),
        channel=CHANNEL_LABELS.get(row.channel or "", row.channel),
        source=source_link(request, row), history=_history(record, deliveries, zone_name,
                                                           created_by),
        colleagues=colleagues, closed=row.state in (ReminderState.completed,
                                                    ReminderState.cancelled),
        can_write=signed.can("clients:write"), form=form, zone=zone_name,
        problem=problem, note=note, status_code=status_code)


def _valid_zone(name: str) -> bool:
    try:
        iana_zone(name)
    except ValueError:
        return False
    return True


@router.get("/reminders/new")
def new_reminder_form(request: Request, db: SessionDep, signed: ReminderWriter,
                      client_id: Annotated[UUID | None, Query()] = None) -> Response:
    """Set a reminder: when (in the agency's time zone unless another is named), for whom,
    a note, and optionally the client it is about (``?client_id=`` from a client page)."""
    values = {"due_on": "", "due_time": "09:00", "time_zone": org_zone(db, signed),
              "assignee_id": str(signed.actor.id), "note": "", "case_number": ""}
    client = None
    if client_id is not None:
        client = clients.get_client(db, signed.actor, client_id, for_write=True)
        values["case_number"] = client.case_number
    return _reminder_form(request, db, signed, values=values, client=client)


def _reminder_form(request: Request, db: Session, signed: Signed, *, values: dict[str, Any],
                   client: Client | None = None, status_code: int = 200,
                   problem: Any = None) -> Response:
    colleagues = [(str(user.id), "You" if user.id == signed.actor.id else user.display_name)
                  for user in reminders.assignable_colleagues(db, signed.actor)]
    title = f"Set a reminder for {client.case_number}" if client else "Set a reminder"
    return _page(request, "reminder_form.html", title=title, v=values, client=client,
                 colleagues=colleagues, note_max=NOTE_MAX, problem=problem,
                 status_code=status_code)


def _find_client(db: Session, signed: Signed, case_number: str,
                 errors: list[dict[str, str]]) -> Client | None:
    if not case_number:
        return None
    client = db.scalar(clients.search_clients(signed.actor, case_number=case_number, db=db))
    if client is None:
        # The same words whether the case exists outside reach or not at all.
        errors.append(_error("case_number", "no case with this number in your reach"))
    return client


@router.post("/reminders/new")
def create_reminder(request: Request, db: SessionDep, signed: ReminderWriter,
                    _csrf: CsrfChecked, form: PostedForm) -> Response:
    reader = FormReader(form)
    errors: list[dict[str, str]] = []
    due = local_moment(reader.text("due_on"), reader.text("due_time"),
                       reader.text("time_zone"), ("due_on", "due_time", "time_zone"), errors)
    assignee = reader.text("assignee_id")
    note = reader.text("note").replace("\r\n", "\n")
    client = _find_client(db, signed, reader.text("case_number"), errors)
    renames = {"due_at": "due_on", "client_id": "case_number"}
    try:
        # A moment that could not be composed has its errors already; a stand-in lets the
        # schema report the other fields in the same answer (nothing is saved with errors).
        body = {"due_at": due or utcnow(), "assignee_id": assignee or None,
                "note": note or None, "client_id": client.id if client else None}
        try:
            checked = ReminderCreate.model_validate(body)
        except ValidationError as exc:
            raise _FormInvalid(invalid_form(_schema_errors(reader, exc, errors,
                                                           renames))) from None
        if errors:
            raise _FormInvalid(invalid_form(errors))
        record = reminders.create_reminder(db, signed.actor, checked)
    except _FormInvalid as exc:
        return _reminder_form(request, db, signed, values=reader.values, status_code=422,
                              problem=exc.problem)
    except DomainError as exc:
        if isinstance(exc, NotFound):
            raise
        refuse(request, exc)
        return _reminder_form(request, db, signed, values=reader.values,
                              status_code=exc.status,
                              problem=reader.relabel(exc, rename=renames))
    return _redirect(f"/dashboard/reminders/{record.reminder.id}?done=reminder-created")


@router.get("/reminders/{reminder_id}")
def reminder_page(request: Request, reminder_id: UUID, db: SessionDep, signed: SignedIn,
                  done: Done = None) -> Response:
    """One reminder: what and when, the case, the note, what it came from, how it was
    delivered; snooze it to a chosen time, mark it done or give it to a colleague."""
    return _reminder_page(request, db, signed, reminder_id, note=DONE_NOTES.get(done or ""))


def _back(back: str, reminder_id: UUID, done: str) -> str:
    if back == "reminder":
        return f"/dashboard/reminders/{reminder_id}?done={done}"
    view = "&view=all" if back == "my-day-all" else ""
    return f"{MY_DAY}?done={done}{view}"


def _refused(request: Request, db: Session, signed: Signed, reminder_id: UUID, back: str,
             exc: DomainError, problem: Any, values: dict[str, str] | None = None
             ) -> Response:
    if back == "reminder":
        return _reminder_page(request, db, signed, reminder_id, status_code=exc.status,
                              problem=problem, values=values)
    return _my_day_page(request, db, signed, view="all" if back == "my-day-all" else "mine",
                        status_code=exc.status, problem=problem)


Back = Annotated[str, Form(max_length=16)]


def _snooze_until(choice: str, zone_name: str) -> datetime | None:
    now = utcnow()
    if choice == "1h":
        return now + timedelta(hours=1)
    if choice == "3h":
        return now + timedelta(hours=3)
    if choice == "week":
        return now + timedelta(days=7)
    if choice == "tomorrow":
        today = now.astimezone(ZoneInfo(zone_name)).date()
        return reminder_rules.local_instant(today + timedelta(days=1), "09:00", zone_name)
    return None


@router.post("/reminders/{reminder_id}/snooze")
def snooze_reminder(request: Request, reminder_id: UUID, db: SessionDep, signed: SignedIn,
                    _csrf: CsrfChecked, form: PostedForm) -> Response:
    """Put a reminder off: by a choice on "My day", or to a date and time on its page."""
    reader = FormReader(form)
    back = reader.text("back")
    back = back if back in BACK_PAGES else "reminder"
    errors: list[dict[str, str]] = []
    zone_name = org_zone(db, signed)
    choice = reader.text("snooze_for")
    field = f"snooze-{reminder_id}" if back != "reminder" else "until_on"
    reader.names.append(field)
    if choice:
        until = _snooze_until(choice, zone_name)
        if until is None:
            errors.append(_error(field, "choose how long from the list"))
    else:
        until = local_moment(reader.text("until_on"), reader.text("until_time"),
                             reader.text("until_zone"), ("until_on", "until_time",
                                                         "until_zone"), errors)
    values = {k: reader.values.get(k, "") for k in ("until_on", "until_time", "until_zone")}
    if errors:
        exc: DomainError = Invalid("Some answers need changing.")
        return _refused(request, db, signed, reminder_id, back, exc, invalid_form(errors),
                        values if back == "reminder" else None)
    assert until is not None
    try:
        reminders.snooze(db, signed.actor, reminder_id, until)
    except DomainError as exc:
        if isinstance(exc, NotFound):
            raise
        refuse(request, exc)
        problem = reader.relabel(exc, rename={"until": field})
        return _refused(request, db, signed, reminder_id, back, exc, problem,
                        values if back == "reminder" else None)
    return _redirect(_back(back, reminder_id, "reminder-snoozed"))


@router.post("/reminders/{reminder_id}/complete")
def complete_reminder(request: Request, reminder_id: UUID, db: SessionDep, signed: SignedIn,
                      _csrf: CsrfChecked, back: Back = "reminder") -> Response:
    back = back if back in BACK_PAGES else "reminder"
    try:
        reminders.complete(db, signed.actor, reminder_id)
    except DomainError as exc:
        if isinstance(exc, NotFound):
            raise
        refuse(request, exc)
        return _refused(request, db, signed, reminder_id, back, exc, exc)
    return _redirect(_back(back, reminder_id, "reminder-completed"))


@router.post("/reminders/{reminder_id}/reassign")
def reassign_reminder(request: Request, reminder_id: UUID, db: SessionDep, signed: SignedIn,
                      _csrf: CsrfChecked,
                      assignee_id: Annotated[str, Form(max_length=40)] = "") -> Response:
    """Give the reminder to a colleague; then back to "My day" (it may have left your
    reach with them)."""
    reader = FormReader()
    reader.names.append("assignee_id")
    values = {"assignee_id": assignee_id}
    try:
        target = UUID(assignee_id.strip())
    except ValueError:
        exc: DomainError = Invalid("Choose a colleague.")
        return _refused(request, db, signed, reminder_id, "reminder", exc, invalid_form(
            [_error("assignee_id", "choose a colleague from the list")]), values)
    try:
        reminders.reassign(db, signed.actor, reminder_id, target)
    except DomainError as exc:
        if isinstance(exc, NotFound):
            raise
        refuse(request, exc)
        return _refused(request, db, signed, reminder_id, "reminder", exc,
                        reader.relabel(exc), values)
    return _redirect(f"{MY_DAY}?done=reminder-reassigned")


# --- notifications and the bell ------------------------------------------------------------


@dataclass
class NotificationRow:
    id: UUID
    message: str
    when: str
    unread: bool
    href: str | None


def _object_links(request: Request, db: Session, signed: Signed,
                  rows: list[Notification]) -> dict[UUID, str]:
    """Where each notification's object is shown in the dashboard (ids only; the page
    it leads to decides reach)."""
    links: dict[UUID, str] = {}
    by_type: dict[str, set[UUID]] = {}
    for row in rows:
        if row.object_id is not None and row.object_type:
            by_type.setdefault(row.object_type, set()).add(row.object_id)
    for object_id in by_type.get("reminder", set()):
        links[object_id] = f"/dashboard/reminders/{object_id}"
    for object_id in by_type.get("client", set()):
        links[object_id] = f"/dashboard/clients/{object_id}"
    org = signed.actor.org_id
    if by_type.get("evidence"):
        for object_id, client_id in db.execute(sa.select(Evidence.id, Evidence.client_id).where(
                Evidence.org_id == org, Evidence.id.in_(by_type["evidence"]))):
            links[object_id] = f"/dashboard/clients/{client_id}/evidence/{object_id}"
    referral_page = "/dashboard/clients/{client_id}/referrals/{referral_id}"
    if by_type.get("referral") and referral_page in _route_paths(request):
        for object_id, client_id in db.execute(sa.select(Referral.id, Referral.client_id).where(
                Referral.org_id == org, Referral.id.in_(by_type["referral"]))):
            links[object_id] = f"/dashboard/clients/{client_id}/referrals/{object_id}"
    return links


def _notifications_page(request: Request, db: Session, signed: Signed, *,
                        cursor: str | None = None, status_code: int = 200,
                        problem: Any = None, note: str | None = None) -> Response:
    shown_at = utcnow()
    rows, next_cursor = paginate(
        db, notifications.readable_notifications(signed.actor),
        listing="dashboard-notifications",
        keys=[SortKey(Notification.created_at, descending=True), SortKey(Notification.id)],
        params=PageParams(limit=NOTIFICATIONS_PAGE, cursor=cursor or None))
    zone_name = org_zone(db, signed)
    links = _object_links(request, db, signed, rows)
    listed = [NotificationRow(row.id, notifications.message_for(row),
                              _at(row.created_at, zone_name), row.read_at is None,
                              links.get(row.object_id) if row.object_id else None)
              for row in rows]
    next_href = f"{NOTIFICATIONS}?" + urlencode({"cursor": next_cursor}) if next_cursor else None
    return _page(request, "notifications.html", title="Notifications", rows=listed,
                 cursor=cursor or "", next_href=next_href, shown_at=shown_at.isoformat(),
                 problem=problem, note=note, status_code=status_code)


@router.get("/notifications")
def notifications_page(request: Request, db: SessionDep, signed: SignedIn,
                       cursor: Cursor = None, done: Done = None) -> Response:
    """Your notifications, newest first, each linked to what it is about."""
    return _notifications_page(request, db, signed, cursor=cursor,
                               note=DONE_NOTES.get(done or ""))


@router.get("/notifications/unread-count")
def unread_count(db: SessionDep, signed: PolledSigned) -> Response:
    """``{"unread": n}`` for the header's bell (one COUNT; polling does not keep the
    session alive)."""
    return JSONResponse({"unread": notifications.unread_count(db, signed.actor)},
                        headers={"Cache-Control": "no-store"})


def _notifications_back(cursor: str, done: str) -> str:
    query = {"cursor": cursor} if cursor else {}
    return f"{NOTIFICATIONS}?" + urlencode({**query, "done": done})


@router.post("/notifications/{notification_id}/read")
def mark_notification_read(notification_id: UUID, db: SessionDep, signed: SignedIn,
                           _csrf: CsrfChecked,
                           cursor: Annotated[str, Form(max_length=1024)] = "") -> Response:
    notifications.mark_read(db, signed.actor, notification_id)
    return _redirect(_notifications_back(cursor, "notification-read"))


@router.post("/notifications/read-all")
def mark_all_notifications_read(request: Request, db: SessionDep, signed: SignedIn,
                                _csrf: CsrfChecked,
                                shown_at: Annotated[str, Form(max_length=64)] = "",
                                cursor: Annotated[str, Form(max_length=1024)] = ""
                                ) -> Response:
    """Mark read what was unread when the list was shown (not what arrived since)."""
    try:
        up_to = datetime.fromisoformat(shown_at)
        if up_to.tzinfo is None:
            raise ValueError("naive")
    except ValueError:
        problem = Invalid("The list was not recognised. Reload the page and try again.")
        return _notifications_page(request, db, signed, status_code=422, problem=problem)
    notifications.mark_all_read(db, signed.actor, up_to=up_to)
    return _redirect(_notifications_back(cursor, "notifications-read"))


# --- your notification settings ------------------------------------------------------------


def _settings_page(request: Request, signed: Signed, *, values: dict[str, Any],
                   status_code: int = 200, problem: Any = None,
                   note: str | None = None) -> Response:
    return _page(request, "notification_settings.html", title="Notification settings",
                 v=values, rule_keeper=signed.role in reminders.RULE_KEEPERS,
                 problem=problem, note=note, status_code=status_code)


@router.get("/notification-settings")
def notification_settings(request: Request, db: SessionDep, signed: SignedIn,
                          done: Done = None) -> Response:
    """Your email preferences: email on or off, quiet hours, a daily digest."""
    current = reminders.read_preferences(db, signed.actor)
    values: dict[str, Any] = current.model_dump()
    values["quiet_start"] = current.quiet_start or ""
    values["quiet_end"] = current.quiet_end or ""
    return _settings_page(request, signed, values=values, note=DONE_NOTES.get(done or ""))


def _hhmm(value: str) -> str:
    # A time input may send seconds ("09:00:00"); the schema wants HH:MM.
    return value[:5] if _TIME.match(value) else value


@router.post("/notification-settings")
def save_notification_settings(request: Request, db: SessionDep, signed: SignedIn,
                               _csrf: CsrfChecked, form: PostedForm) -> Response:
    reader = FormReader(form)
    errors: list[dict[str, str]] = []
    zone_name = reader.text("time_zone")
    if not _valid_zone(zone_name):
        errors.append(_error("time_zone", "not an IANA time zone name, e.g. Europe/London"))
    body = {"email_enabled": reader.flag("email_enabled"), "time_zone": zone_name,
            "quiet_start": _hhmm(reader.text("quiet_start")) or None,
            "quiet_end": _hhmm(reader.text("quiet_end")) or None,
            "daily_digest": reader.flag("daily_digest"),
            "digest_time": _hhmm(reader.text("digest_time"))}
    try:
        try:
            checked = PreferencesIn.model_validate(body)
        except ValidationError as exc:
            raise _FormInvalid(invalid_form(_schema_errors(reader, exc, errors))) from None
        if errors:
            raise _FormInvalid(invalid_form(errors))
        reminders.update_preferences(db, signed.actor, checked)
    except _FormInvalid as exc:
        return _settings_page(request, signed, values=reader.values, status_code=422,
                              problem=exc.problem)
    except DomainError as exc:
        refuse(request, exc)
        return _settings_page(request, signed, values=reader.values, status_code=exc.status,
                              problem=reader.relabel(exc))
    return _redirect("/dashboard/notification-settings?done=preferences-saved")


# --- the agency's reminder rules (supervisors and admins) ------------------------------------


def _rule_keeper(signed: SignedIn) -> Signed:
    """The reminders service's rule keepers; to everyone else the page does not exist."""
    if signed.role not in reminders.RULE_KEEPERS:
        raise NotFound("There is nothing at this address.",
                       audit={"event": "access.denied", "action": "reminder_rules:manage"})
    return signed


RuleKeeper = Annotated[Signed, Depends(_rule_keeper)]

LEAD_RULES = ("court_date", "protective_order_expiry")
DAY_RULES = ("high_risk_no_contact", "referral_unanswered")


def _rule_values(rules: ReminderRules) -> dict[str, Any]:
    v: dict[str, Any] = {"time_zone": rules.time_zone}
    for name, rule in rules.model_dump().items():
        if not isinstance(rule, dict):
            continue
        for part, value in rule.items():
            if isinstance(value, list):
                value = ", ".join(str(item) for item in value)
            v[f"{name}.{part}"] = value if isinstance(value, bool) else str(value)
    return v


def _whole_days(reader: FormReader, name: str, errors: list[dict[str, str]]) -> Any:
    text = reader.text(name)
    if not re.fullmatch(r"\d{1,4}", text):
        errors.append(_error(name, "a whole number of days"))
        return None
    return int(text)


def _read_rules_form(reader: FormReader, errors: list[dict[str, str]]) -> dict[str, Any]:
    zone_name = reader.text("time_zone")
    if not _valid_zone(zone_name):
        errors.append(_error("time_zone", "not an IANA time zone name, e.g. Europe/London"))
    body: dict[str, Any] = {"time_zone": zone_name}
    for name in LEAD_RULES:
        name_days = f"{name}.lead_days"
        parts = [p for p in re.split(r"[,\s]+", reader.text(name_days)) if p]
        if not parts or not all(re.fullmatch(r"\d{1,4}", p) for p in parts):
            errors.append(_error(name_days, "whole numbers of days, separated by commas"))
            parts = []
        body[name] = {"enabled": reader.flag(f"{name}.enabled"),
                      "lead_days": [int(p) for p in parts] or None,
                      "at": _hhmm(reader.text(f"{name}.at"))}
    body["safety_plan_review"] = {
        "enabled": reader.flag("safety_plan_review.enabled"),
        "lead_days": _whole_days(reader, "safety_plan_review.lead_days", errors),
        "at": _hhmm(reader.text("safety_plan_review.at"))}
    body["check_in"] = {"enabled": reader.flag("check_in.enabled")}
    for name in DAY_RULES:
        body[name] = {"enabled": reader.flag(f"{name}.enabled"),
                      "days": _whole_days(reader, f"{name}.days", errors)}
    return body


def _rules_page(request: Request, *, values: dict[str, Any], status_code: int = 200,
                problem: Any = None, note: str | None = None) -> Response:
    return _page(request, "reminder_rules.html", title="Reminder rules", v=values,
                 problem=problem, note=note, status_code=status_code)


@router.get("/reminder-rules")
def reminder_rules_page(request: Request, db: SessionDep, signed: RuleKeeper,
                        done: Done = None) -> Response:
    """The agency's reminder rules and lead times, as ``/api/v1/reminder-settings``."""
    current = reminders.read_rules(db, signed.actor)
    return _rules_page(request, values=_rule_values(current), note=DONE_NOTES.get(done or ""))


@router.post("/reminder-rules")
def save_reminder_rules(request: Request, db: SessionDep, signed: RuleKeeper,
                        _csrf: CsrfChecked, form: PostedForm) -> Response:
    reader = FormReader(form)
    errors: list[dict[str, str]] = []
    body = _read_rules_form(reader, errors)
    try:
        try:
            checked = ReminderRules.model_validate(body)
        except ValidationError as exc:
            raise _FormInvalid(invalid_form(_schema_errors(reader, exc, errors))) from None
        if errors:
            raise _FormInvalid(invalid_form(errors))
        reminders.update_rules(db, signed.actor, checked)
    except _FormInvalid as exc:
        return _rules_page(request, values=reader.values, status_code=422, problem=exc.problem)
    except DomainError as exc:
        refuse(request, exc)
        return _rules_page(request, values=reader.values, status_code=exc.status,
                           problem=reader.relabel(exc))
    return _redirect("/dashboard/reminder-rules?done=rules-saved")
