"""Evidence: receiving files, reading them back, the chain of custody, integrity checks.

Evidence is reached through its incident (``incidents.service.readable_incidents``): a
file of an incident outside the caller's reach is simply not found (404). Every access to
one piece of evidence is a custody event and an audit event; listings are audited.

Encryption at rest. Each file gets a fresh Tink streaming-AEAD keyset
(AES256_GCM_HKDF_1MB); the file is encrypted with it as it streams in, with the evidence
id as associated data, and the keyset is stored sealed under the client's data key, bound
to org, client and evidence id (``keys.seal_keyset_for_client``). Shredding the client's
key therefore leaves the stored file as noise, and a ciphertext or sealed keyset moved to
another evidence row does not open.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import sqlalchemy as sa
import structlog
import tink
from pydantic import ValidationError
from sqlmodel import Session

from app.clients.models import Client
from app.core import audit, deferred, keys
from app.core.access import Actor
from app.core.errors import Invalid, NotFound
from app.core.storage import (
    ObjectMissing,
    Storage,
    decrypting_reader,
    delete_on_rollback,
    encrypting_writer,
    new_object_keyset,
)
from app.db import utcnow
from app.evidence import upload
from app.evidence.models import CustodyEvent, Evidence, EvidencePreview
from app.evidence.schemas import TEXT_FIELDS, EvidenceMetadata
from app.identity.models import Role, StaffUser
from app.incidents import service as incidents
from app.incidents.models import Incident
from app.notifications import service as notifications

log = structlog.get_logger("app.evidence")

TABLE = "evidence"
STORAGE_PREFIX = "evidence/"
KEYSET_PURPOSE = "evidence"
FILE_FIELD = "file"
MAX_FILENAME_CHARS = 1024
CHUNK_BYTES = 1024 * 1024
CAPTURE_CLOCK_SKEW = timedelta(minutes=5)
# A stored object with no evidence row is removed once it is this old: an upload in
# flight publishes its object seconds before its row commits, never a day.
ORPHAN_GRACE = timedelta(hours=24)
INTEGRITY_ALERT = "evidence_integrity_failed"


# --- reach --------------------------------------------------------------------------------


def readable_evidence(actor: Actor) -> sa.Select[Any]:
    """Evidence of the incidents the actor may read (nothing for partner apps)."""
    reachable = incidents.readable_incidents(actor).with_only_columns(Incident.id)
    return sa.select(Evidence).where(Evidence.org_id == actor.org_id,
                                     Evidence.incident_id.in_(reachable))


def get_evidence(db: Session, actor: Actor, evidence_id: UUID) -> Evidence:
    """The evidence if its incident is within reach (404 otherwise)."""
    if not actor.is_user:
        raise NotFound("No such evidence.")
    evidence = db.scalar(readable_evidence(actor).where(Evidence.id == evidence_id))
    if evidence is None:
        raise NotFound("No such evidence.")
    return evidence


# --- records ------------------------------------------------------------------------------


@dataclass
class EvidenceRecord:
    """Evidence with what people said about it decrypted, for the API and the dashboard."""

    evidence: Evidence
    original_filename: str | None
    description: str | None
    source: dict[str, str | None]
    last_hash_check: CustodyEvent | None = None
    custody: list[CustodyEvent] = field(default_factory=list)


def storage_key(org_id: UUID, evidence_id: UUID) -> str:
    return f"evidence/{org_id}/{evidence_id.hex[:2]}/{evidence_id}"


def content_associated_data(evidence_id: UUID) -> bytes:
    """The associated data of a file's ciphertext stream: the evidence id."""
    return str(evidence_id).encode("ascii")


def _place(evidence: Evidence, column: str) -> dict[str, Any]:
    return {"org_id": evidence.org_id, "client_id": evidence.client_id, "table": TABLE,
            "column": column, "row_id": str(evidence.id)}


def _seal(db: Session, evidence: Evidence, column: str, value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dict):
        return keys.encrypt_json(db, value=value, **_place(evidence, column))
    return keys.encrypt_field(db, plaintext=value, **_place(evidence, column))


