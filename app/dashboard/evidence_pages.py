"""Dashboard pages for evidence: adding a file to an incident, the evidence viewer with its
chain of custody, and the file itself.

The upload streams: the browser's multipart body goes to the evidence service's
``receive_upload`` as it arrives (type check, SHA-256 and encryption on the way to
storage), exactly as the API's upload does; nothing holds the whole file. The dashboard's
own fields — the session's CSRF token, and when the file was captured typed as a date, a
time and a time zone — come before the file in the form, so they are read first (a few
kilobytes at most), checked, and replaced by the fields the service takes, in front of the
file's part passed on unchanged. The page works as a plain form; with its script it sends
the same form by XMLHttpRequest, shows a progress bar, and is answered in JSON.

Every view and download is in the evidence's chain of custody (the service records it).
Images are shown inline from the content route (same origin, which the page's policy
allows); other types are downloaded, under a neutral file name.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time
from email.message import Message
from itertools import chain
from typing import Annotated, Any
from uuid import UUID

import anyio.from_thread
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from sqlmodel import Session
from starlette.requests import ClientDisconnect
from starlette.responses import RedirectResponse

from app.clients import service as clients
from app.core.crypto import constant_time_equal
from app.core.errors import BadRequest, DomainError, Invalid, NotFound, PayloadTooLarge
from app.core.middleware import LimitRule
from app.core.storage import get_storage
from app.core.timezones import iana_zone
from app.dashboard.auth import (
    DashboardRoute,
    FormRefused,
    Signed,
    _form_refused,
    _require_same_site,
    refuse,
    request_db,
)
from app.dashboard.casefile import (
    LABELS,
    DocumentRoute,
    _client_path,
    _client_zone,
    _evidence_of,
    _incident_of,
    size_text,
    type_label,
)
from app.dashboard.client_forms import FormProblem, FormReader, invalid_form
from app.dashboard.clients import ClientStaff, Done
from app.dashboard.clients import _staff_names as staff_names
from app.dashboard.web import render
from app.db import SessionDep
from app.evidence import filetypes
from app.evidence import service as evidence
from app.evidence.models import PURPOSES
from app.settings import Settings

router = APIRouter(prefix="/dashboard/clients", route_class=DashboardRoute,
                   include_in_schema=False, dependencies=[Depends(request_db)])

UPLOAD_PATH = re.compile(r"^/dashboard/clients/[^/]+/incidents/[^/]+/evidence/?$")
BODY_BLOCK_BYTES = 1024 * 1024
# The form's fields before the file: a token, a few short lines and a description.
HEAD_MAX_BYTES = 64 * 1024
DASHBOARD_FIELDS = frozenset({"csrf_token", "description", "captured_on", "captured_time",
                              "captured_zone", "captured_by", "capture_device",
                              "source_notes"})
FILE_FIELD = "file"
# Shown in the page; the content route serves them inline.
INLINE_IMAGES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
CONTENT_POLICY = "default-src 'none'; sandbox; frame-ancestors 'none'"
DEFAULT_PURPOSE = "case_work"
SERVICE_RENAMES = {"captured_at": "captured_on", "content-type": FILE_FIELD,
                   "body": FILE_FIELD}

PURPOSE_LABELS = {
    "case_work": "Case work", "client_request": "The client asked for it",
    "court_preparation": "Preparing for court", "court_submission": "Submitting to a court",
    "legal_review": "Legal review", "supervision": "Supervision",
    "records_request": "A records request", "integrity_check": "Integrity check",
    "other": "Other",
}
CUSTODY_LABELS = {"upload": "Uploaded", "view": "Viewed", "download": "Downloaded",
                  "export": "Exported", "hash_check": "Hash checked"}
OUTCOME_LABELS = {"success": "", "not_modified": "already held, not sent again",
                  "intact": "intact", "mismatch": "does not match its SHA-256",
                  "unreadable": "unreadable"}
# Why a person opens a file; an integrity check is the system's own.
STAFF_PURPOSES = tuple(p for p in PURPOSES if p != "integrity_check")
PAGE_LABELS = {**LABELS, "purposes": [(p, PURPOSE_LABELS.get(p, p)) for p in STAFF_PURPOSES],
               "purpose_label": PURPOSE_LABELS, "custody_label": CUSTODY_LABELS,
               "outcome_label": OUTCOME_LABELS}


def upload_body_limit(settings: Settings) -> LimitRule:
    """The dashboard upload's body limit: the evidence limit, as for the API's upload."""
    return UPLOAD_PATH, settings.evidence_max_bytes


def _page(request: Request, template: str, *, title: str, **context: Any) -> Response:
    return render(request, template, title=title, labels=PAGE_LABELS, size=size_text,
                  type_label=type_label, **context)


# --- reading the body from the thread pool -----------------------------------------------


class RequestBody:
    """The request body as it arrives, for code in the thread pool, in blocks of up to
    1 MiB (the server hands over far smaller pieces); read once, from the start."""

    def __init__(self, request: Request) -> None:
        self._stream = request.stream()
        self.ended = False

    async def _next_block(self) -> bytes | None:
        pieces: list[bytes] = []
        size = 0
        while size < BODY_BLOCK_BYTES:
            try:
                piece = await self._stream.__anext__()
            except StopAsyncIteration:
                self.ended = True
                break
            pieces.append(piece)
            size += len(piece)
        return b"".join(pieces) if pieces else None

    def blocks(self) -> Iterator[bytes]:
        while not self.ended:
            try:
                block = anyio.from_thread.run(self._next_block)
            except ClientDisconnect as exc:
                self.ended = True
                raise BadRequest("The upload was cut off before it was complete; nothing "
                                 "was kept.", kind="upload-incomplete",
                                 title="Upload incomplete") from exc
            if block is None:
                return
            if block:
                yield block

    def drain(self) -> None:
        """Read what is left, so a browser still sending hears the answer (a reply sent
        while it sends may reach it as a broken connection)."""
        try:
            for _ in self.blocks():
                pass
        except (BadRequest, PayloadTooLarge):
            self.ended = True


# --- the fields before the file ----------------------------------------------------------


@dataclass
class UploadHead:
    """The text fields sent before the file, and the body from the file's part on."""

    fields: dict[str, str] = field(default_factory=dict)
    rest: bytes = b""
    has_file: bool = False


