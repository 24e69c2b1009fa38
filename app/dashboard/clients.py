"""Dashboard pages for clients: the caseload, a client's record, safety plan, risk
assessments, releases of information and service log.

Thin adapters over the clients, safety_plans, risk, consents and service_log services,
making the same calls as their API modules: reach (404 outside one's caseload), rules
and audit are the services'. Bodies are checked with the API's own schemas before a
service is called, so the dashboard accepts exactly what the API accepts.

No personal data travels in a URL: the name search is a POST, and redirects carry
fixed ``done`` codes only; ids (random UUIDs), case numbers, statuses and plan version
numbers may. Page titles (kept in browser history) name a case number, never a person.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode
from uuid import UUID

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Form, Path, Query, Request, Response
from pydantic import ValidationError
from sqlmodel import Session
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse

from app.clients import schemas as client_schemas
from app.clients import service as clients
from app.clients.models import Client
from app.consents import schemas as consent_schemas
from app.consents import service as consents
from app.consents.models import ReleaseOfInformation
from app.core.errors import Conflict, DomainError, Invalid, NotFound
from app.core.pagination import PageParams, SortKey, decode_cursor, encode_cursor, paginate
from app.dashboard.auth import CsrfChecked, DashboardRoute, Signed, allowed, refuse, request_db
from app.dashboard.client_forms import (
    CHANNELS,
    CONTACT_KINDS,
    WEEKDAYS,
    FormProblem,
    FormReader,
    client_values,
    invalid_form,
    plan_values,
    read_answers,
    read_client_form,
    read_plan_form,
)
from app.dashboard.web import render
from app.db import SessionDep, utcnow
from app.identity import service as identity
from app.identity.models import Role, StaffUser
from app.risk import instruments as risk_engine
from app.risk import service as risk
from app.risk.models import RiskAssessment
from app.safety_plans import schemas as plan_schemas
from app.safety_plans import service as plans
from app.safety_plans.models import SafetyPlanVersion
from app.service_log import schemas as contact_schemas
from app.service_log import service as service_log

router = APIRouter(prefix="/dashboard/clients", route_class=DashboardRoute,
                   include_in_schema=False, dependencies=[Depends(request_db)])

ClientStaff = Annotated[Signed, Depends(allowed("clients:read"))]
"""Staff who work with clients (advocates, supervisors); to everyone else no page exists."""

Cursor = Annotated[str | None, Query(max_length=1024)]
Done = Annotated[str | None, Query(max_length=40)]
Version = Annotated[int, Path(ge=1, le=1_000_000)]

CASELOAD_SIZE = 25
RECENT = 10  # plan versions and contacts on the client page
RISK_SHOWN = 20
RELEASES_SHOWN = 50
LISTING_SIZE = 50

DONE_NOTES = {
    "client-created": "The case is open.",
    "client-updated": "The client's details are saved.",
    "no-change": "Nothing was changed.",
    "plan-saved": "The safety plan is saved as a new version.",
    "go-bag-saved": "The go-bag checklist is saved as a new version of the safety plan.",
    "assessment-recorded": "The risk assessment is recorded.",
    "consent-recorded": "The release of information is recorded.",
    "consent-revoked": "The release of information is revoked.",
    "contact-recorded": "The contact is added to the service log.",
}

STATUS_LABELS = {"intake": "Intake", "active": "Active", "closed": "Closed"}
CLOSING_REASON_LABELS = {
    "goals_met": "Goals met", "client_request": "At the client's request",
    "lost_contact": "Lost contact", "referred_elsewhere": "Referred elsewhere",
    "moved_away": "Moved away", "other": "Other",
}
CONTACT_MODE_LABELS = {"none": "No contact", "written_logistics_only":
                       "Written logistics only", "other": "Other arrangement"}
SERVICE_KIND_LABELS = {
    "hotline_call": "Hotline call", "in_person": "In person",
    "court_accompaniment": "Court accompaniment",
    "hospital_accompaniment": "Hospital accompaniment", "counselling": "Counselling",
    "shelter_night": "Shelter night", "legal_advocacy": "Legal advocacy",
    "transport": "Transport", "other": "Other",
}
CATEGORY_LABELS = {
    "contact_details": "Contact details", "identity": "Identity (names, date of birth)",
    "address": "Address", "safety_plan": "Safety plan", "risk_assessment": "Risk assessment",
    "incidents": "Incidents", "evidence": "Evidence", "household": "Household",
    "service_history": "Service history",
}
HOW_GIVEN_LABELS = {"written": "Written, signed", "electronic_signature":
                    "Electronic signature", "verbal_documented": "Verbal, documented"}
RELEASE_STATUS_LABELS = {"active": "In force", "pending": "Not yet in force",
                         "expired": "Expired", "revoked": "Revoked"}
PLAN_SECTION_LABELS = {
    "safe_places": "Safe places", "go_bag": "Go-bag checklist",
    "important_contacts": "Important contacts", "code_word": "Code word and check-in",
    "children": "Children", "pets": "Pets", "technology_safety": "Technology safety",
    "money": "Money", "housing_and_legal": "Housing and legal steps",
    "contact_with_other_party": "Contact with the other party",
    "reasons_for_leaving": "Reasons for leaving", "notes": "Notes",
}
PLAN_FIELD_LABELS = {
    "place": "place", "how_to_get_there": "how to get there", "item": "item",
    "ready": "ready", "done": "done", "name": "name", "phone": "phone", "note": "note",
    "word": "code word", "trusted_person": "trusted person", "check_in_time": "check-in time",
    "mode": "arrangement", "notes": "notes",
}

LABELS = {
    "statuses": list(STATUS_LABELS.items()),
    "closing_reasons": list(CLOSING_REASON_LABELS.items()),
    "channels": CHANNELS, "weekdays": WEEKDAYS, "contact_kinds": CONTACT_KINDS,
    "contact_modes": list(CONTACT_MODE_LABELS.items()),
    "service_kinds": list(SERVICE_KIND_LABELS.items()),
    "categories": list(CATEGORY_LABELS.items()),
    "how_given": list(HOW_GIVEN_LABELS.items()),
    "status_label": STATUS_LABELS, "closing_reason_label": CLOSING_REASON_LABELS,
    "contact_mode_label": CONTACT_MODE_LABELS, "service_kind_label": SERVICE_KIND_LABELS,
    "category_label": CATEGORY_LABELS, "how_given_label": HOW_GIVEN_LABELS,
    "release_status_label": RELEASE_STATUS_LABELS, "plan_section_label": PLAN_SECTION_LABELS,
}


def _redirect(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def _page(request: Request, template: str, *, title: str, **context: Any) -> Response:
    return render(request, template, title=title, labels=LABELS, **context)


async def _posted_form(request: Request) -> FormData:
    # Already parsed for the CSRF field; Starlette hands back the same FormData.
    return await request.form()


PostedForm = Annotated[FormData, Depends(_posted_form)]


def _staff_names(db: Session, signed: Signed, ids: set[UUID]) -> dict[UUID, str]:
    """Colleagues' display names for ids a service returned (assigned staff, who logged a
    contact): names of staff of one's own agency, never client data."""
    if not ids:
        return {}
    rows = db.execute(sa.select(StaffUser.id, StaffUser.display_name).where(
        StaffUser.org_id == signed.actor.org_id, StaffUser.id.in_(ids)))
    return {user_id: ("you" if user_id == signed.actor.id else name) for user_id, name in rows}


