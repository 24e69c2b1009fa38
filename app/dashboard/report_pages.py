"""Dashboard pages for reports: asking for a client's court summary or the agency's funder
report, following a build (a progress bar fed by a small JSON endpoint), downloading it,
the reports one asked for, and checking a file against what advocase produced.

Thin adapters over the reports service, making the API's calls: the request body is
checked with the API's own schema (``CourtSummaryCreate``, ``FunderAggregateCreate``) and
its errors land on the form's inputs; reach is the service's (a report of a client out of
reach, or of another agency, is not found; a funder report is the agency's supervisors' and
admins'); every download is audited by the same ``open_download`` the API uses; a
verification is audited as the API's is.

No personal data in a URL or a page title: pages name the report by the client's case
number (a funder report by its period); the form posts; the redirect carries the report id
only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError
from sqlmodel import Session
from starlette.datastructures import UploadFile
from starlette.responses import RedirectResponse

from app.clients import service as clients
from app.clients.models import Client
from app.core import audit
from app.core.errors import DomainError, Invalid, NotFound
from app.core.middleware import LimitRule
from app.core.storage import get_storage
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
from app.dashboard.casefile import CATEGORY_LABELS, DocumentRoute
from app.dashboard.casefile_forms import describe_occurrence
from app.dashboard.client_forms import FormProblem, FormReader, invalid_form
from app.dashboard.clients import PostedForm
from app.dashboard.web import render
from app.db import SessionDep, utcnow
from app.evidence import service as evidence
from app.evidence.models import Evidence
from app.identity.models import Org
from app.incidents import service as incidents
from app.incidents.models import IncidentRevision
from app.reports import redaction, service, verification
from app.reports.models import Report
from app.reports.schemas import CourtSummaryCreate, FunderAggregateCreate
from app.settings import Settings

router = APIRouter(prefix="/dashboard", route_class=DashboardRoute, include_in_schema=False,
                   dependencies=[Depends(request_db)])

ReportStaff = Annotated[Signed, Depends(allowed("clients:read"))]
"""Staff who work with clients (advocates, supervisors); to everyone else no page exists."""


def _reads_reports(signed: SignedIn) -> Signed:
    if not (signed.can("clients:read") or signed.role in service.AGGREGATE_ROLES):
        raise NotFound("There is nothing at this address.",
                       audit={"event": "access.denied", "action": "clients:read"})
    return signed


ReportReader = Annotated[Signed, Depends(_reads_reports)]
"""Client staff, and the roles who ask for the agency's funder report (admins too): the
list, a report's page, its progress and downloads. The service decides which report."""


def _asks_for_aggregates(signed: SignedIn) -> Signed:
    if signed.role not in service.AGGREGATE_ROLES:
        raise NotFound("There is nothing at this address.",
                       audit={"event": "access.denied", "action": "reports:aggregate"})
    return signed


AggregateStaff = Annotated[Signed, Depends(_asks_for_aggregates)]
"""Supervisors and admins (the service's ``AGGREGATE_ROLES``): the funder report form."""

VERIFY_PATTERN = re.compile(r"^/dashboard/reports/verify/?$")
LISTED = 50  # reports on the list, newest first
CHOICES_SHOWN = 200  # incidents (and their evidence) offered on the form
PARTY_ROWS = 3
POLL_SECONDS = 2

STATUS_LABELS = {"queued": "Waiting for a worker", "building": "Being built",
                 "done": "Ready", "failed": "Failed", "expired": "Expired"}
STEP_LABELS = {"queued": "waiting to start", "starting": "starting",
               "collecting": "collecting the records",
               "checking_exhibits": "checking the exhibits", "drawing_chart": "drawing the chart",
               "rendering_pdf": "writing the PDF", "signing": "signing the manifest",
               "suppressing": "hiding small counts",
               "bundling": "making the bundle", "storing": "storing the files",
               "done": "done", "failed": "failed", "expired": "expired"}
