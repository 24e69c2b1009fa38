"""Dashboard pages for a client's case file: incidents (record, read with their revision
history, correct, retract), protective orders, court dates, the timeline, and the
discreet print of the safety plan.

Thin adapters over the incidents, legal, timeline and safety_plans services, making the
same calls as their API modules: reach (404 outside one's caseload), rules and audit are
the services'. Bodies are checked with the API's own schemas before a service is called.
Every page lives under its client's address; a record of another client answers 404.

No personal data travels in a URL: forms are POSTed, redirects carry fixed ``done``
codes, and the GET filters are kinds, categories and dates. Page titles name a case
number, never a person.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any
from urllib.parse import urlencode
from uuid import UUID

from fastapi import APIRouter, Depends, Form, Query, Request, Response
from pydantic import ValidationError
from sqlmodel import Session
from starlette.responses import RedirectResponse

from app.clients import service as clients
from app.clients.models import Client
from app.core.errors import Conflict, DomainError, Invalid, NotFound
from app.core.pagination import PageParams, SortKey, paginate
from app.dashboard import casefile_forms as forms
from app.dashboard.auth import CsrfChecked, DashboardRoute, Signed, refuse, request_db
from app.dashboard.client_forms import FormProblem, FormReader, invalid_form
from app.dashboard.clients import ClientStaff, Cursor, Done, PostedForm
from app.dashboard.clients import _staff_names as staff_names
from app.dashboard.web import render
from app.db import SessionDep, utcnow
from app.evidence import filetypes
from app.evidence import service as evidence
from app.evidence.models import Evidence
from app.incidents import schemas as incident_schemas
from app.incidents import service as incidents
from app.incidents.models import CATEGORIES, Incident, IncidentRevision
from app.legal import schemas as legal_schemas
from app.legal import service as legal
from app.safety_plans import printing
from app.safety_plans import service as plans
from app.timeline import service as timeline

router = APIRouter(prefix="/dashboard/clients", route_class=DashboardRoute,
                   include_in_schema=False, dependencies=[Depends(request_db)])

LISTING_SIZE = 50
HISTORY_SIZE = 50
EVIDENCE_SHOWN = 50
ORDERS_SHOWN = 100  # orders a court date can be linked to

DONE_NOTES = {
    "incident-recorded": "The incident is recorded.",
    "incident-corrected": "The correction is saved as a new revision. Earlier revisions stay "
                          "as they were.",
    "incident-retracted": "The incident is retracted. It stays in the record, marked "
                          "retracted.",
    "order-recorded": "The protective order is recorded.",
    "order-updated": "The protective order is saved.",
    "court-date-recorded": "The court date is recorded.",
    "court-date-updated": "The court date is saved.",
    "no-change": "Nothing was changed.",
}

CATEGORY_LABELS = {
    "physical": "Physical", "sexual": "Sexual", "emotional_verbal": "Emotional or verbal",
    "threats": "Threats", "stalking": "Stalking",
    "technology_facilitated": "Technology-facilitated", "financial": "Financial",
    "property_damage": "Property damage",
    "protective_order_violation": "Protective order violation",
    "child_related": "Involving children",
}
IDENTIFIER_LABELS = {"phone": "Phone number", "account_handle": "Account or handle",
                     "email": "Email address", "other": "Other"}
ORDER_TYPE_LABELS = {"emergency": "Emergency", "temporary": "Temporary", "final": "Final",
                     "criminal_no_contact": "Criminal no-contact", "other": "Other"}
ORDER_STATUS_LABELS = {"requested": "Requested", "granted": "Granted", "denied": "Denied",
                       "withdrawn": "Withdrawn", "dismissed": "Dismissed",
                       "expired": "Expired"}
HEARING_KIND_LABELS = {"protective_order_hearing": "Protective order hearing",
                       "custody": "Custody", "criminal": "Criminal", "divorce": "Divorce",
                       "other": "Other"}
HEARING_STATUS_LABELS = {"scheduled": "Scheduled", "held": "Held", "adjourned": "Adjourned",
                         "cancelled": "Cancelled"}
WHEN_LABELS = {"all": "All, upcoming first", "upcoming": "Upcoming", "past": "Past"}
TIMELINE_KIND_LABELS = {
    timeline.INCIDENT: "Incident", timeline.COURT_DATE: "Court date",
    timeline.ORDER_ISSUED: "Protective order issued",
    timeline.ORDER_EXPIRY: "Protective order expiry",
    timeline.RISK: "Risk assessment", timeline.PLAN: "Safety plan version",
}
INCIDENT_FIELD_LABELS = {
    "occurred": "When", "categories": "Categories", "place": "Place",
    "client_account": "The client's account", "advocate_observations":
    "Advocate's observations", "injuries": "Injuries", "medical_care": "Medical care",
    "witnesses": "Witnesses", "police": "Police", "children_present": "Children present",
    "weapons_involved": "Weapons involved",
    "respondent_identifiers": "The other person's identifiers", "retracted": "Retracted",
}
INCIDENT_PART_LABELS = {
    "precision": "precision", "start": "start", "end": "end", "time_zone": "time zone",
    "name": "name", "contact": "contact", "note": "note", "involved": "involved",
    "agency": "agency", "report_number": "report number", "officer": "officer",
    "kind": "kind", "value": "value", "platform": "platform",
}

LABELS = {
    "categories": list(CATEGORY_LABELS.items()), "category_label": CATEGORY_LABELS,
    "precisions": list(forms.PRECISIONS), "tri_state": list(forms.TRI_STATE),
    "identifier_kinds": list(IDENTIFIER_LABELS.items()),
    "identifier_label": IDENTIFIER_LABELS,
    "order_types": list(ORDER_TYPE_LABELS.items()), "order_type_label": ORDER_TYPE_LABELS,
    "order_statuses": list(ORDER_STATUS_LABELS.items()),
    "order_status_label": ORDER_STATUS_LABELS,
    "hearing_kinds": list(HEARING_KIND_LABELS.items()),
    "hearing_kind_label": HEARING_KIND_LABELS,
    "hearing_statuses": list(HEARING_STATUS_LABELS.items()),
    "hearing_status_label": HEARING_STATUS_LABELS,
    "when": list(WHEN_LABELS.items()),
    "timeline_kinds": list(TIMELINE_KIND_LABELS.items()),
    "timeline_kind_label": TIMELINE_KIND_LABELS,
}


class _FormInvalid(Exception):
    def __init__(self, problem: FormProblem) -> None:
        super().__init__(problem.detail)
        self.problem = problem


def _redirect(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def size_text(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / 1024 / 1024:.1f} MiB"


def type_label(content_type: str) -> str:
    found = filetypes.BY_MEDIA_TYPE.get(content_type)
    return found.label if found else content_type


def _page(request: Request, template: str, *, title: str, **context: Any) -> Response:
    return render(request, template, title=title, labels=LABELS, size=size_text,
                  type_label=type_label, **context)


def _client_path(client_id: UUID, rest: str = "", done: str | None = None) -> str:
    return f"/dashboard/clients/{client_id}{rest}" + (f"?done={done}" if done else "")


def _client_zone(db: Session, signed: Signed, client_id: UUID) -> str:
    """The client's time zone (from the safe-contact preferences; the read is audited)."""
    record = clients.read_client(db, signed.actor, client_id)
    return str((record.fields.get("safe_contact") or {}).get("time_zone") or "UTC")