def _client_path(client_id: UUID, done: str | None = None, anchor: str | None = None) -> str:
    path = f"/dashboard/clients/{client_id}"
    if done:
        path += f"?done={done}"
    return path + (f"#{anchor}" if anchor else "")


# --- the caseload ------------------------------------------------------------------------


@dataclass
class CaseloadRow:
    id: UUID
    case_number: str
    preferred_name: str | None
    status: str
    urgent: bool
    assigned: list[str]


def _advocate_options(db: Session, signed: Signed) -> list[tuple[str, str]]:
    """Whom a supervisor can filter the caseload by; advocates see only their own."""
    if not (signed.can("clients:read_all") and signed.can("users:read")):
        return []
    query = identity.readable_users(signed.actor).where(
        StaffUser.role.in_((Role.advocate.value, Role.supervisor.value)),
        StaffUser.is_active.is_(True)).order_by(StaffUser.display_name, StaffUser.id)
    return [(str(user.id), user.display_name) for user in db.scalars(query.limit(500))]


CASELOAD_LISTING = "dashboard-clients"


def _caseload_rows(db: Session, query: sa.Select[Any],
                   cursor: str | None) -> tuple[list[Client], str | None]:
    """One page of clients in the API's order: urgent first, then newest, then by id.

    Keyset by hand: the shared paginator compares each key with ``<``/``>``, which
    SQLAlchemy refuses for a boolean (``urgent < False``)."""
    if cursor:
        urgent, created, last_id = decode_cursor(CASELOAD_LISTING, cursor, 3)
        later = sa.or_(Client.created_at < created,
                       sa.and_(Client.created_at == created, Client.id > last_id))
        same = sa.and_(Client.urgent.is_(bool(urgent)), later)
        query = query.where(sa.or_(same, Client.urgent.is_(False)) if urgent else same)
    rows = list(db.scalars(query.order_by(Client.urgent.desc(), Client.created_at.desc(),
                                          Client.id).limit(CASELOAD_SIZE + 1)))
    if len(rows) <= CASELOAD_SIZE:
        return rows, None
    rows = rows[:CASELOAD_SIZE]
    last = rows[-1]
    return rows, encode_cursor(CASELOAD_LISTING, (last.urgent, last.created_at, last.id))


def _caseload_page(request: Request, db: Session, signed: Signed, *,
                   filters: dict[str, str], name: str = "", cursor: str | None = None,
                   status_code: int = 200, problem: Any = None,
                   note: str | None = None) -> Response:
    errors: list[dict[str, str]] = []
    criteria: dict[str, Any] = {"case_number": filters.get("case_number") or None,
                                "name": name or None}
    status = filters.get("status") or ""
    if status and status not in clients.STATUSES:
        errors.append({"field": "status", "message": "not a status"})
    elif status:
        criteria["status"] = status
    advocate = filters.get("advocate") or ""
    if advocate:
        try:
            criteria["advocate_id"] = UUID(advocate)
        except ValueError:
            errors.append({"field": "advocate", "message": "not a member of staff"})
    if errors and problem is None:
        problem, status_code = invalid_form(errors), 422
    rows, next_cursor = _caseload_rows(
        db, clients.search_clients(signed.actor, db=db, **criteria), cursor)
    clients.audit_listing(db, signed.actor, rows)
    records = clients.list_page(db, signed.actor, rows, with_assignments=True)
    names = _staff_names(db, signed, {uid for r in records for uid in r.assigned_user_ids})
    listed = [CaseloadRow(r.client.id, r.client.case_number, r.preferred_name,
                          r.client.status, r.client.urgent,
                          sorted(names.get(uid, "a former colleague")
                                 for uid in r.assigned_user_ids)) for r in records]
    next_href = None
    if next_cursor and not name:
        shown = {k: v for k, v in filters.items() if v}
        next_href = "/dashboard/clients?" + urlencode({**shown, "cursor": next_cursor})
    return _page(request, "clients.html", title="Clients", rows=listed, filters=filters,
                 searched_name=name, next_href=next_href,
                 next_cursor=next_cursor if name else None,
                 advocates=_advocate_options(db, signed), problem=problem, note=note,
                 status_code=status_code)