def _malformed() -> BadRequest:
    return BadRequest("The form could not be read as multipart/form-data.",
                      kind="malformed-multipart", title="Malformed form")


def _part_name(headers: bytes) -> tuple[str | None, bool]:
    """The part's field name, and whether it carries a file (has a filename)."""
    message = Message()
    for line in headers.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-disposition":
            message["content-disposition"] = value.strip().decode("utf-8", "replace")
    if message.get_content_disposition() != "form-data":
        return None, False
    name = message.get_param("name", header="content-disposition")
    if isinstance(name, tuple):
        name = name[2]
    return (str(name) if name is not None else None,
            message.get_param("filename", header="content-disposition") is not None)


def read_head(blocks: Iterator[bytes], boundary: bytes) -> UploadHead:
    """Read the text parts in front of the file's part (at most ``HEAD_MAX_BYTES``);
    what follows is left in ``blocks`` (and the start of it in ``rest``)."""
    delimiter = b"--" + boundary
    buffer = bytearray()

    def more() -> None:
        if len(buffer) > HEAD_MAX_BYTES:
            raise Invalid("The fields before the file are too long.", errors=[
                {"field": "description", "message": "too long"}])
        block = next(blocks, None)
        if block is None:
            raise _malformed()
        buffer.extend(block)

    def find(needle: bytes, start: int) -> int:
        while (found := buffer.find(needle, start)) < 0:
            more()
        return found

    find(delimiter + b"\r\n", 0)
    if not buffer.startswith(delimiter + b"\r\n"):
        raise _malformed()
    head = UploadHead()
    position = len(delimiter) + 2
    while True:
        part_start = position - len(delimiter) - 2
        header_end = find(b"\r\n\r\n", position)
        name, is_file = _part_name(bytes(buffer[position:header_end]))
        if name is None:
            raise _malformed()
        if name == FILE_FIELD or is_file:
            head.rest, head.has_file = bytes(buffer[part_start:]), True
            return head
        if name not in DASHBOARD_FIELDS:
            raise Invalid("The form has a field it does not know.", errors=[
                {"field": "", "message": "not a field of this form"}])
        if name in head.fields:
            raise Invalid("A field was sent twice.", errors=[
                {"field": name, "message": "sent more than once"}])
        value_start = header_end + 4
        value_end = find(b"\r\n" + delimiter, value_start)
        try:
            head.fields[name] = bytes(buffer[value_start:value_end]).decode("utf-8")
        except UnicodeDecodeError:
            raise Invalid("A field is not UTF-8 text.", errors=[
                {"field": name, "message": "not UTF-8 text"}]) from None
        position = value_end + 2 + len(delimiter)
        while len(buffer) < position + 2:
            more()
        after = bytes(buffer[position:position + 2])
        if after == b"--":
            return head  # the form ended without a file
        if after != b"\r\n":
            raise _malformed()
        position += 2