def _schema_problem(reader: FormReader, exc: ValidationError,
                    renames: dict[str, str]) -> list[dict[str, str]]:
    errors = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        loc = [str(part) for part in error["loc"]]
        dotted = ".".join(loc)
        # A composed value (when it happened) names the input its date is typed in.
        for name, target in renames.items():
            if dotted == name or dotted.startswith(name + "."):
                loc = target.split(".")
                break
        errors.append({"field": reader.field(loc), "message": str(error.get("msg") or "invalid")})
    return errors


def _relabel(reader: FormReader, exc: DomainError, renames: dict[str, str],
             prefix: str = "") -> FormProblem:
    return reader.relabel(exc, rename={k: prefix + v for k, v in renames.items()},
                          prefix=prefix)


# --- incidents: reach --------------------------------------------------------------------


def _incident_of(db: Session, signed: Signed, client_id: UUID, incident_id: UUID, *,
                 for_write: bool = False) -> tuple[Client, Incident]:
    """The client and its incident (404 when either is out of reach or they differ)."""
    client = clients.get_client(db, signed.actor, client_id, for_write=for_write)
    incident = incidents.get_incident(db, signed.actor, incident_id, for_write=for_write)
    if incident.client_id != client.id:
        raise NotFound("No such incident.")
    return client, incident


# --- the list of incidents ---------------------------------------------------------------


@dataclass
class IncidentRow:
    id: UUID
    when: str
    categories: list[str]
    children_present: bool | None
    weapons_involved: bool | None
    revision: int
    retracted: bool
    recorded_at: datetime
    recorded_by: str


def _period(start: str, end: str, errors: list[dict[str, str]]
            ) -> tuple[datetime | None, datetime | None]:
    bounds: list[datetime | None] = []
    for field, text, is_end in (("from", start, False), ("to", end, True)):
        try:
            bounds.append(timeline.parse_bound(field, text, end=is_end))
        except Invalid:
            errors.append({"field": field, "message": "not a date (YYYY-MM-DD)"})
            bounds.append(None)
    first, last = bounds
    if first and last and last <= first:
        errors.append({"field": "to", "message": "must not be before the start"})
        last = None
    return first, last


