"""Reports built by workers, and the agency keys that sign their manifests.

A :class:`Report` row is the request (kind and parameters), its progress while a worker
builds it (status, percent, step, the worker's claim and lease), and the result: where its
encrypted files are stored, their SHA-256 and the signed manifest. What the request says
about the client (the chosen records, the cover page's parties, court and case number) is
one ciphertext under the client's key (``parameters``). The manifest is kept in clear: it
holds ids, hashes, sizes and times only, and is what verification compares a file with —
also after the stored files have expired and been deleted.

A :class:`ReportSigningKey` is an agency's Ed25519 key for manifests: the public key in
clear (it is published), the private key sealed under a subkey of the master key, bound to
its row. At most one key per agency is current (``retired_at`` empty).
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.db import UTCDateTime, utcnow

KINDS = ("court_summary", "funder_aggregate")
# queued: waiting for a worker; building: a worker holds it (or held it, until its lease
# runs out); done: downloadable until expires_at; failed: says why; expired: files deleted.
STATES = ("queued", "building", "done", "failed", "expired")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN (" + ", ".join(f"'{value}'" for value in values) + ")"


class Report(SQLModel, table=True):
    """A requested report, its progress and (once done) its stored, signed result."""

    __tablename__ = "report"
    __table_args__ = (
        sa.CheckConstraint(_one_of("kind", KINDS), name="kind_known"),
        sa.CheckConstraint(_one_of("status", STATES), name="status_known"),
        sa.CheckConstraint("percent >= 0 AND percent <= 100", name="percent_range"),
        sa.CheckConstraint("kind != 'court_summary' OR client_id IS NOT NULL",
                           name="court_summary_has_client"),
        # What the sweep looks for: queued reports and builds whose lease ran out; and
        # what the expiry task looks for.
        sa.Index("ix_report_status_lease_expires_at", "status", "lease_expires_at"),
        sa.Index("ix_report_status_expires_at", "status", "expires_at"),
    )

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    org_id: UUID = Field(foreign_key="org.id", index=True)
    client_id: UUID | None = Field(default=None, foreign_key="client.id", index=True)
    kind: str = Field(max_length=32)
    # court_summary: encrypted JSON under the client's key; funder_aggregate: plain JSON
    # (a period and a grouping: nothing about anyone).
    parameters: str = Field(sa_type=sa.Text)
    requested_by: UUID = Field(foreign_key="staff_user.id")
    requested_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)

    status: str = Field(default="queued", max_length=16)
    percent: int = Field(default=0)
    step: str = Field(default="queued", max_length=32)
    # A machine code and a sentence for people; neither ever holds personal data.
    failure_code: str | None = Field(default=None, max_length=40)
    failure_detail: str | None = Field(default=None, max_length=500)

    attempts: int = Field(default=0)
    claim_token: str | None = Field(default=None, max_length=64)
    lease_expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)

    # The result: two objects (the PDF alone, and the ZIP bundle — or for funder_aggregate
    # the CSV, in bundle_key/bundle_sha256/bundle_size) encrypted with one streaming keyset
    # sealed under the client's key (funder_aggregate: the agency's key; it has no client).
    pdf_key: str | None = Field(default=None, max_length=200)
    bundle_key: str | None = Field(default=None, max_length=200)
    sealed_keyset: bytes | None = Field(default=None, sa_type=sa.LargeBinary)
    pdf_sha256: str | None = Field(default=None, max_length=64, index=True)
    pdf_size: int | None = Field(default=None, sa_type=sa.BigInteger)
    bundle_sha256: str | None = Field(default=None, max_length=64, index=True)
    bundle_size: int | None = Field(default=None, sa_type=sa.BigInteger)
    manifest: str | None = Field(default=None, sa_type=sa.Text)  # the exact signed bytes
    manifest_sha256: str | None = Field(default=None, max_length=64, index=True)
    signature: str | None = Field(default=None, max_length=200)  # base64 Ed25519
    signing_key_id: UUID | None = Field(default=None, foreign_key="report_signing_key.id")


class ReportSigningKey(SQLModel, table=True):
    """An agency's Ed25519 key for report manifests."""

    __tablename__ = "report_signing_key"
    __table_args__ = (
        sa.Index("uq_report_signing_key_current", "org_id", unique=True,
                 postgresql_where=sa.text("retired_at IS NULL"),
                 sqlite_where=sa.text("retired_at IS NULL")),
    )

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    org_id: UUID = Field(foreign_key="org.id", index=True)
    algorithm: str = Field(default="Ed25519", max_length=16)
    public_key: str = Field(sa_type=sa.Text)  # PEM (SubjectPublicKeyInfo)
    sealed_private_key: str = Field(sa_type=sa.Text)  # crypto.seal, bound to this row
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    retired_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
