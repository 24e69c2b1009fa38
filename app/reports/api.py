"""Reports: request one (202 + Location), follow its progress, download it (audited), check
a file against what advocase produced, and the agency's published manifest keys."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import TypeAdapter, ValidationError
from starlette.datastructures import UploadFile

from app.core import access, audit
from app.core.errors import Invalid
from app.core.middleware import LimitRule
from app.core.storage import get_storage
from app.db import SessionDep, UnitOfWorkRoute
from app.identity.deps import CurrentActor
from app.reports import schemas, service, verification
from app.reports.models import Report
from app.settings import Settings

router = APIRouter(prefix="/api/v1", tags=["reports"], route_class=UnitOfWorkRoute)
PROBLEM = {"content": {"application/problem+json": {}}}
VERIFY_PATH = re.compile(r"^/api/v1/reports/verify/?$")


def verify_body_limit(settings: Settings) -> LimitRule:
    """The verification endpoint takes whole bundles: its own body limit."""
    return VERIFY_PATH, settings.report_verify_max_bytes


def _out(report: Report) -> schemas.ReportOut:
    return schemas.ReportOut(
        id=report.id, kind=report.kind, client_id=report.client_id,
        status=report.status,  # type: ignore[arg-type]
        percent=report.percent, step=report.step, failure_code=report.failure_code,
        failure_reason=report.failure_detail, attempts=report.attempts,
        requested_at=report.requested_at, requested_by=report.requested_by,
        started_at=report.started_at, finished_at=report.finished_at,
        expires_at=report.expires_at, pdf_sha256=report.pdf_sha256,
        bundle_sha256=report.bundle_sha256, manifest_sha256=report.manifest_sha256,
        downloads=service.downloads_of(report))


def report_request(payload: Annotated[dict[str, Any], Body()]
                   ) -> schemas.CourtSummaryCreate | schemas.FunderAggregateCreate:
    """The body, checked with the schema of its ``kind`` (court_summary unless it says
    funder_aggregate), its errors naming fields as the schema does (no kind prefix)."""
    model: Any = (schemas.FunderAggregateCreate if payload.get("kind") == "funder_aggregate"
                  else schemas.CourtSummaryCreate)
    try:
        return model.model_validate(payload)  # type: ignore[no-any-return]
    except ValidationError as exc:
        raise RequestValidationError([{**error, "loc": ("body", *error["loc"])}
                                      for error in exc.errors(include_url=False)]) from None


def _inline(schema: Any, definitions: dict[str, Any]) -> Any:
    """A JSON schema with its local ``$defs`` references replaced by what they name."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            return _inline(definitions[schema["$ref"].rsplit("/", 1)[-1]], definitions)
        # A discriminator's mapping names $defs too: the inlined oneOf needs none.
        return {key: _inline(value, definitions) for key, value in schema.items()
                if key not in ("$defs", "mapping")}
    if isinstance(schema, list):
        return [_inline(value, definitions) for value in schema]
    return schema


def _request_schema() -> dict[str, Any]:
    document = TypeAdapter(schemas.ReportCreate).json_schema()
    return _inline(document, document.get("$defs", {}))  # type: ignore[no-any-return]


REQUEST_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": _request_schema()}}}}


@router.post("/reports", response_model=schemas.ReportOut, status_code=202,
             openapi_extra=REQUEST_BODY, responses={403: PROBLEM, 404: PROBLEM, 422: PROBLEM})
def request_report(body: Annotated[schemas.CourtSummaryCreate | schemas.FunderAggregateCreate,
                                   Depends(report_request)],
                   response: Response, actor: CurrentActor,
                   db: SessionDep) -> schemas.ReportOut:
    """Ask for a report; a worker builds it. Answered 202 with the report's address in
    ``Location``: poll it for ``status``, ``percent`` and ``step``. Kind ``court_summary``:
    one client's chosen incidents (with every revision) and evidence, redacted as chosen.
    Kind ``funder_aggregate``: de-identified counts of your agency over a period, small
    counts suppressed (supervisors and admins; 403 for others), as a PDF and a CSV."""
    if isinstance(body, schemas.FunderAggregateCreate):
        report = service.request_funder_aggregate(db, actor, body)
    else:
        report = service.request_court_summary(db, actor, body)
    response.headers["Location"] = f"/api/v1/reports/{report.id}"
    return _out(report)


@router.get("/reports/{report_id}", response_model=schemas.ReportOut,
            responses={403: PROBLEM, 404: PROBLEM})
