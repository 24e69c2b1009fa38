"""Previews of image evidence: a reduced JPEG without the original's metadata, made once by
a worker after the evidence is received, and kept sealed beside the original.

A court summary shows each image exhibit reduced (at most 1400 px) with its metadata
stripped (a photo's EXIF can hold where it was taken). Reducing a photo costs about 60 ms
of CPU, so a summary of 200 pictures spent most of its exhibit step making them again at
every build. Now ``PREVIEW_TASK`` makes one when the file is received (queued by id after
the upload commits) and a build only reads it; a build still makes the preview itself for
an image that has none (received before this existed, or its task lost).

The preview is derived data, not evidence: the original's bytes and hash are untouched,
reports name the original by its SHA-256, and making a preview is not a custody event (no
person saw or moved the file). It is stored like the original — encrypted with Tink
streaming AEAD under the evidence's own keyset, sealed under the client's key — with its
own associated data, so an original cannot be passed off as a preview or the other way
round, and crypto-shredding the client makes it unreadable with everything else. A
preview is made only from bytes whose SHA-256 matches the record.
"""

from __future__ import annotations

import io
from typing import Any
from uuid import UUID, uuid4

import sqlalchemy as sa
import structlog
import tink
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from app.core import keys
from app.core.storage import (
    ObjectMissing,
    Storage,
    decrypting_reader,
    delete_on_rollback,
    encrypting_writer,
)
from app.db import Work, unit_of_work, utcnow
from app.evidence import service as evidence_service
from app.evidence.models import Evidence, EvidencePreview

log = structlog.get_logger("app.evidence.previews")


PREVIEW_TASK = "evidence.make_preview"
PREVIEW_PREFIX = "previews/"
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
PREVIEW_MAX_BYTES = 40 * 1024 * 1024  # larger images are listed in reports, not shown
PREVIEW_PIXELS = 1400  # the long side: about 200 dpi at the 178 mm a report prints it
PREVIEW_MAX_STORED = 8 * 1024 * 1024  # a stored preview larger than this is not read


def wanted(evidence: Evidence) -> bool:
    """Whether the evidence is an image small enough to be shown in a report."""
    return evidence.content_type in IMAGE_TYPES and evidence.size_bytes <= PREVIEW_MAX_BYTES


def reduce(content: bytes) -> bytes | None:
    """A JPEG of an image: at most ``PREVIEW_PIXELS`` on its long side, colour, turned as
    its EXIF orientation says, no metadata. None when the image does not open."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(content)) as image:
            image.seek(0)
            shown = (ImageOps.exif_transpose(image) or image).convert("RGB")
            shown.thumbnail((PREVIEW_PIXELS, PREVIEW_PIXELS))
            out = io.BytesIO()
            shown.save(out, "JPEG", quality=82, optimize=True)
            return out.getvalue()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None


def storage_key(org_id: UUID, evidence_id: UUID) -> str:
    # A new name each time one is made: two workers making the same preview never write
    # (or, rolling back, delete) each other's object; the loser's is deleted at once.
    return f"{PREVIEW_PREFIX}{org_id}/{evidence_id.hex[:2]}/{evidence_id}-{uuid4().hex[:12]}"


def associated_data(evidence_id: UUID) -> bytes:
    """Bound to the evidence, and different from the original's (its bare id)."""
    return b"preview:" + str(evidence_id).encode("ascii")


def make_preview(evidence_id: UUID, storage: Storage, *, work: Work | None = None) -> str:
    """Make and keep the preview of one piece of evidence. Returns what happened: ``made``,
    ``exists`` (made before), ``not_an_image`` (or too large to show), ``gone`` (no such
    evidence, or its client's key was shredded), ``unreadable`` (the stored file is
    missing, altered or does not match its SHA-256: the hash check reports that) or
    ``not_previewable`` (it does not open as an image). Safe to run twice at once.

    The database is not held while the file is read and reduced: the keyset is opened in
    a short read, the preview made with no session, and kept in a short write."""
    work = work or unit_of_work
    with work(reading=True) as db:
        evidence = db.get(Evidence, evidence_id)
        if evidence is None:
            return "gone"
        if db.get(EvidencePreview, evidence_id) is not None:
            return "exists"
        if not wanted(evidence):
            return "not_an_image"
        try:
            keyset = evidence_service.open_keyset(db, evidence)
        except keys.KeyDestroyed:
            return "gone"
        except keys.DecryptionError:
            return "unreadable"
        db.expunge(evidence)
    try:
        original = b"".join(evidence_service.whole_file(storage, evidence, keyset))
    except keys.DecryptionError:
        return "unreadable"
    reduced = reduce(original)
    del original
    if reduced is None:
        return "not_previewable"
    key = storage_key(evidence.org_id, evidence.id)
    with encrypting_writer(storage, key, keyset, associated_data(evidence.id)) as out:
        out.write(reduced)
    with work() as db:
        delete_on_rollback(db, storage, key)
        insert: Any = (postgresql_insert if db.get_bind().dialect.name == "postgresql"
                       else sqlite_insert)
        table = EvidencePreview.__table__  # a Core INSERT: the ORM's does not count rows
        kept = db.connection().execute(insert(table).values(
            evidence_id=evidence.id, org_id=evidence.org_id, storage_key=key,
            made_at=utcnow()).on_conflict_do_nothing(index_elements=["evidence_id"])
            .returning(table.c.evidence_id)).first() is not None  # type: ignore[attr-defined]
    if not kept:  # another worker's preview was kept first
        storage.delete(key)
        return "exists"
    return "made"


def kept_previews(db: Session, evidence_ids: list[UUID]) -> dict[UUID, str]:
    """The storage key of each kept preview among ``evidence_ids``."""
    if not evidence_ids:
        return {}
    rows = db.execute(sa.select(EvidencePreview.evidence_id, EvidencePreview.storage_key)
                      .where(EvidencePreview.evidence_id.in_(evidence_ids)))  # type: ignore[attr-defined]
    return {evidence_id: key for evidence_id, key in rows}


def read_preview(storage: Storage, evidence: Evidence, key: str | None,
                 keyset: tink.KeysetHandle) -> bytes | None:
    """The kept preview of the evidence stored under ``key``, or None when it has none or
    it does not open (the caller then makes one from the original). Needs no session."""
    if key is None:
        return None
    chunks: list[bytes] = []
    held = 0
    try:
        with decrypting_reader(storage, key, keyset,
                               associated_data(evidence.id)) as reader:
            # To its end: Tink checks the last segment's tag only once it is read.
            while (chunk := reader.read(1024 * 1024)) and held <= PREVIEW_MAX_STORED:
                chunks.append(chunk)
                held += len(chunk)
    except (ObjectMissing, OSError, tink.TinkError):
        log.warning("evidence_preview_unreadable", evidence_id=str(evidence.id))
        return None
    data = b"".join(chunks)
    if len(data) > PREVIEW_MAX_STORED or not data.startswith(b"\xff\xd8"):
        log.warning("evidence_preview_unreadable", evidence_id=str(evidence.id))
        return None
    return data