PROFILE_LABELS = {
    "none": "No redaction",
    "safe_location": "Safe location: the client's address, shelter locations and the "
                     "client's contact details",
    "standard": "Standard: as safe location, and witnesses' contact details and children's "
                "names",
    "strict": "Strict: as standard, and witnesses' names and the other person's "
              "identifiers",
}
PARTY_SOURCES = (("", "Typed below"), ("client_legal_name", "The client's legal name"),
                 ("client_preferred_name", "The client's preferred name"),
                 ("other_party", "The other party, from the record"))
PART_LABELS = {"pdf": "The PDF", "bundle": "The bundle (ZIP: PDF, manifest, signature and "
                                           "the original exhibit files)",
               "manifest": "The signed manifest (JSON)"}
FUNDER_PART_LABELS = {"pdf": "The PDF (tables and a bar chart)",
                      "csv": "The CSV (one line per value; small counts hidden)",
                      "manifest": "The signed manifest (JSON)"}
GROUPINGS = (("none", "The whole period in one row"), ("month", "A row for each month"),
             ("quarter", "A row for each quarter"))
IN_FILE_LABELS = {"match": "matches", "mismatch": "does not match", "missing": "missing",
                  "not_included": "not in this file"}
STORED_LABELS = {"intact": "intact", "mismatch": "does not match",
                 "unreadable": "unreadable", "missing": "missing",
                 "not_checked": "not checked"}
FILE_KIND_LABELS = {"pdf": "a report PDF", "manifest": "a manifest", "bundle": "a bundle",
                    "unknown": "not a file advocase produces"}


def verify_body_limit(settings: Settings) -> LimitRule:
    """The verify page takes whole bundles: the API's verification limit."""
    return VERIFY_PATTERN, settings.report_verify_max_bytes


def _page(request: Request, template: str, *, title: str, **context: Any) -> Response:
    return render(request, template, title=title, status_label=STATUS_LABELS,
                  step_label=STEP_LABELS, **context)


def _report_path(report_id: UUID) -> str:
    return f"/dashboard/reports/{report_id}"


# --- the request form ------------------------------------------------------------------


@dataclass
class IncidentChoice:
    id: UUID
    when: str
    categories: str
    retracted: bool


@dataclass
class EvidenceChoice:
    id: UUID
    incident_id: UUID
    description: str
    content_type: str


def _choices(db: Session, signed: Signed, client: Client
             ) -> tuple[list[IncidentChoice], list[EvidenceChoice]]:
    """The client's incidents in the order they happened, and their evidence (the
    listings are audited as the case-file pages' are)."""
    rows = list(db.execute(incidents.list_incidents(db, signed.actor, client.id).order_by(
        IncidentRevision.occurred_start, IncidentRevision.incident_id).limit(CHOICES_SHOWN)))
    categories = incidents.summaries(db, rows)
    incidents.audit_listing(db, signed.actor, rows)
    listed = [IncidentChoice(r.incident_id, describe_occurrence(incidents.occurrence_local(r)),
                             ", ".join(CATEGORY_LABELS.get(c, c) for c in categories[r.id]),
                             r.retracted) for r in rows]
    order = {r.incident_id: index for index, r in enumerate(rows)}
    files = list(db.scalars(evidence.readable_evidence(signed.actor).where(
        Evidence.client_id == client.id, Evidence.incident_id.in_(list(order)))
        .order_by(Evidence.uploaded_at, Evidence.id)))
    records = evidence.list_records(db, signed.actor, files) if files else []
    exhibits = sorted((EvidenceChoice(r.evidence.id, r.evidence.incident_id,
                                      r.description or "No description",
                                      r.evidence.content_type) for r in records),
                      key=lambda e: order.get(e.incident_id, 0))
    return listed, exhibits


def _blank_values(signed: Signed, listed: list[IncidentChoice]) -> dict[str, Any]:
    today = datetime.now(UTC).date()
    return {"period.start": (today - timedelta(days=365)).isoformat(),
            "period.end": today.isoformat(), "incident_ids": [], "evidence_ids": [],
            "redaction_profile": "standard", "also_hide": [], "cover.court": "",
            "cover.case_number": "", "cover.prepared_by": signed.display_name,
            "include_original_files": True}


