"""Evidence files and their chain of custody: both append-only.

An :class:`Evidence` row says that a file was received for an incident, what it is (type,
size, SHA-256 of the original bytes) and where its ciphertext is stored; it is written
once and never changed. What a person said about the file — its original name, the
description, who captured it and on what device — is ciphertext under the client's key,
bound to this table, column and row. The file itself is encrypted with a streaming
keyset of its own (``sealed_keyset``, sealed under the client's key): shredding the
client's key makes the stored file unreadable as well.

Every upload, view, download, export and hash check is a :class:`CustodyEvent`; no code
path updates or deletes one, and on PostgreSQL and SQLite triggers refuse it (migration).
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.db import UTCDateTime, utcnow

CUSTODY_ACTIONS = ("upload", "view", "download", "export", "hash_check")
# success: the action happened; not_modified: a download answered 304 (the caller already
# held these bytes); intact / mismatch / unreadable: the outcome of a hash check.
CUSTODY_OUTCOMES = ("success", "not_modified", "intact", "mismatch", "unreadable")
# Why the evidence was accessed: a fixed vocabulary, so no personal data rides in a URL.
PURPOSES = ("case_work", "client_request", "court_preparation", "court_submission",
            "legal_review", "supervision", "records_request", "integrity_check", "other")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN (" + ", ".join(f"'{value}'" for value in values) + ")"


class Evidence(SQLModel, table=True):
    """A file kept as evidence for an incident. Never changes after it is written."""

    __tablename__ = "evidence"
    __table_args__ = (
        sa.CheckConstraint("size_bytes > 0", name="size_positive"),
        sa.CheckConstraint("length(sha256) = 64", name="sha256_hex"),
    )

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    org_id: UUID = Field(foreign_key="org.id", index=True)
    client_id: UUID = Field(foreign_key="client.id", index=True)
    incident_id: UUID = Field(foreign_key="incident.id", index=True)
    storage_key: str = Field(max_length=200, unique=True)
    sealed_keyset: bytes = Field(sa_type=sa.LargeBinary)
    content_type: str = Field(max_length=100)
    size_bytes: int = Field(sa_type=sa.BigInteger)
    sha256: str = Field(max_length=64, index=True)
    original_filename: str | None = Field(default=None, sa_type=sa.Text)  # encrypted
    description: str | None = Field(default=None, sa_type=sa.Text)  # encrypted
    source: str | None = Field(default=None, sa_type=sa.Text)  # encrypted JSON
    captured_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    uploaded_by: UUID = Field(foreign_key="staff_user.id")
    uploaded_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)


class CustodyEvent(SQLModel, table=True):
    """Who did what with a piece of evidence, when, and why. Append-only."""

    __tablename__ = "evidence_custody_event"
    __table_args__ = (
        sa.CheckConstraint(_one_of("action", CUSTODY_ACTIONS), name="action_known"),
        sa.CheckConstraint(_one_of("outcome", CUSTODY_OUTCOMES), name="outcome_known"),
        sa.CheckConstraint("purpose IS NULL OR " + _one_of("purpose", PURPOSES),
                           name="purpose_known"),
        sa.Index("ix_evidence_custody_event_evidence_action_at", "evidence_id", "action", "at"),
    )

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    org_id: UUID = Field(foreign_key="org.id", index=True)
    evidence_id: UUID = Field(foreign_key="evidence.id")
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    actor_type: str = Field(max_length=20)  # user | partner_app | system
    actor_id: UUID | None = Field(default=None)
    action: str = Field(max_length=16)
    purpose: str | None = Field(default=None, max_length=32)
    outcome: str = Field(default="success", max_length=16)
    byte_range: str | None = Field(default=None, max_length=48)  # "first-last" of a 206
    request_id: str | None = Field(default=None, max_length=128)


class EvidencePreview(SQLModel, table=True):
    """The sealed preview of an image (app.evidence.previews), once a worker has made it.
    Apart from the evidence row, which is append-only; one per piece of evidence."""

    __tablename__ = "evidence_preview"

    evidence_id: UUID = Field(foreign_key="evidence.id", primary_key=True)
    org_id: UUID = Field(foreign_key="org.id", index=True)
    storage_key: str = Field(max_length=200, unique=True)
    made_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