@router.get("")
def caseload(request: Request, db: SessionDep, signed: ClientStaff,
             case_number: Annotated[str, Query(max_length=20)] = "",
             status: Annotated[str, Query(max_length=16)] = "",
             advocate: Annotated[str, Query(max_length=40)] = "",
             cursor: Cursor = None, done: Done = None) -> Response:
    """Your caseload (supervisors: every client of the agency), urgent first, newest first,
    filtered by case number, status or assigned staff (none of them personal data)."""
    filters = {"case_number": case_number.strip(), "status": status, "advocate": advocate}
    return _caseload_page(request, db, signed, filters=filters, cursor=cursor,
                          note=DONE_NOTES.get(done or ""))


@router.post("/search")
def search_by_name(request: Request, db: SessionDep, signed: ClientStaff, _csrf: CsrfChecked,
                   name: Annotated[str, Form(max_length=200)] = "",
                   cursor: Annotated[str, Form(max_length=1024)] = "") -> Response:
    """Clients whose legal or preferred name is exactly this (a POST: no name in a URL)."""
    if not name.strip():
        problem = invalid_form([{"field": "name", "message": "type the name to look for"}])
        return _caseload_page(request, db, signed, filters={}, problem=problem,
                              status_code=422)
    return _caseload_page(request, db, signed, filters={}, name=name.strip(),
                          cursor=cursor or None)


# --- opening a case and changing its details ---------------------------------------------


def _client_form(request: Request, signed: Signed, *, reader: FormReader,
                 client: Client | None = None, status_code: int = 200,
                 problem: Any = None) -> Response:
    title = f"Edit client {client.case_number}" if client else "Open a new case"
    return _page(request, "client_form.html", title=title, client=client, v=reader.values,
                 rows=reader.counts, problem=problem, status_code=status_code)