def _form_page(request: Request, db: Session, signed: Signed, client: Client, *,
               values: dict[str, Any] | None = None, status_code: int = 200,
               problem: Any = None) -> Response:
    listed, exhibits = _choices(db, signed, client)
    v = values if values is not None else _blank_values(signed, listed)
    return _page(request, "report_new.html", title=f"Court summary of {client.case_number}",
                 client=client, incidents=listed, exhibits=exhibits, v=v,
                 profiles=list(PROFILE_LABELS.items()),
                 hideable=[(k, d) for k, d in redaction.DESCRIPTIONS.items()],
                 party_sources=PARTY_SOURCES, party_rows=PARTY_ROWS, problem=problem,
                 status_code=status_code)


@router.get("/clients/{client_id}/reports/new")
def new_report_form(request: Request, client_id: UUID, db: SessionDep,
                    signed: ReportStaff) -> Response:
    """Prepare a court summary: the period, the incidents (in the order they happened) and
    their evidence, what to hide, and the cover page."""
    client = clients.get_client(db, signed.actor, client_id, for_write=True)
    return _form_page(request, db, signed, client)


def _read_request(reader: FormReader, client_id: UUID) -> dict[str, Any]:
    """The posted form as the API's request body."""
    parties, kept = [], []
    for row in range(PARTY_ROWS):
        prefix = f"cover.parties.{row}"
        role = reader.text(f"{prefix}.role")
        source = reader.text(f"{prefix}.from_record")
        name = reader.text(f"{prefix}.name")
        if role or name or source:
            parties.append({"role": role, "name": name or None,
                            "from_record": source or None})
            kept.append(row)
    reader.keep("cover.parties", kept)
    return {
        "kind": "court_summary", "client_id": str(client_id),
        "period": {"start": reader.text("period.start") or None,
                   "end": reader.text("period.end") or None},
        "incident_ids": reader.choices("incident_ids"),
        "evidence_ids": reader.choices("evidence_ids"),
        "redaction_profile": reader.text("redaction_profile") or "standard",
        "also_hide": reader.choices("also_hide"),
        "cover": {"court": reader.text("cover.court"),
                  "case_number": reader.text("cover.case_number"),
                  "parties": parties,
                  "prepared_by": reader.text("cover.prepared_by") or None},
        "include_original_files": reader.flag("include_original_files"),
    }


def _schema_errors(reader: FormReader, exc: ValidationError) -> list[dict[str, str]]:
    """The schema's errors on this form's inputs, one message per input (the value typed is
    never repeated: it may be personal data)."""
    seen: set[str] = set()
    errors = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        loc = [str(part) for part in error["loc"]]
        name = reader.field(loc)
        if name not in seen:
            seen.add(name)
            errors.append({"field": name, "message": str(error.get("msg") or "invalid")})
    return errors


@router.post("/clients/{client_id}/reports/new")
def request_report(request: Request, client_id: UUID, db: SessionDep, signed: ReportStaff,
                   _csrf: CsrfChecked, form: PostedForm) -> Response:
    client = clients.get_client(db, signed.actor, client_id, for_write=True)
    reader = FormReader(form)
    body = _read_request(reader, client_id)
    try:
        checked = CourtSummaryCreate.model_validate(body)
    except ValidationError as exc:
        return _form_page(request, db, signed, client, values=reader.values, status_code=422,
                          problem=invalid_form(_schema_errors(reader, exc)))
    try:
        report = service.request_court_summary(db, signed.actor, checked)
    except DomainError as exc:
        if isinstance(exc, NotFound):
            raise
        refuse(request, exc)
        return _form_page(request, db, signed, client, values=reader.values,
                          status_code=exc.status, problem=reader.relabel(exc))
    return RedirectResponse(_report_path(report.id), status_code=303)


# Fixed paths first: /reports/verify is not a report id.


# --- the agency's funder report ----------------------------------------------------------


