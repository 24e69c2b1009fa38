"""Evidence: upload (multipart, streamed), metadata with the chain of custody, the original
file back (ETag, ranges), and an incident's list of evidence."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any
from uuid import UUID

import anyio.from_thread
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.requests import ClientDisconnect

from app.core import access
from app.core.errors import BadRequest, DomainError
from app.core.middleware import LimitRule
from app.core.pagination import Page, PageParamsDep, SortKey, paginate
from app.core.storage import get_storage
from app.db import SessionDep, UnitOfWorkRoute
from app.evidence import filetypes, schemas, service
from app.evidence.models import Evidence
from app.identity.deps import CurrentActor
from app.settings import Settings

router = APIRouter(prefix="/api/v1", tags=["evidence"], route_class=UnitOfWorkRoute)
PROBLEM = {"content": {"application/problem+json": {}}}
UPLOAD_PATH = re.compile(r"^/api/v1/incidents/[^/]+/evidence/?$")
PurposeQuery = Annotated[schemas.Purpose | None, Query(
    description="Why you access the evidence; kept in its chain of custody")]
CONTENT_SECURITY_POLICY = "default-src 'none'; sandbox; frame-ancestors 'none'"
BODY_BLOCK_BYTES = 1024 * 1024


def upload_body_limit(settings: Settings) -> LimitRule:
    """The evidence upload's own body limit (the API's default is far smaller)."""
    return UPLOAD_PATH, settings.evidence_max_bytes


class RangeNotSatisfiable(DomainError):
    status, kind, title = 416, "range-not-satisfiable", "Range not satisfiable"


def _out(record: service.EvidenceRecord) -> schemas.EvidenceOut:
    e = record.evidence
    check = record.last_hash_check
    return schemas.EvidenceOut(
        id=e.id, incident_id=e.incident_id, client_id=e.client_id,
        content_type=e.content_type, size_bytes=e.size_bytes, sha256=e.sha256,
        original_filename=record.original_filename, description=record.description,
        captured_at=e.captured_at, source=schemas.EvidenceSource(**record.source),
        uploaded_by=e.uploaded_by, uploaded_at=e.uploaded_at,
        last_hash_check=schemas.HashCheckOut(at=check.at, outcome=check.outcome)
        if check else None)


def _request_body(request: Request) -> Iterator[bytes]:
    """The request body as it arrives, for code running in the thread pool. The server
    hands over small pieces (often 64 KiB); they are passed on in blocks of up to 1 MiB,
    so the thread pool and the event loop trade places far less often."""
    stream = request.stream()

    async def next_block() -> bytes | None:
        pieces: list[bytes] = []
        size = 0
        while size < BODY_BLOCK_BYTES:
            try:
                piece = await stream.__anext__()
            except StopAsyncIteration:
                break
            pieces.append(piece)
            size += len(piece)
        return b"".join(pieces) if pieces else None

    while True:
        try:
            block = anyio.from_thread.run(next_block)
        except ClientDisconnect as exc:
            raise BadRequest("The upload was cut off before it was complete; nothing was kept.",
                             kind="upload-incomplete", title="Upload incomplete") from exc
        if block is None:
            return
        if block:
            yield block


@router.post("/incidents/{incident_id}/evidence", response_model=schemas.EvidenceOut,
             status_code=201, openapi_extra=schemas.UPLOAD_OPENAPI,
             responses={400: PROBLEM, 403: PROBLEM, 404: PROBLEM, 413: PROBLEM, 415: PROBLEM,
                        422: PROBLEM})
def upload_evidence(incident_id: UUID, request: Request, response: Response,
                    actor: CurrentActor, db: SessionDep,
                    purpose: PurposeQuery = None) -> schemas.EvidenceOut:
    """Add a file to an incident as evidence: multipart/form-data with the file in a part
    named ``file`` and optional ``description``, ``captured_at`` (RFC 3339),
    ``captured_by``, ``capture_device`` and ``source_notes``. The type is judged from the
    file's content (images, PDF, audio, video, plain text, e-mail); the answer carries the
    SHA-256 of the bytes received. Limit: ``ADVOCASE_EVIDENCE_MAX_BYTES`` (100 MiB)."""
    access.require_client_staff(actor)
    target = service.start_upload(db, actor, incident_id)
    # The check above only read. End its transaction so that a slow upload holds no
    # connection (and, on SQLite, no write lock); the service checks reach again before
    # it writes.
    db.rollback()
    settings: Settings = request.app.state.settings
    record = service.receive_upload(
        db, actor, target, _request_body(request),
        content_type=request.headers.get("content-type"), purpose=purpose,
        storage=get_storage(settings), max_bytes=settings.evidence_max_bytes)
    response.headers["Location"] = f"/api/v1/evidence/{record.evidence.id}"
    return _out(record)


@router.get("/incidents/{incident_id}/evidence", response_model=Page[schemas.EvidenceOut],
            responses={403: PROBLEM, 404: PROBLEM})
def list_evidence(incident_id: UUID, actor: CurrentActor, db: SessionDep,
                  page: PageParamsDep) -> dict[str, Any]:
    """An incident's evidence, newest first (the listing is audited)."""
    access.require_client_staff(actor)
    query = service.incident_evidence(db, actor, incident_id)
    rows, next_cursor = paginate(
        db, query, listing=f"evidence:{incident_id}",
        keys=[SortKey(Evidence.uploaded_at, descending=True),
              SortKey(Evidence.id, descending=True)], params=page)
    return {"items": [_out(r) for r in service.list_records(db, actor, rows)],
            "next_cursor": next_cursor}