def _decrypt(db: Session, evidence: Evidence) -> EvidenceRecord:
    try:
        name = keys.decrypt_field(db, ciphertext=evidence.original_filename,
                                  **_place(evidence, "original_filename"))
        description = keys.decrypt_field(db, ciphertext=evidence.description,
                                         **_place(evidence, "description"))
        source = keys.decrypt_json(db, ciphertext=evidence.source,
                                   **_place(evidence, "source")) or {}
    except keys.KeyDestroyed as exc:
        raise NotFound("No such evidence.") from exc
    return EvidenceRecord(evidence, name, description,
                          {k: source.get(k) for k in ("captured_by", "device", "notes")})


def open_keyset(db: Session, evidence: Evidence) -> tink.KeysetHandle:
    """The evidence's own streaming keyset, opened with its client's key."""
    return keys.open_keyset_for_client(
        db, org_id=evidence.org_id, client_id=evidence.client_id, purpose=KEYSET_PURPOSE,
        bound_to=evidence.id, sealed=evidence.sealed_keyset)


def _request_id() -> str | None:
    value = structlog.contextvars.get_contextvars().get("request_id")
    return str(value)[:128] if value else None


def _custody(db: Session, actor: Actor | None, evidence: Evidence, action: str,
             purpose: str | None, *, outcome: str = "success",
             byte_range: str | None = None) -> CustodyEvent:
    event = CustodyEvent(org_id=evidence.org_id, evidence_id=evidence.id,
                         actor_type=actor.kind if actor else "system",
                         actor_id=actor.id if actor else None, action=action, purpose=purpose,
                         outcome=outcome, byte_range=byte_range, request_id=_request_id())
    db.add(event)
    db.flush()
    return event


def custody_log(db: Session, evidence_id: UUID) -> list[CustodyEvent]:
    """Every custody event of one piece of evidence, oldest first."""
    return list(db.scalars(sa.select(CustodyEvent).where(CustodyEvent.evidence_id == evidence_id)
                           .order_by(CustodyEvent.at, CustodyEvent.id)))


def _last_hash_checks(db: Session, evidence_ids: list[UUID]) -> dict[UUID, CustodyEvent]:
    latest: dict[UUID, CustodyEvent] = {}
    if not evidence_ids:
        return latest
    for event in db.scalars(sa.select(CustodyEvent).where(
            CustodyEvent.evidence_id.in_(evidence_ids), CustodyEvent.action == "hash_check")
            .order_by(CustodyEvent.at, CustodyEvent.id)):
        latest[event.evidence_id] = event
    return latest


# --- receiving ----------------------------------------------------------------------------


@dataclass(frozen=True)
class UploadTarget:
    """Where an upload that passed the access check goes (ids only)."""

    evidence_id: UUID
    incident_id: UUID
    org_id: UUID
    client_id: UUID
    storage_key: str


def start_upload(db: Session, actor: Actor, incident_id: UUID) -> UploadTarget:
    """Check, before a byte of the file is read, that the actor may add evidence to the
    incident (404 outside reach, 403 without the right to write)."""
    incident = incidents.get_incident(db, actor, incident_id, for_write=True)
    evidence_id = uuid4()
    return UploadTarget(evidence_id, incident.id, incident.org_id, incident.client_id,
                        storage_key(incident.org_id, evidence_id))


def _metadata(fields: dict[str, str]) -> EvidenceMetadata:
    given = {name: value for name, value in fields.items() if value.strip()}
    try:
        metadata = EvidenceMetadata.model_validate(given)
    except ValidationError as exc:
        raise Invalid("One or more fields are invalid.", errors=[
            {"field": ".".join(str(p) for p in error["loc"]) or "body", "location": "body",
             "message": error["msg"], "type": error["type"]} for error in exc.errors()]) from exc
    if metadata.captured_at is not None and metadata.captured_at > utcnow() + CAPTURE_CLOCK_SKEW:
        raise Invalid("The capture time is in the future.", errors=[{
            "field": "captured_at", "location": "body", "message": "in the future",
            "type": "future"}])
    return metadata