def _funder_page(request: Request, *, values: dict[str, Any], status_code: int = 200,
                 problem: Any = None) -> Response:
    return _page(request, "report_funder_new.html", title="Funder report", v=values,
                 groupings=GROUPINGS, status_code=status_code, problem=problem)


@router.get("/reports/funder/new")
def new_funder_report_form(request: Request, signed: AggregateStaff) -> Response:
    """Ask for the agency's de-identified funder report: the period and its rows."""
    today = datetime.now(UTC).date()
    return _funder_page(request, values={
        "period.start": (today - timedelta(days=365)).isoformat(),
        "period.end": today.isoformat(), "grouping": "quarter"})


@router.post("/reports/funder/new")
def request_funder_report(request: Request, db: SessionDep, signed: AggregateStaff,
                          _csrf: CsrfChecked, form: PostedForm) -> Response:
    reader = FormReader(form)
    body = {"kind": "funder_aggregate",
            "period": {"start": reader.text("period.start") or None,
                       "end": reader.text("period.end") or None},
            "grouping": reader.text("grouping") or "none"}
    try:
        checked = FunderAggregateCreate.model_validate(body)
    except ValidationError as exc:
        # The one rule of the whole request is the period's length: shown by its end.
        errors = [{**e, "field": e["field"] or "period.end"}
                  for e in _schema_errors(reader, exc)]
        return _funder_page(request, values=reader.values, status_code=422,
                            problem=invalid_form(errors))
    try:
        report = service.request_funder_aggregate(db, signed.actor, checked)
    except DomainError as exc:
        refuse(request, exc)
        return _funder_page(request, values=reader.values, status_code=exc.status,
                            problem=reader.relabel(exc))
    return RedirectResponse(_report_path(report.id), status_code=303)


# --- the reports one asked for ---------------------------------------------------------


def _funder_label(db: Session, report: Report) -> str:
    """"Agency — funder report, period" (the period and grouping are plain JSON)."""
    org = db.get(Org, report.org_id)
    try:
        period = service.open_parameters(db, report)["period"]
        span = f"{period['start']} to {period['end']}"
    except (ValueError, KeyError, TypeError):
        span = "period unreadable"
    return f"{org.name if org is not None else 'Agency'} — funder report, {span}"


@router.get("/reports")
def reports_list(request: Request, db: SessionDep, signed: ReportReader) -> Response:
    """The reports you asked for (court summaries of clients still within reach, and the
    agency's funder reports), newest first."""
    rows = db.execute(service.readable_reports(signed.actor).add_columns(Client.case_number)
                      .outerjoin(Client, Client.id == Report.client_id)
                      .where(Report.requested_by == signed.actor.id)
                      .order_by(Report.requested_at.desc(), Report.id).limit(LISTED)).all()
    listed = [(report, case_number if report.client_id is not None
               else _funder_label(db, report)) for report, case_number in rows]
    return _page(request, "reports.html", title="Your reports", rows=listed, listed=LISTED,
                 may_ask_funder=signed.role in service.AGGREGATE_ROLES,
                 may_verify=signed.can("clients:read"))


# --- verification ----------------------------------------------------------------------


def _verify_page(request: Request, *, result: Any = None, status_code: int = 200,
                 problem: Any = None) -> Response:
    return _page(request, "report_verify.html", title="Check a report", result=result,
                 file_kind=FILE_KIND_LABELS, in_file=IN_FILE_LABELS, stored=STORED_LABELS,
                 status_code=status_code, problem=problem)


@router.get("/reports/verify")
def verify_form(request: Request, signed: ReportStaff) -> Response:
    """Check a report PDF, its manifest or its bundle against what advocase produced."""
    return _verify_page(request)