def get_report(report_id: UUID, actor: CurrentActor, db: SessionDep) -> schemas.ReportOut:
    """How far the build is (queued, building, done, failed or expired; percent and step),
    why it failed, and until when it can be downloaded."""
    return _out(service.get_report(db, actor, report_id))


DOWNLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The PDF, the ZIP bundle (court summary), the CSV (funder "
                         "aggregate) or the manifest",
          "content": {"application/pdf": {}, "application/zip": {}, "application/json": {},
                      "text/csv": {}}},
    403: PROBLEM, 404: PROBLEM, 409: PROBLEM, 410: PROBLEM}


@router.get("/reports/{report_id}/download", response_class=Response,
            responses=DOWNLOAD_RESPONSES)
def download_report(report_id: UUID, request: Request, actor: CurrentActor, db: SessionDep,
                    part: Annotated[Literal["pdf", "bundle", "manifest", "csv"], Query(
                        description="pdf (default), bundle (court summary; ZIP: PDF, "
                                    "manifest, signature, exhibits), csv (funder aggregate) "
                                    "or manifest")] = "pdf") -> Response:
    """A built report, decrypted as it streams; every download is audited. 409 while it is
    not built, 410 once it has expired."""
    found = service.open_download(db, actor, report_id, part,
                                  storage=get_storage(request.app.state.settings))
    headers = {"Content-Disposition": f'attachment; filename="{found.filename}"',
               "Content-Length": str(found.size), "Cache-Control": "no-store",
               "X-Content-Type-Options": "nosniff", "ETag": f'"{found.sha256}"',
               "Content-Security-Policy": "default-src 'none'; sandbox; frame-ancestors 'none'"}
    return StreamingResponse(found.chunks, media_type=found.media_type, headers=headers)


VERIFY_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {
    "schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary",
                 "description": "A report PDF, its manifest.json or its ZIP bundle"},
        "signature": {"type": "string", "description": "manifest.sig, when checking a "
                                                       "manifest alone (optional)"}}}}}}}


async def verify_upload(request: Request) -> tuple[Any, str | None]:
    """The uploaded file (spooled to disk when large) and the optional signature."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "multipart/form-data":
        raise Invalid("Send the file as multipart/form-data in a field named file.", errors=[{
            "field": "file", "location": "body", "message": "expected multipart/form-data",
            "type": "content_type"}])
    form = await request.form(max_files=1, max_fields=2)
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise Invalid("Send the file in a form field named file.", errors=[{
            "field": "file", "location": "body", "message": "required", "type": "missing"}])
    signature = form.get("signature")
    return upload.file, signature if isinstance(signature, str) and signature.strip() else None


@router.post("/reports/verify", response_model=schemas.Verification,
             openapi_extra=VERIFY_BODY, responses={403: PROBLEM, 413: PROBLEM, 422: PROBLEM})
def verify_report(request: Request, actor: CurrentActor, db: SessionDep,
                  upload: Annotated[tuple[Any, str | None], Depends(verify_upload)]
                  ) -> schemas.Verification:
    """Is this PDF, manifest or bundle exactly what advocase produced for your agency, and
    does each exhibit still match — the copy in the bundle, and the evidence kept here
    (hashed again now)? ``ok`` sums it up; ``checks`` and ``exhibits`` say what failed."""
    access.require_client_staff(actor)
    file, signature = upload
    result = verification.verify_file(db, file, storage=get_storage(request.app.state.settings),
                                      org_id=actor.org_id, signature=signature)
    audit.record(db, actor, "report.verified", object_type="report",
                 object_id=result.report_id,
                 outcome="success" if result.ok else "failure",
                 details={"file_kind": result.file_kind, "authentic": result.authentic,
                          "exhibits_match": result.exhibits_match})
    return schemas.Verification.model_validate(result.as_dict())


@router.get("/orgs/{org_id}/report-key", response_model=schemas.ReportKeys,
            responses={404: PROBLEM})
def report_keys(org_id: UUID, db: SessionDep) -> schemas.ReportKeys:
    """The agency's public Ed25519 keys for report manifests (PEM), current first. Public:
    anyone holding a report checks its manifest's signature with them."""
    rows = service.published_keys(db, org_id)
    return schemas.ReportKeys(org_id=org_id, keys=[
        schemas.ReportKey(key_id=row.id, algorithm="Ed25519", public_key_pem=row.public_key,
                          created_at=row.created_at, current=row.retired_at is None)
        for row in rows])