def _filename(sent: str | None) -> str | None:
    if not sent:
        return None
    # Some browsers send a whole path, which can name the person's account folder.
    name = sent.replace("\\", "/").rsplit("/", 1)[-1].strip()
    name = "".join(c for c in name if c.isprintable())
    if len(name) > MAX_FILENAME_CHARS:
        raise Invalid("The file name is too long.", errors=[{
            "field": FILE_FIELD, "location": "body",
            "message": f"file name longer than {MAX_FILENAME_CHARS} characters",
            "type": "too_long"}])
    return name or None


def receive_upload(db: Session, actor: Actor, target: UploadTarget, body: Iterable[bytes], *,
                   content_type: str | None, purpose: str | None, storage: Storage,
                   max_bytes: int) -> EvidenceRecord:
    """Store an uploaded file as evidence of the incident, as its body streams in.

    The file part is type-checked on its first bytes, hashed (SHA-256 of the original
    bytes) and encrypted in 1 MiB segments on its way to storage; nothing is held whole
    in memory. An upload that fails — too large (413), refused type (415), invalid field
    (422), cut off — leaves nothing behind; one whose transaction then fails to commit
    has its stored object deleted."""
    boundary = upload.boundary_of(content_type)
    keyset = new_object_keyset()
    sinks: list[upload.FileSink] = []
    with encrypting_writer(storage, target.storage_key, keyset,
                           content_associated_data(target.evidence_id)) as plaintext:

        def open_file() -> upload.FileSink:
            sinks.append(upload.FileSink(plaintext))
            return sinks[-1]

        form = upload.read_form(upload.limited(body, max_bytes), boundary,
                                file_field=FILE_FIELD, text_fields=frozenset(TEXT_FIELDS),
                                open_file=open_file)
        metadata = _metadata(form.fields)
        filename = _filename(form.filename)
    sink = sinks[0]
    assert sink.file_type is not None
    # Published: from here on, a unit of work that does not commit deletes the object.
    delete_on_rollback(db, storage, target.storage_key)
    # Reach again: a slow upload may have outlived the caller's access.
    incidents.get_incident(db, actor, target.incident_id, for_write=True)
    evidence = Evidence(id=target.evidence_id, org_id=target.org_id, client_id=target.client_id,
                        incident_id=target.incident_id, storage_key=target.storage_key,
                        sealed_keyset=b"", content_type=sink.file_type.media_type,
                        size_bytes=sink.size, sha256=sink.sha256.hexdigest(),
                        captured_at=metadata.captured_at.astimezone(UTC)
                        if metadata.captured_at else None, uploaded_by=actor.id)
    evidence.sealed_keyset = keys.seal_keyset_for_client(
        db, org_id=target.org_id, client_id=target.client_id, purpose=KEYSET_PURPOSE,
        bound_to=target.evidence_id, keyset=keyset)
    source = {"captured_by": metadata.captured_by, "device": metadata.capture_device,
              "notes": metadata.source_notes}
    evidence.original_filename = _seal(db, evidence, "original_filename", filename)
    evidence.description = _seal(db, evidence, "description", metadata.description)
    evidence.source = _seal(db, evidence, "source",
                            source if any(source.values()) else None)
    db.add(evidence)
    db.flush()
    event = _custody(db, actor, evidence, "upload", purpose)
    from app.evidence import previews  # it builds on this module

    if previews.wanted(evidence):
        deferred.enqueue_after_commit(db, previews.PREVIEW_TASK, evidence.id)
    audit.record(db, actor, "evidence.uploaded", evidence,
                 details={"incident_id": str(target.incident_id),
                          "content_type": evidence.content_type,
                          "size_bytes": evidence.size_bytes})
    return EvidenceRecord(evidence, filename, metadata.description, source, None, [event])