@router.post("/reports/verify")
def verify_upload(request: Request, db: SessionDep, signed: ReportStaff, _csrf: CsrfChecked,
                  form: PostedForm) -> Response:
    upload = form.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        return _verify_page(request, status_code=422, problem=FormProblem(
            "Choose the file to check.", [{"field": "file", "message": "choose a file"}]))
    signature = None
    sig_upload = form.get("signature")
    if isinstance(sig_upload, UploadFile) and sig_upload.filename:
        signature = sig_upload.file.read(4096).decode("ascii", "replace").strip() or None
    try:
        result = verification.verify_file(
            db, upload.file, storage=get_storage(request.app.state.settings),
            org_id=signed.actor.org_id, signature=signature)
    except Invalid as exc:
        refuse(request, exc)
        return _verify_page(request, status_code=exc.status, problem=FormProblem(
            exc.detail, [{"field": "file", "message": "could not be checked"}], exc.status))
    audit.record(db, signed.actor, "report.verified", object_type="report",
                 object_id=result.report_id, outcome="success" if result.ok else "failure",
                 details={"file_kind": result.file_kind, "authentic": result.authentic,
                          "exhibits_match": result.exhibits_match, "surface": "dashboard"})
    return _verify_page(request, result=result)


# --- one report ------------------------------------------------------------------------


def _progress(report: Report) -> dict[str, Any]:
    return {"status": report.status, "status_label": STATUS_LABELS.get(report.status, ""),
            "percent": report.percent, "step": report.step,
            "step_label": STEP_LABELS.get(report.step, report.step),
            "done": report.status in ("done", "failed", "expired"),
            "failure_reason": report.failure_detail}


def _case_number(db: Session, report: Report) -> str:
    return str(db.scalar(sa.select(Client.case_number).where(Client.id == report.client_id))
               or "")


@router.get("/reports/{report_id}")
def report_page(request: Request, report_id: UUID, db: SessionDep,
                signed: ReportReader) -> Response:
    """A report: its status and progress (the page's script follows it without a reload),
    why it failed, and once ready its downloads and until when they can be had."""
    report = service.get_report(db, signed.actor, report_id)
    expired = report.status == "expired" or (
        report.status == "done" and report.expires_at is not None
        and report.expires_at <= utcnow())
    if report.client_id is None:
        title, parts = "Funder report", FUNDER_PART_LABELS
        label = _funder_label(db, report)
    else:
        case_number = _case_number(db, report)
        title = f"Report for {case_number}" if case_number else "Report"
        parts, label = PART_LABELS, case_number
    return _page(request, "report.html", title=title, report=report, label=label,
                 progress=_progress(report), expired=expired, parts=list(parts.items()),
                 poll_seconds=POLL_SECONDS)


@router.get("/reports/{report_id}/progress")
def report_progress(report_id: UUID, db: SessionDep, signed: PolledSigned) -> Response:
    """``{"status", "percent", "step", "done", ...}`` for the report page's progress bar
    (polling is not audited and does not keep the session alive)."""
    if not (signed.can("clients:read") or signed.role in service.AGGREGATE_ROLES):
        raise NotFound("There is nothing at this address.")
    report = service.get_report(db, signed.actor, report_id)
    return JSONResponse(_progress(report), headers={"Cache-Control": "no-store"})


def download_report(request: Request, report_id: UUID, db: SessionDep, signed: ReportReader,
                    part: Annotated[Literal["pdf", "bundle", "manifest", "csv"],
                                    Query()] = "pdf") -> Response:
    """A built report's PDF, bundle (court summary), CSV (funder report) or manifest,
    decrypted as it streams; audited every time by the service, as the API's download
    is (a part the report's kind has not is not found)."""
    found = service.open_download(db, signed.actor, report_id, part,
                                  storage=get_storage(request.app.state.settings))
    request.state.document_policy = "default-src 'none'; sandbox; frame-ancestors 'none'"
    headers = {"Content-Disposition": f'attachment; filename="{found.filename}"',
               "Content-Length": str(found.size), "Cache-Control": "no-store",
               "X-Content-Type-Options": "nosniff", "ETag": f'"{found.sha256}"'}
    return StreamingResponse(found.chunks, media_type=found.media_type, headers=headers)


# The download is a document with a policy of its own; refusals are dashboard pages.
router.add_api_route("/reports/{report_id}/download", download_report, methods=["GET"],
                     route_class_override=DocumentRoute)