def _boundary(content_type: str | None) -> bytes:
    media, _, params = (content_type or "").partition(";")
    found = re.search(r'boundary="?([0-9A-Za-z\'()+_,\-./:=? ]{1,70})"?\s*$', params)
    if media.strip().lower() != "multipart/form-data" or not found:
        raise Invalid("Send the form as multipart/form-data.", errors=[
            {"field": FILE_FIELD, "message": "choose a file and send the form again"}])
    return found.group(1).encode("latin-1")


# --- the upload form ---------------------------------------------------------------------


def _captured_at(r: FormReader, errors: list[dict[str, str]]) -> str:
    """When the file was captured, in the time zone it was captured in, as RFC 3339."""
    day, clock, zone_name = (r.text("captured_on"), r.text("captured_time"),
                             r.text("captured_zone"))
    if not day and not clock:
        return ""
    try:
        parsed_day = date.fromisoformat(day)
    except ValueError:
        errors.append({"field": "captured_on", "message": "not a date (YYYY-MM-DD)"})
        return ""
    try:
        parsed_time = time.fromisoformat(clock) if clock else None
    except ValueError:
        parsed_time = None
    if parsed_time is None:
        errors.append({"field": "captured_time", "message": "give the time as HH:MM, or "
                                                            "leave the date empty too"})
        return ""
    try:
        zone = iana_zone(zone_name or "UTC")
    except ValueError:
        errors.append({"field": "captured_zone", "message": "not an IANA time zone name"})
        return ""
    return datetime.combine(parsed_day, parsed_time, tzinfo=zone).isoformat()


def _service_fields(r: FormReader) -> tuple[dict[str, str], list[dict[str, str]]]:
    errors: list[dict[str, str]] = []
    fields = {"description": r.text("description"), "captured_at": _captured_at(r, errors),
              "captured_by": r.text("captured_by"), "capture_device": r.text("capture_device"),
              "source_notes": r.text("source_notes")}
    return {k: v for k, v in fields.items() if v}, errors


def _part(boundary: bytes, name: str, value: str) -> bytes:
    return (b"--" + boundary + b'\r\nContent-Disposition: form-data; name="' + name.encode()
            + b'"\r\n\r\n' + value.encode() + b"\r\n")


def _upload_page(request: Request, db: Session, signed: Signed, client: Any,
                 incident_id: UUID, *, reader: FormReader | None = None,
                 status_code: int = 200, problem: Any = None) -> Response:
    files, more = _evidence_of(db, signed, incident_id)
    names = staff_names(db, signed, {f.evidence.uploaded_by for f in files})
    settings: Settings = request.app.state.settings
    values = reader.values if reader else {}
    if not values.get("captured_zone"):
        values["captured_zone"] = _client_zone(db, signed, client.id)
    return _page(request, "evidence_upload.html", title=f"Evidence for {client.case_number}",
                 client=client, incident_id=incident_id, files=files, more_files=more,
                 staff=names, v=values, max_bytes=settings.evidence_max_bytes,
                 accepted=filetypes.allowed_description(), problem=problem,
                 status_code=status_code)


@router.get("/{client_id}/incidents/{incident_id}/evidence")
def upload_form(request: Request, client_id: UUID, incident_id: UUID, db: SessionDep,
                signed: ClientStaff) -> Response:
    """Add a file to the incident (a photo, a screenshot, a recording, a document); the
    incident's evidence so far is listed."""
    client, _ = _incident_of(db, signed, client_id, incident_id, for_write=True)
    return _upload_page(request, db, signed, client, incident_id)