def _checked(reader: FormReader, body: dict[str, Any], household: dict[str, Any], *,
             editing: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """The bodies validated by the API's own schemas (every problem at once)."""
    model = client_schemas.ClientUpdate if editing else client_schemas.ClientCreate
    errors: list[dict[str, str]] = []
    checked: dict[str, Any] = {}
    checked_household: dict[str, Any] = {}
    try:
        checked = model.model_validate(body).model_dump(mode="json")
    except ValidationError as exc:
        errors += reader.schema_errors(exc)
    try:
        checked_household = client_schemas.Household.model_validate(household).model_dump(
            mode="json")
    except ValidationError as exc:
        errors += reader.schema_errors(exc, ("household",))
    if errors:
        raise _FormInvalid(invalid_form(errors))
    return checked, checked_household


class _FormInvalid(Exception):
    """A form refused before any service was called (nothing to roll back)."""

    def __init__(self, problem: FormProblem) -> None:
        super().__init__(problem.detail)
        self.problem = problem


@router.get("/new")
def new_client_form(request: Request, signed: ClientStaff) -> Response:
    """The form to open a case: every personal field may be left empty."""
    return _client_form(request, signed, reader=client_values(None, None))


@router.post("/new")
def create_client(request: Request, db: SessionDep, signed: ClientStaff, _csrf: CsrfChecked,
                  form: PostedForm) -> Response:
    reader = FormReader(form)
    body, household = read_client_form(reader, editing=False)
    try:
        checked, checked_household = _checked(reader, body, household, editing=False)
        personal = {k: v for k, v in checked.items() if k in clients.PERSONAL_FIELDS}
        record = clients.create_client(db, signed.actor, personal=personal,
                                       status=checked["status"])
        if checked_household["children"] or checked_household["pets"]:
            clients.replace_household(db, signed.actor, record.client.id, checked_household)
    except _FormInvalid as exc:
        return _client_form(request, signed, reader=reader, status_code=422,
                            problem=exc.problem)
    except DomainError as exc:
        refuse(request, exc)
        return _client_form(request, signed, reader=reader, status_code=exc.status,
                            problem=reader.relabel(exc))
    return _redirect(_client_path(record.client.id, "client-created"))


@router.get("/{client_id}/edit")
def edit_client_form(request: Request, client_id: UUID, db: SessionDep,
                     signed: ClientStaff) -> Response:
    """The client's details, safe-contact preferences, household and the other party."""
    record = clients.read_client(db, signed.actor, client_id)
    household = clients.read_household(db, signed.actor, client_id)
    reader = client_values(record.fields, household, status=record.client.status,
                           closing_reason=record.client.closing_reason,
                           urgent=record.client.urgent)
    return _client_form(request, signed, reader=reader, client=record.client)


def _blank(value: Any) -> Any:
    if value in (None, "", [], {"time_zone": "UTC", "channels": []}):
        return None
    return value


@router.post("/{client_id}/edit")
def update_client(request: Request, client_id: UUID, db: SessionDep, signed: ClientStaff,
                  _csrf: CsrfChecked, form: PostedForm) -> Response:
    client = clients.get_client(db, signed.actor, client_id, for_write=True)
    reader = FormReader(form)
    body, household = read_client_form(reader, editing=True)
    try:
        checked, checked_household = _checked(reader, body, household, editing=True)
        # Only what changed is sent, as an API caller would: the audit trail then names
        # the fields that really changed.
        current = clients.decrypt_record(db, signed.actor, client)
        personal = {k: v for k, v in checked.items() if k in clients.PERSONAL_FIELDS
                    and _blank(v) != _blank(current.fields.get(k))}
        status = checked["status"] if checked["status"] != client.status else None
        reason = checked["closing_reason"]
        reason = reason if reason and reason != client.closing_reason else None
        urgent = checked["urgent"] if checked["urgent"] != client.urgent else None
        household_changed = _blank(checked_household) != _blank(current.fields["household"])
        if not (personal or status or reason or urgent is not None or household_changed):
            return _redirect(_client_path(client_id, "no-change"))
        if personal or status or reason or urgent is not None:
            clients.update_client(db, signed.actor, client_id, personal=personal,
                                  status=status, closing_reason=reason, urgent=urgent)
        if household_changed:
            clients.replace_household(db, signed.actor, client_id, checked_household)
    except _FormInvalid as exc:
        return _client_form(request, signed, reader=reader, client=client, status_code=422,
                            problem=exc.problem)
    except DomainError as exc:
        refuse(request, exc)
        return _client_form(request, signed, reader=reader, client=client,
                            status_code=exc.status, problem=reader.relabel(exc))
    return _redirect(_client_path(client_id, "client-updated"))


# --- the client page ---------------------------------------------------------------------


@dataclass
class RiskRow:
    assessed_at: datetime
    instrument: str
    score: str
    max_score: str
    level: str
    highest: bool
    complete: bool
    assessed_by: str
    rank: int  # 0 = the instrument's lowest level
    levels: int

    @property
    def tone(self) -> int:
        """0 (lowest level) to 3 (highest), for the colour of bars and labels."""
        return round(3 * self.rank / max(self.levels - 1, 1))


@dataclass
class Bar:
    x: int
    y: int
    width: int
    height: int
    tone: int
    label: str


CHART_WIDTH, CHART_HEIGHT, CHART_BASE = 640, 200, 170


def _risk_history(db: Session, signed: Signed, client_id: UUID) -> list[RiskRow]:
    rows, _ = paginate(
        db, risk.assessment_history(db, signed.actor, client_id), listing="dashboard-risk",
        keys=[SortKey(RiskAssessment.assessed_at, descending=True), SortKey(RiskAssessment.id)],
        params=PageParams(limit=RISK_SHOWN, cursor=None))
    found: dict[tuple[str, str], risk_engine.Instrument | None] = {}
    names = _staff_names(db, signed, {row.assessed_by for row in rows})
    history = []
    for row in rows:
        key = (row.instrument_id, row.instrument_version)
        if key not in found:
            try:
                found[key] = risk.get_instrument(db, signed.actor, *key)
            except NotFound:
                found[key] = None  # an agency instrument no longer on file
        instrument = found[key]
        levels = {level.name: level for level in instrument.levels} if instrument else {}
        level = levels.get(row.level)
        history.append(RiskRow(
            assessed_at=row.assessed_at,
            instrument=f"{instrument.name if instrument else row.instrument_id} "
                       f"(version {row.instrument_version})",
            score=row.score, max_score=row.max_score,
            level=(level.label or level.name) if level else row.level,
            highest=row.is_highest_level, complete=row.complete,
            assessed_by=names.get(row.assessed_by, "a former colleague"),
            rank=instrument.level_rank(row.level) if level and instrument else
            (1 if row.is_highest_level else 0),
            levels=len(levels) if level else 2))
    return history


def _risk_chart(history: list[RiskRow]) -> list[Bar]:
    """Bars for the levels over time, oldest on the left; heights by level, not score,
    so assessments with different instruments can stand side by side."""
    oldest_first = list(reversed(history))
    if not oldest_first:
        return []
    step = CHART_WIDTH // max(len(oldest_first), 8)
    bars = []
    for index, row in enumerate(oldest_first):
        share = (row.rank + 1) / max(row.levels, 1)
        height = max(int(CHART_BASE * share), 8)
        bars.append(Bar(x=index * step + 4, y=CHART_BASE - height, width=step - 8,
                        height=height, tone=row.tone,
                        label=f"{row.assessed_at:%Y-%m-%d}: {row.level}"))
    return bars


def _releases(db: Session, signed: Signed, client_id: UUID) -> list[consents.ReleaseRecord]:
    rows, _ = paginate(
        db, consents.list_releases(db, signed.actor, client_id),
        listing=f"dashboard-consents:{client_id}",
        keys=[SortKey(ReleaseOfInformation.created_at, descending=True),
              SortKey(ReleaseOfInformation.id, descending=True)],
        params=PageParams(limit=RELEASES_SHOWN, cursor=None))
    consents.audit_listing(db, signed.actor, client_id, rows)
    return [consents.decrypt_release(db, row) for row in rows]


def _versions(db: Session, signed: Signed, client_id: UUID, *, limit: int,
              cursor: str | None = None) -> tuple[list[SafetyPlanVersion], str | None]:
    rows, next_cursor = paginate(
        db, plans.list_versions(db, signed.actor, client_id),
        listing=f"dashboard-plans:{client_id}",
        keys=[SortKey(SafetyPlanVersion.version, descending=True),
              SortKey(SafetyPlanVersion.id, descending=True)],
        params=PageParams(limit=limit, cursor=cursor or None))
    plans.audit_listing(db, signed.actor, client_id, rows)
    return rows, next_cursor


def _today_text() -> str:
    return utcnow().date().isoformat()


def _client_page(request: Request, db: Session, signed: Signed, client_id: UUID, *,
                 status_code: int = 200, problem: Any = None, note: str | None = None,
                 consent_form: dict[str, Any] | None = None,
                 contact_form: dict[str, Any] | None = None) -> Response:
    record = clients.read_client(db, signed.actor, client_id)
    household = clients.read_household(db, signed.actor, client_id)
    versions, more_versions = _versions(db, signed, client_id, limit=RECENT)
    plan = plans.read_plan(db, signed.actor, client_id) if versions else None
    history = _risk_history(db, signed, client_id)
    releases = _releases(db, signed, client_id)
    contacts, more_contacts = service_log.list_contacts(
        db, signed.actor, client_id, PageParams(limit=RECENT, cursor=None))
    staff = _staff_names(db, signed, set(record.assigned_user_ids)
                         | {c.contact.staff_user_id for c in contacts}
                         | {v.created_by for v in versions})
    today = utcnow().date()
    return _page(
        request, "client.html", title=f"Client {record.client.case_number}",
        record=record, client=record.client, f=record.fields, household=household,
        staff=staff, assigned=sorted(staff.get(uid, "a former colleague")
                                     for uid in record.assigned_user_ids),
        plan=plan, versions=versions, more_versions=bool(more_versions),
        review_overdue=bool(plan and plan.plan.review_date < today), history=history,
        chart=_risk_chart(history), chart_width=CHART_WIDTH, chart_height=CHART_HEIGHT,
        releases=releases, contacts=contacts, more_contacts=bool(more_contacts),
        consent_form=consent_form or {"how_given": "written", "categories": [],
                                      "given_on": today.isoformat()},
        contact_form=contact_form or {"kind": "in_person", "occurred_on": today.isoformat(),
                                      "duration_minutes": "30"},
        problem=problem, note=note, status_code=status_code)


@router.get("/{client_id}")
def client_page(request: Request, client_id: UUID, db: SessionDep, signed: ClientStaff,
                done: Done = None) -> Response:
    """One client: details, safe contact, household, the safety plan, risk history,
    releases of information and the service log (every read is audited)."""
    return _client_page(request, db, signed, client_id, note=DONE_NOTES.get(done or ""))


# --- safety plan -------------------------------------------------------------------------


def _template_content(db: Session, signed: Signed) -> dict[str, Any]:
    """A first plan's checklists from the agency's own template (the built-in one until the
    agency saves its own)."""
    template = plans.get_template(db, signed.actor)
    return {"go_bag": [{"item": item, "ready": False} for item in template.go_bag],
            "technology_safety": [{"item": item, "done": False}
                                  for item in template.technology_safety]}


def _plan_form(request: Request, client: Client, *, reader: FormReader,
               version: int | None, status_code: int = 200, problem: Any = None) -> Response:
    return _page(request, "plan_form.html", title=f"Safety plan for {client.case_number}",
                 client=client, v=reader.values, rows=reader.counts, version=version,
                 today=_today_text(),
                 latest_review=(utcnow().date() + timedelta(days=plans.MAX_REVIEW_DAYS))
                 .isoformat(), problem=problem, status_code=status_code)


@router.get("/{client_id}/plan")
def plan_form(request: Request, client_id: UUID, db: SessionDep,
              signed: ClientStaff) -> Response:
    """Write or revise the safety plan: the current version filled in (or the starting
    checklist); saving makes the next version, earlier ones stay as they were."""
    client = clients.get_client(db, signed.actor, client_id, for_write=True)
    versions, _ = _versions(db, signed, client_id, limit=1)
    if versions:
        current = plans.read_plan(db, signed.actor, client_id)
        review = current.plan.review_date
        reader = plan_values(current.content,
                             review.isoformat() if review >= utcnow().date() else "")
        return _plan_form(request, client, reader=reader, version=current.plan.version)
    return _plan_form(request, client, reader=plan_values(_template_content(db, signed)),
                      version=None)


@router.post("/{client_id}/plan")
def save_plan(request: Request, client_id: UUID, db: SessionDep, signed: ClientStaff,
              _csrf: CsrfChecked, form: PostedForm) -> Response:
    client = clients.get_client(db, signed.actor, client_id, for_write=True)
    reader = FormReader(form)
    raw = read_plan_form(reader)
    based_on = reader.text("based_on")
    version = int(based_on) if based_on.isdigit() else None
    try:
        try:
            body = plan_schemas.PlanCreate.model_validate(raw)
        except ValidationError as exc:
            raise _FormInvalid(invalid_form(reader.schema_errors(exc))) from None
        latest, _ = _versions(db, signed, client_id, limit=1)
        if (latest[0].version if latest else None) != version:
            # Saving would quietly undo what a colleague saved in the meantime.
            raise Conflict("Someone saved a new version of this plan after you opened this "
                           "form. Open the plan again to see their changes, then make yours.")
        plans.create_version(db, signed.actor, client_id,
                             content=body.content.model_dump(mode="json"),
                             review_date=body.review_date, change_note=body.change_note)
    except _FormInvalid as exc:
        return _plan_form(request, client, reader=reader, version=version, status_code=422,
                          problem=exc.problem)
    except DomainError as exc:
        refuse(request, exc)
        return _plan_form(request, client, reader=reader, version=version,
                          status_code=exc.status, problem=reader.relabel(exc))
    return _redirect(_client_path(client_id, "plan-saved", "safety-plan"))


def _go_bag_note(marked: int, unmarked: int) -> str:
    if marked == 1 and not unmarked:
        return "Go-bag item marked ready"
    if unmarked == 1 and not marked:
        return "Go-bag item marked not ready"
    return f"Go-bag checklist: {marked} marked ready, {unmarked} marked not ready"


@router.post("/{client_id}/plan/go-bag")
def save_go_bag(request: Request, client_id: UUID, db: SessionDep, signed: ClientStaff,
                _csrf: CsrfChecked, based_on: Annotated[int, Form(ge=1, le=1_000_000)],
                ready: Annotated[list[int] | None, Form()] = None) -> Response:
    """Tick go-bag items as ready: the plan as it is, with these ticks, as a new version."""
    try:
        current = plans.read_plan(db, signed.actor, client_id)
        if current.plan.version != based_on:
            raise Conflict("The plan was changed since this page was opened. The page now "
                           "shows the current plan: tick the items again.",
                           errors=[{"field": "go_bag", "message": "the plan has changed"}])
        content = copy.deepcopy(current.content)
        ticked = set(ready or [])
        marked = unmarked = 0
        for index, item in enumerate(content.get("go_bag") or []):
            now_ready = index in ticked
            if now_ready != bool(item.get("ready")):
                marked, unmarked = (marked + 1, unmarked) if now_ready else (marked,
                                                                             unmarked + 1)
                item["ready"] = now_ready
        if not (marked or unmarked):
            return _redirect(_client_path(client_id, "no-change", "safety-plan"))
        try:
            plans.create_version(db, signed.actor, client_id, content=content,
                                 review_date=current.plan.review_date,
                                 change_note=_go_bag_note(marked, unmarked))
        except Invalid as exc:
            if not any(e.get("field") == "review_date" for e in exc.errors or []):
                raise
            raise Invalid("The plan's review date has passed. Revise the plan and set a new "
                          "review date, then tick the items.",
                          errors=[{"field": "go_bag", "message": "review the plan first"}]
                          ) from None
    except DomainError as exc:
        if isinstance(exc, NotFound):
            raise
        refuse(request, exc)
        return _client_page(request, db, signed, client_id, status_code=exc.status,
                            problem=FormReader().relabel(exc))
    return _redirect(_client_path(client_id, "go-bag-saved", "safety-plan"))


@router.get("/{client_id}/plan/versions")
def plan_versions(request: Request, client_id: UUID, db: SessionDep, signed: ClientStaff,
                  cursor: Cursor = None) -> Response:
    """Every version of the plan, newest first (who saved it and when; no plan text)."""
    client = clients.get_client(db, signed.actor, client_id)
    versions, next_cursor = _versions(db, signed, client_id, limit=LISTING_SIZE,
                                      cursor=cursor)
    staff = _staff_names(db, signed, {v.created_by for v in versions})
    next_href = (f"/dashboard/clients/{client_id}/plan/versions?"
                 + urlencode({"cursor": next_cursor})) if next_cursor else None
    return _page(request, "plan_versions.html",
                 title=f"Safety plan versions for {client.case_number}", client=client,
                 versions=versions, staff=staff, next_href=next_href)


@router.get("/{client_id}/plan/versions/{version}")
def plan_version(request: Request, client_id: UUID, version: Version, db: SessionDep,
                 signed: ClientStaff) -> Response:
    """One version of the plan, exactly as it was saved."""
    client = clients.get_client(db, signed.actor, client_id)
    shown = plans.read_plan(db, signed.actor, client_id, version)
    staff = _staff_names(db, signed, {shown.plan.created_by})
    return _page(request, "plan_version.html",
                 title=f"Safety plan version {version} for {client.case_number}",
                 client=client, plan=shown, staff=staff)


@dataclass
class ChangeRow:
    what: str
    kind: str
    before: str
    after: str


def _path_label(path: str) -> str:
    """``go_bag[2].ready`` → ``Go-bag checklist › item 3 › ready``."""
    words = []
    for part in path.replace("[", ".[").split("."):
        if not part:
            continue
        if part.startswith("["):
            words.append(f"item {int(part.strip('[]')) + 1}")
        elif not words:
            words.append(PLAN_SECTION_LABELS.get(part, part))
        else:
            words.append(PLAN_FIELD_LABELS.get(part, part.replace("_", " ")))
    return " › ".join(words)


def _shown(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value == "":
        return "(empty)"
    if isinstance(value, dict):
        return "; ".join(f"{PLAN_FIELD_LABELS.get(k, k)}: {_shown(v)}"
                         for k, v in value.items() if v not in ("", None, [], {}))
    if isinstance(value, list):
        return " | ".join(_shown(item) for item in value) or "(none)"
    return str(value)


@router.get("/{client_id}/plan/diff")
def plan_diff(request: Request, client_id: UUID, db: SessionDep, signed: ClientStaff,
              from_version: Annotated[int | None, Query(alias="from", ge=1,
                                                        le=1_000_000)] = None,
              to_version: Annotated[int | None, Query(alias="to", ge=1,
                                                      le=1_000_000)] = None) -> Response:
    """What changed between two versions of the plan (default: the latest and the one
    before it)."""
    client = clients.get_client(db, signed.actor, client_id)
    latest, _ = _versions(db, signed, client_id, limit=1)
    if not latest:
        raise NotFound("No safety plan yet for this client.")
    before, after, changes = plans.diff_versions(db, signed.actor, client_id, from_version,
                                                 to_version)
    rows = [ChangeRow(_path_label(c.path), c.kind, _shown(c.before), _shown(c.after))
            for c in changes]
    return _page(request, "plan_diff.html",
                 title=f"Safety plan changes for {client.case_number}", client=client,
                 before=before, after=after, changes=rows,
                 all_versions=list(range(latest[0].version, 0, -1)))


# --- risk assessments --------------------------------------------------------------------


def _instrument_key(instrument: risk_engine.Instrument) -> str:
    return f"{instrument.id}:{instrument.version}"


@dataclass
class Question:
    id: str
    type: str
    text: str
    help: str | None
    required: bool
    options: list[tuple[str, str]]
    min: int | None = None
    max: int | None = None


def _questions(instrument: risk_engine.Instrument | None) -> list[Question]:
    if instrument is None:
        return []
    return [Question(item.id, item.type, item.text, item.help, item.required,
                     [(o.value, o.label) for o in getattr(item, "options", ())],
                     getattr(item, "min", None), getattr(item, "max", None))
            for item in instrument.items]


def _assessment_form(request: Request, db: Session, signed: Signed, client: Client, *,
                     chosen: str, reader: FormReader | None = None, partial: bool = False,
                     status_code: int = 200, problem: Any = None) -> Response:
    available = risk.list_instruments(db, signed.actor)
    if not chosen and len(available) == 1:
        chosen = _instrument_key(available[0])
    instrument = None
    if chosen:
        instrument_id, _, version = chosen.partition(":")
        try:
            instrument = risk.get_instrument(db, signed.actor, instrument_id, version or None)
        except NotFound:
            problem = problem or invalid_form([{"field": "instrument",
                                                "message": "choose an instrument from the list"}])
            status_code = 422 if status_code == 200 else status_code
    return _page(request, "assessment.html", title=f"Risk assessment for {client.case_number}",
                 client=client, instruments=[(_instrument_key(i), f"{i.name} (version "
                                                                  f"{i.version})")
                                             for i in available],
                 chosen=chosen, instrument=instrument, questions=_questions(instrument),
                 v=(reader or FormReader()).values,
                 partial=partial, problem=problem, status_code=status_code)


@router.get("/{client_id}/assessment")
def assessment_form(request: Request, client_id: UUID, db: SessionDep, signed: ClientStaff,
                    instrument: Annotated[str, Query(max_length=100)] = "") -> Response:
    """Choose an instrument, then answer its items with the client."""
    client = clients.get_client(db, signed.actor, client_id, for_write=True)
    return _assessment_form(request, db, signed, client, chosen=instrument)


@router.post("/{client_id}/assessment")
def record_assessment(request: Request, client_id: UUID, db: SessionDep, signed: ClientStaff,
                      _csrf: CsrfChecked, form: PostedForm) -> Response:
    client = clients.get_client(db, signed.actor, client_id, for_write=True)
    reader = FormReader(form)
    chosen = reader.text("instrument")[:100]
    partial = reader.flag("partial")
    instrument_id, _, version = chosen.partition(":")
    try:
        instrument = risk.get_instrument(db, signed.actor, instrument_id, version or None)
        answers, errors = read_answers(reader, instrument.items)
        if errors:
            raise _FormInvalid(invalid_form(errors))
        risk.record_assessment(db, signed.actor, client_id, instrument_id=instrument.id,
                               version=instrument.version, answers=answers, partial=partial)
    except _FormInvalid as exc:
        return _assessment_form(request, db, signed, client, chosen=chosen, reader=reader,
                                partial=partial, status_code=422, problem=exc.problem)
    except DomainError as exc:
        refuse(request, exc)
        return _assessment_form(request, db, signed, client, chosen=chosen, reader=reader,
                                partial=partial, status_code=exc.status,
                                problem=reader.relabel(exc))
    return _redirect(_client_path(client_id, "assessment-recorded", "risk"))


# --- releases of information -------------------------------------------------------------


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(0, 0), tzinfo=UTC)


@router.post("/{client_id}/consents")
def record_consent(request: Request, client_id: UUID, db: SessionDep, signed: ClientStaff,
                   _csrf: CsrfChecked, form: PostedForm) -> Response:
    """Record a release of information to one outside agency."""
    reader = FormReader(form)
    typed = {
        "recipient_name": reader.text("consent.recipient_name"),
        "purpose": reader.text("consent.purpose"),
        "categories": reader.choices("consent.categories"),
        "how_given": reader.text("consent.how_given"),
        "given_on": reader.text("consent.given_on"),
        "expires_on": reader.text("consent.expires_on"),
    }
    rename = {"given_at": "consent.given_on", "effective_from": "consent.given_on",
              "expires_at": "consent.expires_on", "recipient_app_id": "consent.recipient_name"}
    errors: list[dict[str, str]] = []
    days: dict[str, date | None] = {}
    for name in ("given_on", "expires_on"):
        try:
            days[name] = date.fromisoformat(typed[name]) if typed[name] else None
        except ValueError:
            errors.append({"field": f"consent.{name}", "message": "not a date (YYYY-MM-DD)"})
    if not typed["expires_on"]:
        errors.append({"field": "consent.expires_on", "message": "say when it ends"})
    given, expires = days.get("given_on"), days.get("expires_on")
    body = {"recipient_name": typed["recipient_name"] or None, "purpose": typed["purpose"],
            "categories": typed["categories"], "how_given": typed["how_given"],
            # Signed today: from now. Signed earlier: from the start of that day (UTC).
            "given_at": _day_start(given) if given and given != utcnow().date() else None,
            "expires_at": _day_start(expires) if expires else None}
    try:
        try:
            release = consent_schemas.ReleaseCreate.model_validate(body)
        except ValidationError as exc:
            for error in exc.errors(include_url=False, include_input=False):
                top = str(error["loc"][0]) if error["loc"] else ""
                name = rename.get(top, f"consent.{top}")
                if name not in {e["field"] for e in errors}:
                    errors.append({"field": name, "message": str(error["msg"])})
        if errors:
            raise _FormInvalid(invalid_form(errors))
        consents.record_release(
            db, signed.actor, client_id, recipient_name=release.recipient_name,
            purpose=release.purpose, categories=list(release.categories),
            how_given=release.how_given, given_at=release.given_at,
            effective_from=release.effective_from, expires_at=release.expires_at)
    except _FormInvalid as exc:
        return _client_page(request, db, signed, client_id, status_code=422,
                            problem=exc.problem, consent_form=typed)
    except DomainError as exc:
        if isinstance(exc, NotFound):
            raise
        refuse(request, exc)
        return _client_page(request, db, signed, client_id, status_code=exc.status,
                            problem=reader.relabel(exc, rename=rename, prefix="consent."),
                            consent_form=typed)
    return _redirect(_client_path(client_id, "consent-recorded", "consents"))


@router.post("/{client_id}/consents/{consent_id}/revoke")
def revoke_consent(request: Request, client_id: UUID, consent_id: UUID, db: SessionDep,
                   signed: ClientStaff, _csrf: CsrfChecked,
                   reason: Annotated[str, Form(max_length=2000)] = "") -> Response:
    """Revoke a release from now on, with the reason (kept encrypted)."""
    field = f"revoke-{consent_id}"
    try:
        try:
            checked = consent_schemas.ReleaseRevoke.model_validate({"reason": reason.strip()})
        except ValidationError:
            raise _FormInvalid(invalid_form([{"field": field, "message":
                                              "give the reason (at least 3 characters)"}])
                               ) from None
        consents.revoke_release(db, signed.actor, client_id, consent_id,
                                reason=checked.reason)
    except _FormInvalid as exc:
        return _client_page(request, db, signed, client_id, status_code=422,
                            problem=exc.problem)
    except DomainError as exc:
        if isinstance(exc, NotFound):
            raise
        refuse(request, exc)
        return _client_page(request, db, signed, client_id, status_code=exc.status,
                            problem=FormReader().relabel(exc, rename={"reason": field}))
    return _redirect(_client_path(client_id, "consent-revoked", "consents"))


# --- the service log ---------------------------------------------------------------------


@router.post("/{client_id}/contacts")
def record_contact(request: Request, client_id: UUID, db: SessionDep, signed: ClientStaff,
                   _csrf: CsrfChecked, form: PostedForm) -> Response:
    """Log a contact or service you gave the client."""
    reader = FormReader(form)
    typed = {name: reader.text(f"contact.{name}")
             for name in ("kind", "occurred_on", "duration_minutes", "notes")}
    body = {"kind": typed["kind"], "occurred_on": typed["occurred_on"] or None,
            "duration_minutes": typed["duration_minutes"] or 0,
            "notes": typed["notes"] or None}
    try:
        try:
            checked = contact_schemas.ContactCreate.model_validate(body)
        except ValidationError as exc:
            raise _FormInvalid(invalid_form(reader.schema_errors(exc, ("contact",)))) from None
        service_log.record_contact(db, signed.actor, client_id, kind=checked.kind,
                                   occurred_on=checked.occurred_on,
                                   duration_minutes=checked.duration_minutes,
                                   notes=checked.notes)
    except _FormInvalid as exc:
        return _client_page(request, db, signed, client_id, status_code=422,
                            problem=exc.problem, contact_form=typed)
    except DomainError as exc:
        if isinstance(exc, NotFound):
            raise
        refuse(request, exc)
        return _client_page(request, db, signed, client_id, status_code=exc.status,
                            problem=reader.relabel(exc, prefix="contact."),
                            contact_form=typed)
    return _redirect(_client_path(client_id, "contact-recorded", "service-log"))


@router.get("/{client_id}/contacts")
def contacts_page(request: Request, client_id: UUID, db: SessionDep, signed: ClientStaff,
                  cursor: Cursor = None) -> Response:
    """The whole service log of a client, newest first."""
    client = clients.get_client(db, signed.actor, client_id)
    contacts, next_cursor = service_log.list_contacts(
        db, signed.actor, client_id, PageParams(limit=LISTING_SIZE, cursor=cursor or None))
    staff = _staff_names(db, signed, {c.contact.staff_user_id for c in contacts})
    next_href = (f"/dashboard/clients/{client_id}/contacts?"
                 + urlencode({"cursor": next_cursor})) if next_cursor else None
    return _page(request, "contacts.html", title=f"Service log for {client.case_number}",
                 client=client, contacts=contacts, staff=staff, next_href=next_href)