@router.get("/evidence/{evidence_id}", response_model=schemas.EvidenceDetail,
            responses={403: PROBLEM, 404: PROBLEM})
def get_evidence(evidence_id: UUID, actor: CurrentActor, db: SessionDep,
                 purpose: PurposeQuery = None) -> schemas.EvidenceDetail:
    """The evidence's details and its whole chain of custody (this view included)."""
    access.require_client_staff(actor)
    record = service.read_evidence(db, actor, evidence_id, purpose=purpose)
    custody = [schemas.CustodyEventOut(
        id=c.id, at=c.at, action=c.action, actor_type=c.actor_type, actor_id=c.actor_id,
        purpose=c.purpose, outcome=c.outcome, byte_range=c.byte_range) for c in record.custody]
    return schemas.EvidenceDetail(**_out(record).model_dump(), custody=custody)


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    candidates = [part.strip() for part in header.split(",")]
    # If-None-Match uses the weak comparison: W/"x" matches "x".
    return "*" in candidates or any(c.removeprefix("W/") == etag for c in candidates)


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _byte_range(header: str, size: int) -> service.ByteRange | None:
    """A single byte range (RFC 9110 §14.1.2) within ``size``; None: send the whole file
    (a unit other than bytes, or several ranges). 416 when invalid or unsatisfiable."""
    value = header.strip().replace(" ", "")
    if not value.lower().startswith("bytes="):
        return None
    if "," in value:
        return None  # several ranges: we answer with the whole file, as RFC 9110 allows
    match = _RANGE.match(value.lower())
    unsatisfiable = RangeNotSatisfiable(
        f"The range must be bytes=first-last within the file's {size} bytes.",
        headers={"Content-Range": f"bytes */{size}"})
    if match is None or match.group(1) == match.group(2) == "":
        raise unsatisfiable
    first_text, last_text = match.groups()
    if first_text == "":
        suffix = int(last_text)
        if suffix == 0:
            raise unsatisfiable
        return service.ByteRange(max(0, size - suffix), size - 1)
    first = int(first_text)
    last = int(last_text) if last_text else size - 1
    if first >= size or last < first:
        raise unsatisfiable
    return service.ByteRange(first, min(last, size - 1))


CONTENT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The original file, unchanged",
          "content": {"application/octet-stream": {"schema": {"type": "string",
                                                              "format": "binary"}}}},
    206: {"description": "The requested byte range"},
    304: {"description": "Not modified (If-None-Match matched the ETag)"},
    403: PROBLEM, 404: PROBLEM, 416: PROBLEM}


@router.get("/evidence/{evidence_id}/content", response_class=Response,
            responses=CONTENT_RESPONSES)
def evidence_content(evidence_id: UUID, request: Request, actor: CurrentActor,
                     db: SessionDep, purpose: PurposeQuery = None) -> Response:
    """The original file, decrypted as it streams. ETag is its SHA-256 (If-None-Match →
    304); ``Range: bytes=first-last`` → 206. Always an attachment with a neutral name,
    never cached. Every download is in the chain of custody."""
    access.require_client_staff(actor)
    evidence = service.get_evidence(db, actor, evidence_id)
    file_type = filetypes.BY_MEDIA_TYPE.get(evidence.content_type)
    extension = file_type.extension if file_type else "bin"
    etag = f'"{evidence.sha256}"'
    headers = {"ETag": etag, "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
               "Accept-Ranges": "bytes", "Content-Security-Policy": CONTENT_SECURITY_POLICY,
               "Content-Disposition": f'attachment; filename="evidence-{evidence.id}.{extension}"'}
    storage = get_storage(request.app.state.settings)
    if _etag_matches(request.headers.get("if-none-match"), etag):
        service.open_content(db, actor, evidence, storage=storage, purpose=purpose,
                             not_modified=True)
        return Response(status_code=304, headers={k: headers[k] for k in (
            "ETag", "Cache-Control", "Content-Disposition")})
    byte_range = None
    range_header = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if range_header and (if_range is None or if_range.strip() == etag):
        byte_range = _byte_range(range_header, evidence.size_bytes)
    chunks = service.open_content(db, actor, evidence, storage=storage, purpose=purpose,
                                  byte_range=byte_range)
    assert chunks is not None
    media_type = evidence.content_type
    if media_type == "text/plain":
        media_type += "; charset=utf-8"
    if byte_range is None:
        headers["Content-Length"] = str(evidence.size_bytes)
        return StreamingResponse(chunks, media_type=media_type, headers=headers)
    headers["Content-Range"] = f"bytes {byte_range.first}-{byte_range.last}/{evidence.size_bytes}"
    headers["Content-Length"] = str(byte_range.last - byte_range.first + 1)
    return StreamingResponse(chunks, status_code=206, media_type=media_type, headers=headers)