def _json_problem(problem: FormProblem) -> JSONResponse:
    """A refusal for the page's script: the summary and the errors by input."""
    detail = "There is nothing at this address." if problem.status == 404 else problem.detail
    return JSONResponse({"detail": detail, "errors": problem.errors},
                        status_code=problem.status)


@router.post("/{client_id}/incidents/{incident_id}/evidence")
def upload_evidence(request: Request, client_id: UUID, incident_id: UUID, db: SessionDep,
                    signed: ClientStaff) -> Response:
    """Receive the form as it streams: the CSRF token and the typed fields first, then the
    file, hashed and encrypted on its way to storage by the evidence service."""
    wants_json = "application/json" in request.headers.get("accept", "")
    body = RequestBody(request)
    blocks = body.blocks()
    reader = FormReader()
    client = None
    try:
        _require_same_site(request)
        boundary = _boundary(request.headers.get("content-type"))
        head = read_head(blocks, boundary)
        if not constant_time_equal(signed.csrf_token, head.fields.get("csrf_token", "")):
            raise _form_refused("csrf")
        client, _ = _incident_of(db, signed, client_id, incident_id, for_write=True)
        reader = FormReader(_FormFields(head.fields))  # type: ignore[arg-type]
        fields, errors = _service_fields(reader)
        reader.names.append(FILE_FIELD)  # an input too: the service's errors name it
        if errors:
            body.drain()
            problem = invalid_form(errors)
            if wants_json:
                return _json_problem(problem)
            return _upload_page(request, db, signed, client, incident_id, reader=reader,
                                status_code=422, problem=problem)
        if not head.has_file:
            raise Invalid("Choose a file to add.", errors=[
                {"field": FILE_FIELD, "message": "choose a file"}])
        target = evidence.start_upload(db, signed.actor, incident_id)
        # Reading only so far: end the transaction, so a slow upload holds no connection
        # (nor SQLite's write lock). The service checks reach again before it writes.
        db.rollback()
        settings: Settings = request.app.state.settings
        prefix = b"".join(_part(boundary, name, value) for name, value in fields.items())
        record = evidence.receive_upload(
            db, signed.actor, target, chain([prefix + head.rest], blocks),
            content_type=f"multipart/form-data; boundary={boundary.decode('latin-1')}",
            purpose=DEFAULT_PURPOSE, storage=get_storage(settings),
            max_bytes=settings.evidence_max_bytes)
    except PayloadTooLarge as exc:
        problem = FormProblem(f"The file is larger than the limit of {size_text(exc.limit)}.",
                              [{"field": FILE_FIELD, "message": "too large"}], 413)
        db.rollback()
        if wants_json or client is None:
            return _json_problem(problem)
        return _upload_page(request, db, signed, client, incident_id, reader=reader,
                            status_code=413, problem=problem)
    except DomainError as exc:
        body.drain()
        if not wants_json and (client is None or isinstance(exc, NotFound | FormRefused)):
            raise  # the refusal page, as for any dashboard form
        refuse(request, exc)
        problem = reader.relabel(exc, rename=SERVICE_RENAMES)
        if wants_json:
            return _json_problem(problem)
        return _upload_page(request, db, signed, client, incident_id, reader=reader,
                            status_code=exc.status, problem=problem)
    evidence_path = _client_path(client_id, f"/evidence/{record.evidence.id}")
    if wants_json:
        e = record.evidence
        return JSONResponse({"evidence_url": evidence_path, "sha256": e.sha256,
                             "size_bytes": e.size_bytes, "size": size_text(e.size_bytes),
                             "content_type": e.content_type,
                             "type": type_label(e.content_type)}, status_code=201)
    return RedirectResponse(evidence_path + "?done=evidence-uploaded", status_code=303)


class _FormFields:
    """The text fields read from the head, shaped as FormReader reads a posted form."""

    def __init__(self, fields: dict[str, str]) -> None:
        self._fields = fields

    def getlist(self, name: str) -> list[str]:
        return [self._fields[name]] if name in self._fields else []


# --- the evidence viewer -----------------------------------------------------------------