# --- reading ------------------------------------------------------------------------------


def read_evidence(db: Session, actor: Actor, evidence_id: UUID, *,
                  purpose: str | None = None) -> EvidenceRecord:
    """One piece of evidence with its chain of custody; the view is itself recorded."""
    evidence = get_evidence(db, actor, evidence_id)
    record = _decrypt(db, evidence)
    _custody(db, actor, evidence, "view", purpose)
    audit.record(db, actor, "evidence.read", evidence,
                 details={"purpose": purpose} if purpose else None)
    record.custody = custody_log(db, evidence.id)
    record.last_hash_check = _last_hash_checks(db, [evidence.id]).get(evidence.id)
    return record


def incident_evidence(db: Session, actor: Actor, incident_id: UUID) -> sa.Select[Any]:
    """The query of an incident's evidence (404 when the incident is out of reach)."""
    incident = incidents.get_incident(db, actor, incident_id)
    return readable_evidence(actor).where(Evidence.incident_id == incident.id)


def list_records(db: Session, actor: Actor, rows: list[Evidence]) -> list[EvidenceRecord]:
    """A page of evidence, decrypted; which evidence was listed is audited."""
    audit.append_many(db, action="evidence.listed", org_id=actor.org_id, actor_type=actor.kind,
                      actor_id=str(actor.id), object_type="evidence",
                      object_ids=[row.id for row in rows])
    checks = _last_hash_checks(db, [row.id for row in rows])
    records = []
    for row in rows:
        record = _decrypt(db, row)
        record.last_hash_check = checks.get(row.id)
        records.append(record)
    return records


@dataclass(frozen=True)
class ByteRange:
    first: int
    last: int  # inclusive, as in HTTP


def open_content(db: Session, actor: Actor, evidence: Evidence, *, storage: Storage,
                 purpose: str | None = None, byte_range: ByteRange | None = None,
                 not_modified: bool = False) -> Iterator[bytes] | None:
    """Record a download of ``evidence`` (from :func:`get_evidence`) and return the
    original bytes, decrypted as they are read (``byte_range``: only those); None when
    the caller already holds them (``not_modified``, answered 304).

    The first bytes are decrypted before this returns, so a file that does not open is
    an integrity failure (``keys.DecryptionError``) rather than a broken download."""
    try:
        keyset = open_keyset(db, evidence)
    except keys.KeyDestroyed as exc:
        raise NotFound("No such evidence.") from exc
    span = byte_range or ByteRange(0, evidence.size_bytes - 1)
    partial = byte_range is not None and (span.first, span.last) != (0, evidence.size_bytes - 1)
    _custody(db, actor, evidence, "download", purpose,
             outcome="not_modified" if not_modified else "success",
             byte_range=f"{span.first}-{span.last}" if partial and not not_modified else None)
    audit.record(db, actor, "evidence.downloaded", evidence, details={
        k: v for k, v in (("purpose", purpose), ("partial", partial or None),
                          ("not_modified", not_modified or None)) if v})
    if not_modified:
        return None
    chunks = _plaintext(storage, evidence, keyset, span, verify=not partial)
    first = next(chunks, b"")
    return itertools.chain([first], chunks)


def _plaintext(storage: Storage, evidence: Evidence, keyset: tink.KeysetHandle,
               span: ByteRange, *, verify: bool) -> Iterator[bytes]:
    """The bytes ``span`` of the file. Tink's decrypting stream is not seekable, so bytes
    before the range are decrypted and dropped. A whole file is also re-hashed, and must
    end where its record says."""
    digest = hashlib.sha256() if verify else None
    try:
        reader = decrypting_reader(storage, evidence.storage_key, keyset,
                                   content_associated_data(evidence.id))
    except (ObjectMissing, tink.TinkError) as exc:
        raise keys.DecryptionError("the stored file is missing or does not open") from exc
    try:
        position = 0
        while position < span.first:
            skipped = reader.read(min(CHUNK_BYTES, span.first - position))
            if not skipped:
                raise keys.DecryptionError("the stored file is shorter than its record")
            position += len(skipped)
        remaining = span.last - span.first + 1
        while remaining > 0:
            chunk = reader.read(min(CHUNK_BYTES, remaining))
            if not chunk:
                raise keys.DecryptionError("the stored file is shorter than its record")
            remaining -= len(chunk)
            if digest is not None:
                digest.update(chunk)
            yield chunk
        if digest is not None:
            # Reading past the end makes Tink check the stream's final segment marker.
            if reader.read(1) or digest.hexdigest() != evidence.sha256:
                raise keys.DecryptionError("the stored file does not match its SHA-256")
    except tink.TinkError as exc:
        raise keys.DecryptionError("the stored file does not open: altered or moved") from exc
    finally:
        reader.close()