@router.get("/{client_id}/incidents")
def incident_list(request: Request, client_id: UUID, db: SessionDep, signed: ClientStaff,
                  category: Annotated[list[str] | None, Query(max_length=10)] = None,
                  start: Annotated[str, Query(alias="from", max_length=40)] = "",
                  end: Annotated[str, Query(alias="to", max_length=40)] = "",
                  cursor: Cursor = None, done: Done = None) -> Response:
    """A client's incidents, most recent occurrence first (retracted ones listed, marked),
    filtered by category and period; no narrative."""
    client = clients.get_client(db, signed.actor, client_id)
    errors: list[dict[str, str]] = []
    chosen = [c for c in category or [] if c]
    if any(c not in CATEGORIES for c in chosen):
        errors.append({"field": "category", "message": "choose categories from the list"})
        chosen = [c for c in chosen if c in CATEGORIES]
    first, last = _period(start.strip(), end.strip(), errors)
    query = incidents.list_incidents(db, signed.actor, client_id, categories=chosen,
                                     occurred_from=first, occurred_to=last)
    rows, next_cursor = paginate(
        db, query, listing=f"dashboard-incidents:{client_id}",
        keys=[SortKey(IncidentRevision.occurred_start, descending=True),
              SortKey(IncidentRevision.incident_id, descending=True)],
        params=PageParams(limit=LISTING_SIZE, cursor=cursor or None), as_rows=True)
    categories = incidents.summaries(db, rows)
    incidents.audit_listing(db, signed.actor, rows)
    names = staff_names(db, signed, {r.recorded_by for r in rows})
    listed = [IncidentRow(
        r.incident_id, forms.describe_occurrence(incidents.occurrence_local(r)),
        categories[r.id], r.children_present, r.weapons_involved, r.revision, r.retracted,
        r.recorded_at, names.get(r.recorded_by, "a former colleague"))
        for r in rows]
    filters = {"category": chosen, "from": start.strip(), "to": end.strip()}
    next_href = None
    if next_cursor:
        query_args: list[tuple[str, str]] = [("category", c) for c in chosen]
        query_args += [(k, filters[k]) for k in ("from", "to") if filters[k]]
        next_href = (_client_path(client_id, "/incidents") + "?"
                     + urlencode([*query_args, ("cursor", next_cursor)]))
    return _page(request, "incidents.html", title=f"Incidents of {client.case_number}",
                 client=client, rows=listed, filters=filters, next_href=next_href,
                 note=DONE_NOTES.get(done or ""),
                 problem=invalid_form(errors) if errors else None,
                 status_code=422 if errors else 200)


# --- recording an incident ---------------------------------------------------------------


@dataclass
class ChangeRow:
    what: str
    kind: str
    before: str
    after: str


def _incident_form(request: Request, client: Client, *, reader: FormReader,
                   incident: Incident | None = None, based_on: int | None = None,
                   changes_since: list[ChangeRow] | None = None, status_code: int = 200,
                   problem: Any = None) -> Response:
    if incident is None:
        title = f"Record an incident for {client.case_number}"
    else:
        title = f"Correct an incident of {client.case_number}"
    return _page(request, "incident_form.html", title=title, client=client, incident=incident,
                 v=reader.values, rows=reader.counts, based_on=based_on,
                 changes_since=changes_since, today=utcnow().date().isoformat(),
                 problem=problem, status_code=status_code)


@router.get("/{client_id}/incidents/new")
def new_incident_form(request: Request, client_id: UUID, db: SessionDep,
                      signed: ClientStaff) -> Response:
    """The facts a court looks for, in order: when, where, what happened (the client's
    words, then the advocate's observations), injuries, witnesses, police, children,
    weapons and the other person's identifiers."""
    client = clients.get_client(db, signed.actor, client_id, for_write=True)
    zone = _client_zone(db, signed, client_id)
    return _incident_form(request, client, reader=forms.incident_values(None, time_zone=zone))


def _checked_incident(reader: FormReader, body: dict[str, Any], errors: list[dict[str, str]],
                      schema: type[incident_schemas.IncidentFields]) -> Any:
    try:
        checked = schema.model_validate(body)
    except ValidationError as exc:
        seen = {e["field"] for e in errors}
        errors = errors + [e for e in _schema_problem(reader, exc, forms.INCIDENT_RENAMES)
                           if e["field"] not in seen]
        raise _FormInvalid(invalid_form(errors)) from None
    if errors:
        raise _FormInvalid(invalid_form(errors))
    return checked


@router.post("/{client_id}/incidents/new")
def record_incident(request: Request, client_id: UUID, db: SessionDep, signed: ClientStaff,
                    _csrf: CsrfChecked, form: PostedForm) -> Response:
    client = clients.get_client(db, signed.actor, client_id, for_write=True)
    reader = FormReader(form)
    body, errors = forms.read_incident_form(reader)
    try:
        checked = _checked_incident(reader, body, errors, incident_schemas.IncidentCreate)
        record = incidents.record_incident(db, signed.actor, client_id, checked)
    except _FormInvalid as exc:
        return _incident_form(request, client, reader=reader, status_code=422,
                              problem=exc.problem)
    except DomainError as exc:
        if isinstance(exc, NotFound):
            raise
        refuse(request, exc)
        return _incident_form(request, client, reader=reader, status_code=exc.status,
                              problem=_relabel(reader, exc, forms.INCIDENT_RENAMES))
    return _redirect(_client_path(client_id, f"/incidents/{record.incident.id}",
                                  "incident-recorded"))


# --- one incident ------------------------------------------------------------------------


@dataclass
class RevisionRow:
    number: int
    at: datetime
    by: str
    reason: str | None
    retracted: bool
    changes: list[ChangeRow]


def _part_label(path: str) -> str:
    """``witnesses[1].contact`` → ``Witnesses › 2 › contact``."""
    words: list[str] = []
    for part in path.replace("[", ".[").split("."):
        if not part:
            continue
        if part.startswith("["):
            words.append(str(int(part.strip("[]")) + 1))
        elif not words:
            words.append(INCIDENT_FIELD_LABELS.get(part, part.replace("_", " ")))
        else:
            words.append(INCIDENT_PART_LABELS.get(part, part.replace("_", " ")))
    return " › ".join(words)