@dataclass
class CustodyRow:
    at: datetime
    action: str
    who: str
    purpose: str
    outcome: str
    byte_range: str | None


def _evidence_of_client(db: Session, signed: Signed, client_id: UUID,
                        evidence_id: UUID) -> tuple[Any, Any]:
    client = clients.get_client(db, signed.actor, client_id)
    found = evidence.get_evidence(db, signed.actor, evidence_id)
    if found.client_id != client.id:
        raise NotFound("No such evidence.")
    return client, found


@router.get("/{client_id}/evidence/{evidence_id}")
def evidence_page(request: Request, client_id: UUID, evidence_id: UUID, db: SessionDep,
                  signed: ClientStaff, done: Done = None) -> Response:
    """One piece of evidence: what it is, its SHA-256, the image itself (other types are
    downloaded) and its whole chain of custody, this view included."""
    client, _ = _evidence_of_client(db, signed, client_id, evidence_id)
    record = evidence.read_evidence(db, signed.actor, evidence_id, purpose=DEFAULT_PURPOSE)
    actors = {c.actor_id for c in record.custody if c.actor_id}
    names = staff_names(db, signed, actors | {record.evidence.uploaded_by})
    custody = [CustodyRow(c.at, CUSTODY_LABELS.get(c.action, c.action),
                          "the system" if c.actor_type == "system" else
                          ("a partner app" if c.actor_type == "partner_app" else
                           names.get(c.actor_id, "a former colleague")),  # type: ignore[arg-type]
                          PURPOSE_LABELS.get(c.purpose or "", c.purpose or "—"),
                          OUTCOME_LABELS.get(c.outcome, c.outcome), c.byte_range)
               for c in record.custody]
    note = ("The file is stored. Compare its SHA-256 below with the one of the file you "
            "chose." if done == "evidence-uploaded" else None)
    return _page(request, "evidence.html", title=f"Evidence of {client.case_number}",
                 client=client, record=record, e=record.evidence, custody=custody,
                 uploaded_by=names.get(record.evidence.uploaded_by, "a former colleague"),
                 inline=record.evidence.content_type in INLINE_IMAGES, note=note)


def evidence_content(request: Request, client_id: UUID, evidence_id: UUID, db: SessionDep,
                     signed: ClientStaff,
                     purpose: Annotated[str, Query(max_length=32)] = DEFAULT_PURPOSE,
                     download: Annotated[bool, Query()] = False) -> Response:
    """The original file, decrypted as it streams: images inline (unless asked to
    download), other types as a download under a neutral name. ETag is its SHA-256.
    Every download is in the chain of custody."""
    _, found = _evidence_of_client(db, signed, client_id, evidence_id)
    if purpose not in STAFF_PURPOSES:
        raise Invalid("Choose why you open the file from the list.",
                      errors=[{"field": "purpose", "message": "choose from the list"}])
    file_type = filetypes.BY_MEDIA_TYPE.get(found.content_type)
    extension = file_type.extension if file_type else "bin"
    disposition = ("inline" if found.content_type in INLINE_IMAGES and not download
                   else "attachment")
    etag = f'"{found.sha256}"'
    headers = {"ETag": etag, "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
               "Content-Disposition": f'{disposition}; filename="evidence-{found.id}.'
                                      f'{extension}"'}
    request.state.document_policy = CONTENT_POLICY
    storage = get_storage(request.app.state.settings)
    matches = request.headers.get("if-none-match", "")
    if etag in [part.strip().removeprefix("W/") for part in matches.split(",")]:
        evidence.open_content(db, signed.actor, found, storage=storage, purpose=purpose,
                              not_modified=True)
        return Response(status_code=304, headers=headers)
    chunks = evidence.open_content(db, signed.actor, found, storage=storage, purpose=purpose)
    assert chunks is not None
    media_type = found.content_type + ("; charset=utf-8" if found.content_type == "text/plain"
                                       else "")
    headers["Content-Length"] = str(found.size_bytes)
    return StreamingResponse(chunks, media_type=media_type, headers=headers)


router.add_api_route("/{client_id}/evidence/{evidence_id}/content", evidence_content,
                     methods=["GET"], route_class_override=DocumentRoute)