def whole_file(storage: Storage, evidence: Evidence, keyset: tink.KeysetHandle) -> Iterator[bytes]:
    """The file's bytes, decrypted chunk by chunk; ``keys.DecryptionError`` when it is
    missing, altered, or does not match its size and SHA-256 (checked at its end)."""
    return _plaintext(storage, evidence, keyset, ByteRange(0, evidence.size_bytes - 1),
                      verify=True)


def record_export(db: Session, actor: Actor, evidence_id: UUID, *,
                  purpose: str | None = None) -> Evidence:
    """Record that the evidence was put into an export (a court bundle): a custody event
    and an audit event. For the reports domain, which builds the export."""
    evidence = get_evidence(db, actor, evidence_id)
    _custody(db, actor, evidence, "export", purpose)
    audit.record(db, actor, "evidence.exported", evidence,
                 details={"purpose": purpose} if purpose else None)
    return evidence


# --- integrity ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DueForCheck:
    evidence_id: UUID
    size_bytes: int


@dataclass(frozen=True)
class HashCheckBatch:
    items: list[DueForCheck]
    more: bool  # more evidence is due after the last item


def due_for_hash_check(db: Session, *, since: datetime, after_id: UUID | None = None,
                       limit: int = 50, max_bytes: int = 2 * 1024 ** 3) -> HashCheckBatch:
    """Evidence not hash-checked since ``since``, in id order after ``after_id``: at most
    ``limit`` files and about ``max_bytes`` (always at least one). Evidence of a purged
    client is skipped: its key is gone, so there is nothing left to check."""
    checked = sa.exists().where(CustodyEvent.evidence_id == Evidence.id,
                                CustodyEvent.action == "hash_check", CustodyEvent.at >= since)
    query = (sa.select(Evidence.id, Evidence.size_bytes)
             .join(Client, Client.id == Evidence.client_id)
             .where(Client.purged_at.is_(None), ~checked)
             .order_by(Evidence.id).limit(limit + 1))
    if after_id is not None:
        query = query.where(Evidence.id > after_id)
    rows = db.execute(query).all()
    items: list[DueForCheck] = []
    total = 0
    for evidence_id, size in rows[:limit]:
        if items and total + size > max_bytes:
            break
        items.append(DueForCheck(evidence_id, size))
        total += size
    return HashCheckBatch(items, more=len(rows) > len(items))


@dataclass(frozen=True)
class StoredFile:
    """What a hash check needs, taken from the database before the long read."""

    evidence: Evidence
    keyset: tink.KeysetHandle | None  # None: the sealed keyset itself does not open


def open_for_check(db: Session, evidence_id: UUID) -> StoredFile | None:
    """The evidence and its keyset for a hash check; None when there is nothing to check
    (the evidence is gone from view, or its client's key was shredded)."""
    evidence = db.get(Evidence, evidence_id)
    if evidence is None:
        return None
    try:
        keyset = open_keyset(db, evidence)
    except keys.KeyDestroyed:
        return None
    except keys.DecryptionError:
        keyset = None
    db.expunge(evidence)
    return StoredFile(evidence, keyset)