def _shown(value: Any, path: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value == "":
        return "(empty)"
    if isinstance(value, dict):
        return "; ".join(f"{INCIDENT_PART_LABELS.get(k, k)}: {_shown(v, k)}"
                         for k, v in value.items() if v not in ("", None, [], {}))
    if isinstance(value, list):
        return " | ".join(_shown(item, path) for item in value) or "(none)"
    if path.startswith("categories"):
        return CATEGORY_LABELS.get(str(value), str(value))
    if path in ("occurred.precision", "precision"):
        return dict(forms.PRECISIONS).get(str(value), str(value))
    if path.endswith("kind"):
        return IDENTIFIER_LABELS.get(str(value), str(value))
    return str(value)


def _change_rows(changes: list[Any]) -> list[ChangeRow]:
    return [ChangeRow(_part_label(c.path), c.kind, _shown(c.before, c.path),
                      _shown(c.after, c.path)) for c in changes]


def _history(db: Session, signed: Signed, incident_id: UUID,
             cursor: str | None) -> tuple[list[incidents.HistoryEntry], str | None]:
    rows, next_cursor = paginate(
        db, incidents.list_revisions(db, signed.actor, incident_id),
        listing=f"dashboard-incident-revisions:{incident_id}",
        keys=[SortKey(IncidentRevision.revision)],
        params=PageParams(limit=HISTORY_SIZE, cursor=cursor or None))
    return incidents.open_history(db, signed.actor, incident_id, rows), next_cursor


def _evidence_of(db: Session, signed: Signed,
                 incident_id: UUID) -> tuple[list[evidence.EvidenceRecord], bool]:
    rows, more = paginate(
        db, evidence.incident_evidence(db, signed.actor, incident_id),
        listing=f"dashboard-evidence:{incident_id}",
        keys=[SortKey(Evidence.uploaded_at, descending=True),
              SortKey(Evidence.id, descending=True)],
        params=PageParams(limit=EVIDENCE_SHOWN, cursor=None))
    return evidence.list_records(db, signed.actor, rows), bool(more)


def _incident_page(request: Request, db: Session, signed: Signed, client: Client,
                   incident_id: UUID, *, cursor: str | None = None, status_code: int = 200,
                   problem: Any = None, note: str | None = None) -> Response:
    record = incidents.read_incident(db, signed.actor, incident_id)
    entries, next_cursor = _history(db, signed, incident_id, cursor)
    files, more_files = _evidence_of(db, signed, incident_id)
    names = staff_names(db, signed, {record.incident.created_by}
                        | {e.record.revision.created_by for e in entries}
                        | {f.evidence.uploaded_by for f in files})
    history = [RevisionRow(e.record.revision.revision, e.record.revision.created_at,
                           names.get(e.record.revision.created_by, "a former colleague"),
                           e.record.reason, e.record.revision.retracted,
                           _change_rows(e.changes)) for e in entries]
    state = record.state()
    next_href = (_client_path(client.id, f"/incidents/{incident_id}") + "?"
                 + urlencode({"cursor": next_cursor}) + "#history") if next_cursor else None
    return _page(request, "incident.html", title=f"Incident of {client.case_number}",
                 client=client, record=record, s=state,
                 when=forms.describe_occurrence(state["occurred"]),
                 recorded_by=names.get(record.incident.created_by, "a former colleague"),
                 history=history, next_href=next_href, files=files,
                 more_files=more_files, staff=names, problem=problem, note=note,
                 status_code=status_code)


@router.get("/{client_id}/incidents/{incident_id}")
def incident_page(request: Request, client_id: UUID, incident_id: UUID, db: SessionDep,
                  signed: ClientStaff, cursor: Cursor = None, done: Done = None) -> Response:
    """The incident as it now reads, its evidence, and every revision with what changed
    (every read is audited)."""
    client, _ = _incident_of(db, signed, client_id, incident_id)
    return _incident_page(request, db, signed, client, incident_id, cursor=cursor,
                          note=DONE_NOTES.get(done or ""))


# --- correcting an incident --------------------------------------------------------------


@router.get("/{client_id}/incidents/{incident_id}/correct")
def correct_incident_form(request: Request, client_id: UUID, incident_id: UUID,
                          db: SessionDep, signed: ClientStaff) -> Response:
    """The whole incident as it now reads, to correct: saving makes the next revision
    (with the reason); every earlier one stays as it was."""
    client, incident = _incident_of(db, signed, client_id, incident_id, for_write=True)
    record = incidents.read_incident(db, signed.actor, incident_id)
    if record.revision.retracted:
        raise Conflict("This incident was retracted; it can no longer be corrected. Record a "
                       "new incident instead.")
    reader = forms.incident_values(record.state(), time_zone=record.revision.occurred_time_zone)
    return _incident_form(request, client, reader=reader, incident=incident,
                          based_on=record.revision.revision)


def _changes_since(db: Session, signed: Signed, incident_id: UUID,
                   based_on: int) -> tuple[int, list[ChangeRow]]:
    """The current revision number and what changed after revision ``based_on``."""
    rows, _ = paginate(
        db, incidents.list_revisions(db, signed.actor, incident_id).where(
            IncidentRevision.revision >= based_on),
        listing=f"dashboard-incident-conflict:{incident_id}",
        keys=[SortKey(IncidentRevision.revision)],
        params=PageParams(limit=HISTORY_SIZE, cursor=None))
    entries = incidents.open_history(db, signed.actor, incident_id, rows)
    changes = [row for entry in entries[1:] for row in _change_rows(entry.changes)]
    current = entries[-1].record.revision.revision if entries else based_on
    return current, changes


@router.post("/{client_id}/incidents/{incident_id}/correct")
def correct_incident(request: Request, client_id: UUID, incident_id: UUID, db: SessionDep,
                     signed: ClientStaff, _csrf: CsrfChecked, form: PostedForm) -> Response:
    client, incident = _incident_of(db, signed, client_id, incident_id, for_write=True)
    reader = FormReader(form)
    body, errors = forms.read_incident_form(reader)
    body["reason"] = forms.text(reader, "reason")
    based_on_text = reader.text("based_on_revision")
    based_on = int(based_on_text) if based_on_text.isdigit() else None
    body["based_on_revision"] = based_on
    if not body["reason"]:
        errors.append({"field": "reason", "message": "say why the incident is corrected"})
    try:
        checked = _checked_incident(reader, body, errors, incident_schemas.RevisionCreate)
        incidents.revise_incident(db, signed.actor, incident_id, checked, reason=checked.reason,
                                  based_on_revision=checked.based_on_revision)
    except _FormInvalid as exc:
        return _incident_form(request, client, reader=reader, incident=incident,
                              based_on=based_on, status_code=422, problem=exc.problem)
    except DomainError as exc:
        if isinstance(exc, NotFound):
            raise
        refuse(request, exc)
        changes_since = None
        if isinstance(exc, Conflict) and based_on is not None:
            current = incidents.current_revision(db, incident)
            if current.retracted:
                return _incident_page(request, db, signed, client, incident_id,
                                      status_code=exc.status, problem=exc)
            if current.revision != based_on:
                # Someone saved a revision after this form was opened: show what they
                # changed; saving again now builds on their revision, knowingly.
                based_on, changes_since = _changes_since(db, signed, incident_id, based_on)
                exc = Conflict(
                    f"Revision {based_on} was saved after you opened this form, so nothing "
                    "was saved. Its changes are listed below. Check your correction against "
                    "them; saving again makes the next revision from what this form shows.")
        return _incident_form(request, client, reader=reader, incident=incident,
                              based_on=based_on, changes_since=changes_since,
                              status_code=exc.status,
                              problem=_relabel(reader, exc, forms.INCIDENT_RENAMES))
    return _redirect(_client_path(client_id, f"/incidents/{incident_id}",
                                  "incident-corrected"))


@router.post("/{client_id}/incidents/{incident_id}/retract")
def retract_incident(request: Request, client_id: UUID, incident_id: UUID, db: SessionDep,
                     signed: ClientStaff, _csrf: CsrfChecked,
                     reason: Annotated[str, Form(max_length=2000)] = "") -> Response:
    """Retract the incident, saying why: it stays in the record, marked retracted."""
    client, _ = _incident_of(db, signed, client_id, incident_id, for_write=True)
    try:
        try:
            checked = incident_schemas.Retraction.model_validate({"reason": reason.strip()})
        except ValidationError:
            raise _FormInvalid(invalid_form([{"field": "retract-reason", "message":
                                              "say why the incident is retracted "
                                              "(at most 500 characters)"}])) from None
        incidents.retract_incident(db, signed.actor, incident_id, reason=checked.reason)
    except _FormInvalid as exc:
        return _incident_page(request, db, signed, client, incident_id, status_code=422,
                              problem=exc.problem)
    except DomainError as exc:
        if isinstance(exc, NotFound):
            raise
        refuse(request, exc)
        return _incident_page(request, db, signed, client, incident_id,
                              status_code=exc.status,
                              problem=FormReader().relabel(exc, rename={
                                  "reason": "retract-reason"}))
    return _redirect(_client_path(client_id, f"/incidents/{incident_id}",
                                  "incident-retracted"))


# --- protective orders -------------------------------------------------------------------


def _today() -> date:
    return utcnow().date()


@router.get("/{client_id}/orders")
def order_list(request: Request, client_id: UUID, db: SessionDep, signed: ClientStaff,
               cursor: Cursor = None, done: Done = None) -> Response:
    """A client's protective orders: not yet issued first, then newest issue date first."""
    client = clients.get_client(db, signed.actor, client_id)
    records, next_cursor = legal.list_orders(
        db, signed.actor, client_id, PageParams(limit=LISTING_SIZE, cursor=cursor or None))
    next_href = (_client_path(client_id, "/orders") + "?"
                 + urlencode({"cursor": next_cursor})) if next_cursor else None
    return _page(request, "orders.html", title=f"Protective orders of {client.case_number}",
                 client=client, orders=records, today=_today(), next_href=next_href,
                 note=DONE_NOTES.get(done or ""))


def _order_form(request: Request, client: Client, *, reader: FormReader,
                record: legal.OrderRecord | None = None, staff: dict[UUID, str] | None = None,
                status_code: int = 200, problem: Any = None) -> Response:
    title = (f"Protective order of {client.case_number}" if record
             else f"Record a protective order for {client.case_number}")
    return _page(request, "order_form.html", title=title, client=client, record=record,
                 v=reader.values, staff=staff or {}, today=_today(), problem=problem,
                 status_code=status_code)


@router.get("/{client_id}/orders/new")
def new_order_form(request: Request, client_id: UUID, db: SessionDep,
                   signed: ClientStaff) -> Response:
    client = clients.get_client(db, signed.actor, client_id, for_write=True)
    return _order_form(request, client, reader=forms.order_values(None))


@router.post("/{client_id}/orders/new")
def record_order(request: Request, client_id: UUID, db: SessionDep, signed: ClientStaff,
                 _csrf: CsrfChecked, form: PostedForm) -> Response:
    client = clients.get_client(db, signed.actor, client_id, for_write=True)
    reader = FormReader(form)
    body = forms.read_order_form(reader)
    try:
        try:
            checked = legal_schemas.ProtectiveOrderCreate.model_validate(body)
        except ValidationError as exc:
            raise _FormInvalid(invalid_form(reader.schema_errors(exc))) from None
        legal.record_order(db, signed.actor, client_id, **checked.model_dump())
    except _FormInvalid as exc:
        return _order_form(request, client, reader=reader, status_code=422,
                           problem=exc.problem)
    except DomainError as exc:
        if isinstance(exc, NotFound):
            raise
        refuse(request, exc)
        return _order_form(request, client, reader=reader, status_code=exc.status,
                           problem=reader.relabel(exc))
    return _redirect(_client_path(client_id, "/orders", "order-recorded"))


@router.get("/{client_id}/orders/{order_id}")
def order_page(request: Request, client_id: UUID, order_id: UUID, db: SessionDep,
               signed: ClientStaff) -> Response:
    """One protective order, as a form to change it (status changes follow the court's
    steps: requested → granted, denied or withdrawn; granted → expired or dismissed)."""
    client = clients.get_client(db, signed.actor, client_id)
    record = legal.read_order(db, signed.actor, client_id, order_id)
    staff = staff_names(db, signed, {record.order.created_by, record.order.updated_by})
    return _order_form(request, client, reader=forms.order_values(record), record=record,
                       staff=staff)


@router.post("/{client_id}/orders/{order_id}")
def update_order(request: Request, client_id: UUID, order_id: UUID, db: SessionDep,
                 signed: ClientStaff, _csrf: CsrfChecked, form: PostedForm) -> Response:
    client = clients.get_client(db, signed.actor, client_id, for_write=True)
    record = legal.read_order(db, signed.actor, client_id, order_id)
    staff = staff_names(db, signed, {record.order.created_by, record.order.updated_by})
    reader = FormReader(form)
    body = forms.read_order_form(reader)
    try:
        try:
            checked = legal_schemas.ProtectiveOrderCreate.model_validate(body)
        except ValidationError as exc:
            raise _FormInvalid(invalid_form(reader.schema_errors(exc))) from None
        # Only what changed is sent, as an API caller would: the audit names those fields.
        changes = forms.order_changes(checked.model_dump(), record)
        if not changes:
            return _redirect(_client_path(client_id, "/orders", "no-change"))
        legal.update_order(db, signed.actor, client_id, order_id, changes)
    except _FormInvalid as exc:
        return _order_form(request, client, reader=reader, record=record, staff=staff,
                           status_code=422, problem=exc.problem)
    except DomainError as exc:
        if isinstance(exc, NotFound):
            raise
        refuse(request, exc)
        return _order_form(request, client, reader=reader, record=record, staff=staff,
                           status_code=exc.status, problem=reader.relabel(exc))
    return _redirect(_client_path(client_id, "/orders", "order-updated"))


# --- court dates -------------------------------------------------------------------------


@router.get("/{client_id}/court-dates")
def court_date_list(request: Request, client_id: UUID, db: SessionDep, signed: ClientStaff,
                    when: Annotated[str, Query(max_length=10)] = "all",
                    cursor: Cursor = None, done: Done = None) -> Response:
    """A client's court dates: upcoming ones soonest first, then past ones."""
    client = clients.get_client(db, signed.actor, client_id)
    problem = None
    if when not in WHEN_LABELS:
        problem = invalid_form([{"field": "when", "message": "choose from the list"}])
        when = "all"
    records, next_cursor = legal.list_court_dates(
        db, signed.actor, client_id, PageParams(limit=LISTING_SIZE, cursor=cursor or None),
        when=when)
    next_href = (_client_path(client_id, "/court-dates") + "?"
                 + urlencode({"when": when, "cursor": next_cursor})) if next_cursor else None
    return _page(request, "court_dates.html", title=f"Court dates of {client.case_number}",
                 client=client, hearings=records, when=when, now=utcnow(),
                 next_href=next_href, note=DONE_NOTES.get(done or ""), problem=problem,
                 status_code=422 if problem else 200)


def _order_options(db: Session, signed: Signed, client_id: UUID) -> list[tuple[str, str]]:
    records, _ = legal.list_orders(db, signed.actor, client_id,
                                   PageParams(limit=ORDERS_SHOWN, cursor=None))
    options = []
    for r in records:
        o = r.order
        issued = f", issued {o.issued_on.isoformat()}" if o.issued_on else ""
        options.append((str(o.id), f"{ORDER_TYPE_LABELS.get(o.order_type, o.order_type)} order "
                                   f"({ORDER_STATUS_LABELS.get(o.status, o.status)}{issued})"))
    return options


def _court_date_form(request: Request, db: Session, signed: Signed, client: Client, *,
                     reader: FormReader, record: legal.HearingRecord | None = None,
                     status_code: int = 200, problem: Any = None) -> Response:
    title = (f"Court date of {client.case_number}" if record
             else f"Record a court date for {client.case_number}")
    staff = staff_names(db, signed, {record.hearing.created_by, record.hearing.updated_by}
                        ) if record else {}
    return _page(request, "court_date_form.html", title=title, client=client, record=record,
                 v=reader.values, orders=_order_options(db, signed, client.id), staff=staff,
                 problem=problem, status_code=status_code)


@router.get("/{client_id}/court-dates/new")
def new_court_date_form(request: Request, client_id: UUID, db: SessionDep,
                        signed: ClientStaff) -> Response:
    client = clients.get_client(db, signed.actor, client_id, for_write=True)
    zone = _client_zone(db, signed, client_id)
    return _court_date_form(request, db, signed, client,
                            reader=forms.hearing_values(None, time_zone=zone))


def _checked_hearing(reader: FormReader) -> legal_schemas.CourtDateCreate:
    body, errors = forms.read_hearing_form(reader)
    # A moment that could not be composed has its errors already; a stand-in lets the
    # schema report the other fields in the same answer (nothing is saved with errors).
    stand_in = body["starts_at"] or utcnow()
    try:
        checked = legal_schemas.CourtDateCreate.model_validate({**body, "starts_at": stand_in})
    except ValidationError as exc:
        seen = {e["field"] for e in errors}
        errors += [e for e in _schema_problem(reader, exc, forms.HEARING_RENAMES)
                   if e["field"] not in seen]
        raise _FormInvalid(invalid_form(errors)) from None
    if errors:
        raise _FormInvalid(invalid_form(errors))
    return checked


@router.post("/{client_id}/court-dates/new")
def record_court_date(request: Request, client_id: UUID, db: SessionDep, signed: ClientStaff,
                      _csrf: CsrfChecked, form: PostedForm) -> Response:
    client = clients.get_client(db, signed.actor, client_id, for_write=True)
    reader = FormReader(form)
    try:
        checked = _checked_hearing(reader)
        legal.record_court_date(db, signed.actor, client_id, **checked.model_dump())
    except _FormInvalid as exc:
        return _court_date_form(request, db, signed, client, reader=reader, status_code=422,
                                problem=exc.problem)
    except DomainError as exc:
        if isinstance(exc, NotFound):
            raise
        refuse(request, exc)
        return _court_date_form(request, db, signed, client, reader=reader,
                                status_code=exc.status,
                                problem=_relabel(reader, exc, forms.HEARING_RENAMES))
    return _redirect(_client_path(client_id, "/court-dates", "court-date-recorded"))


@router.get("/{client_id}/court-dates/{court_date_id}")
def court_date_page(request: Request, client_id: UUID, court_date_id: UUID, db: SessionDep,
                    signed: ClientStaff) -> Response:
    """One court date, as a form to reschedule it or record how it went."""
    client = clients.get_client(db, signed.actor, client_id)
    record = legal.read_court_date(db, signed.actor, client_id, court_date_id)
    return _court_date_form(request, db, signed, client,
                            reader=forms.hearing_values(record, time_zone="UTC"),
                            record=record)


@router.post("/{client_id}/court-dates/{court_date_id}")
def update_court_date(request: Request, client_id: UUID, court_date_id: UUID,
                      db: SessionDep, signed: ClientStaff, _csrf: CsrfChecked,
                      form: PostedForm) -> Response:
    client = clients.get_client(db, signed.actor, client_id, for_write=True)
    record = legal.read_court_date(db, signed.actor, client_id, court_date_id)
    reader = FormReader(form)
    try:
        checked = _checked_hearing(reader)
        changes = forms.hearing_changes(checked.model_dump(), record)
        if not changes:
            return _redirect(_client_path(client_id, "/court-dates", "no-change"))
        legal.update_court_date(db, signed.actor, client_id, court_date_id, changes)
    except _FormInvalid as exc:
        return _court_date_form(request, db, signed, client, reader=reader, record=record,
                                status_code=422, problem=exc.problem)
    except DomainError as exc:
        if isinstance(exc, NotFound):
            raise
        refuse(request, exc)
        return _court_date_form(request, db, signed, client, reader=reader, record=record,
                                status_code=exc.status,
                                problem=_relabel(reader, exc, forms.HEARING_RENAMES))
    return _redirect(_client_path(client_id, "/court-dates", "court-date-updated"))


# --- the timeline ------------------------------------------------------------------------


@dataclass
class TimelineRow:
    kind: str
    when: str
    summary: str
    retracted: bool
    href: str | None


def _timeline_when(entry: timeline.Entry) -> str:
    if entry.precision == "date":
        return entry.at.strftime("%Y-%m-%d")
    moment = entry.at.strftime("%Y-%m-%d %H:%M UTC")
    return f"From {moment}" if entry.precision == "range" else moment


def _timeline_row(client_id: UUID, entry: timeline.Entry) -> TimelineRow:
    s = entry.summary
    base = _client_path(client_id)
    if entry.kind == timeline.INCIDENT:
        summary = ", ".join(CATEGORY_LABELS.get(c, c) for c in s["categories"])
        return TimelineRow(entry.kind, _timeline_when(entry), summary, bool(s["retracted"]),
                           f"{base}/incidents/{entry.id}")
    if entry.kind == timeline.COURT_DATE:
        summary = (f"{HEARING_KIND_LABELS.get(s['hearing_kind'], s['hearing_kind'])} — "
                   f"{HEARING_STATUS_LABELS.get(s['status'], s['status'])}")
        return TimelineRow(entry.kind, _timeline_when(entry), summary, False,
                           f"{base}/court-dates/{entry.id}")
    if entry.kind in (timeline.ORDER_ISSUED, timeline.ORDER_EXPIRY):
        summary = (f"{ORDER_TYPE_LABELS.get(s['order_type'], s['order_type'])} order — "
                   f"{ORDER_STATUS_LABELS.get(s['status'], s['status'])}")
        return TimelineRow(entry.kind, _timeline_when(entry), summary, False,
                           f"{base}/orders/{entry.id}")
    if entry.kind == timeline.RISK:
        level = str(s["level"]).replace("_", " ")
        summary = (f"Level: {level}" + (" (the instrument's highest)"
                                        if s["is_highest_level"] else "")
                   + ("" if s["complete"] else ", partly answered"))
        return TimelineRow(entry.kind, _timeline_when(entry), summary, False, f"{base}#risk")
    return TimelineRow(entry.kind, _timeline_when(entry), f"Version {s['version']}", False,
                       f"{base}/plan/versions/{s['version']}")


@router.get("/{client_id}/timeline")
def timeline_page(request: Request, client_id: UUID, db: SessionDep, signed: ClientStaff,
                  kind: Annotated[list[str] | None, Query(max_length=20)] = None,
                  start: Annotated[str, Query(alias="from", max_length=40)] = "",
                  end: Annotated[str, Query(alias="to", max_length=40)] = "",
                  cursor: Cursor = None) -> Response:
    """Everything on the client's file in time order, oldest first: incidents, court
    dates, protective orders issued and expiring, risk assessments and plan versions."""
    client = clients.get_client(db, signed.actor, client_id)
    errors: list[dict[str, str]] = []
    chosen = [k for k in kind or [] if k]
    if any(k not in TIMELINE_KIND_LABELS for k in chosen):
        errors.append({"field": "kind", "message": "choose kinds from the list"})
        chosen = [k for k in chosen if k in TIMELINE_KIND_LABELS]
    first, last = _period(start.strip(), end.strip(), errors)
    kinds = timeline.parse_kinds(chosen)
    entries, next_cursor = timeline.client_timeline(
        db, signed.actor, client_id, kinds=kinds, start=first, end=last,
        params=PageParams(limit=LISTING_SIZE, cursor=cursor or None))
    filters = {"kind": chosen, "from": start.strip(), "to": end.strip()}
    next_href = None
    if next_cursor:
        query_args: list[tuple[str, str]] = [("kind", k) for k in chosen]
        query_args += [(k, filters[k]) for k in ("from", "to") if filters[k]]
        next_href = (_client_path(client_id, "/timeline") + "?"
                     + urlencode([*query_args, ("cursor", next_cursor)]))
    return _page(request, "timeline.html", title=f"Timeline of {client.case_number}",
                 client=client, rows=[_timeline_row(client_id, e) for e in entries],
                 filters=filters, next_href=next_href,
                 problem=invalid_form(errors) if errors else None,
                 status_code=422 if errors else 200)


# --- the safety plan's discreet print ----------------------------------------------------


class DocumentRoute(DashboardRoute):
    """A dashboard route whose successful answer is a document with a policy of its own
    (``request.state.document_policy``: the print page's stylesheet hash, an evidence
    file's sandbox) instead of the dashboard's; refusals are dashboard pages as ever."""

    def get_route_handler(self) -> Callable[[Request], Any]:
        handler = super().get_route_handler()

        async def document_handler(request: Request) -> Response:
            response: Response = await handler(request)
            policy = getattr(request.state, "document_policy", None)
            if policy and response.status_code in (200, 304):
                response.headers["content-security-policy"] = policy
            return response

        return document_handler


def print_plan(request: Request, client_id: UUID, db: SessionDep, signed: ClientStaff,
               fmt: Annotated[str, Query(alias="format", max_length=8)] = "pdf") -> Response:
    """The client's own copy of the current plan, as the API prints it: no agency name, a
    neutral file name, never cached; the print is audited."""
    printed = plans.print_plan(db, signed.actor, client_id, fmt=fmt)  # type: ignore[arg-type]
    headers = {"Cache-Control": "no-store",
               "Content-Disposition": f'inline; filename="{printed.filename}"'}
    if printed.media_type.startswith("text/html"):
        request.state.document_policy = printing.content_security_policy()
    return Response(printed.body, media_type=printed.media_type, headers=headers)


router.add_api_route("/{client_id}/plan/print", print_plan, methods=["GET"],
                     route_class_override=DocumentRoute)