def hash_stored(stored: StoredFile, storage: Storage) -> str:
    """Decrypt the stored file and compare its SHA-256 and size with the record:
    ``intact``, ``mismatch`` (it opens but differs) or ``unreadable`` (missing, altered,
    truncated, or its keyset does not open). Needs no database session."""
    if stored.keyset is None:
        return "unreadable"
    evidence = stored.evidence
    digest, size = hashlib.sha256(), 0
    try:
        reader = decrypting_reader(storage, evidence.storage_key, stored.keyset,
                                   content_associated_data(evidence.id))
        with reader:
            while chunk := reader.read(CHUNK_BYTES):
                digest.update(chunk)
                size += len(chunk)
    except (ObjectMissing, OSError, tink.TinkError):
        return "unreadable"
    if size != evidence.size_bytes or digest.hexdigest() != evidence.sha256:
        return "mismatch"
    return "intact"


def record_hash_check(db: Session, evidence_id: UUID, outcome: str, *,
                      since: datetime) -> bool:
    """Record a hash check (once per run: a check already recorded since ``since`` makes
    this a no-op). A failure is audited, and supervisors of the org are alerted when the
    file newly fails (by evidence id only). Returns whether an alert was raised."""
    evidence = db.scalar(sa.select(Evidence).where(Evidence.id == evidence_id)
                         .with_for_update())
    if evidence is None:
        return False
    done = db.scalar(sa.select(CustodyEvent.id).where(
        CustodyEvent.evidence_id == evidence_id, CustodyEvent.action == "hash_check",
        CustodyEvent.at >= since).limit(1))
    if done is not None:
        return False
    previous = db.scalar(sa.select(CustodyEvent.outcome).where(
        CustodyEvent.evidence_id == evidence_id, CustodyEvent.action == "hash_check")
        .order_by(CustodyEvent.at.desc(), CustodyEvent.id.desc()).limit(1))
    _custody(db, None, evidence, "hash_check", "integrity_check", outcome=outcome)
    if outcome == "intact":
        return False
    audit.append(db, action="evidence.integrity_failed", outcome="failure",
                 org_id=evidence.org_id, object_type="evidence", object_id=evidence.id,
                 details={"check": outcome})
    log.error("evidence_integrity_failed", evidence_id=str(evidence.id), check=outcome)
    if previous == outcome:
        return False  # supervisors were told when it first failed
    supervisors = list(db.scalars(sa.select(StaffUser.id).where(
        StaffUser.org_id == evidence.org_id, StaffUser.role == Role.supervisor.value,
        StaffUser.is_active.is_(True))))
    notifications.notify(db, org_id=evidence.org_id, user_ids=supervisors,
                         kind=INTEGRITY_ALERT, object_type="evidence", object_id=evidence.id)
    return True


def sweep_storage(db: Session, storage: Storage, *, older_than: timedelta = ORPHAN_GRACE,
                  batch: int = 500) -> dict[str, int]:
    """Remove stored evidence objects (and previews) no row names (a process killed between
    storing a file and committing its row, a preview made twice at once), and abandoned
    partial writes, once they are older than ``older_than``. Never touches an object that
    has a row."""
    from app.evidence.previews import PREVIEW_PREFIX

    cutoff = utcnow() - older_than
    removed = 0
    for prefix, column in ((STORAGE_PREFIX, Evidence.storage_key),
                           (PREVIEW_PREFIX, EvidencePreview.storage_key)):

        def remove_orphans(candidates: list[str], column: Any = column) -> int:
            known = set(db.scalars(sa.select(column).where(column.in_(candidates))))
            return sum(storage.delete(key) for key in candidates if key not in known)

        pending: list[str] = []
        for stored in storage.objects(prefix):
            if stored.modified_at >= cutoff:
                continue
            pending.append(stored.key)
            if len(pending) >= batch:
                removed += remove_orphans(pending)
                pending = []
        if pending:
            removed += remove_orphans(pending)
    incomplete = storage.discard_incomplete(older_than)
    return {"orphans_removed": removed, "incomplete_removed": incomplete}

