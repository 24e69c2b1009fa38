"""Incidents: an immutable head row and append-only revisions.

An incident is never edited in place. :class:`Incident` says only that an incident of a
client exists (who first recorded it, when); what it says lives in
:class:`IncidentRevision` rows numbered 1, 2, 3 … per incident. A correction or a
retraction is the next revision; no row of these tables is ever updated or deleted (no
code path does it, and on PostgreSQL a trigger refuses it).

What stays in clear, and why: the occurrence window (``occurred_start``/``occurred_end``
in UTC, its ``occurred_precision`` and the client's IANA ``occurred_time_zone``) for
chronological listing, period filters and the timeline; the categories
(:class:`IncidentRevisionCategory`), ``children_present`` and ``weapons_involved`` for
aggregate reports; ``retracted``, revision numbers, editors and times for the history.
Everything else — place, the client's account, the advocate's observations, injuries,
medical care, witnesses, police details, the respondent's identifiers, the reason for a
revision — is ciphertext under the client's key, bound to this table, column and row.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.db import UTCDateTime, utcnow

CATEGORIES = (
    "physical", "sexual", "emotional_verbal", "threats", "stalking", "technology_facilitated",
    "financial", "property_damage", "protective_order_violation", "child_related",
)
PRECISIONS = ("exact", "date", "range")


class Incident(SQLModel, table=True):
    """That an incident of a client was recorded, by whom and when. Never changes."""

    __tablename__ = "incident"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    org_id: UUID = Field(foreign_key="org.id", index=True)
    client_id: UUID = Field(foreign_key="client.id", index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    created_by: UUID = Field(foreign_key="staff_user.id")


class IncidentRevision(SQLModel, table=True):
    """One revision of an incident: the whole record as it stood after that edit.

    ``content`` (JSON) and ``reason`` are ciphertexts under the client's key. Revision 1
    has no reason; every later one must say why it was made."""

    __tablename__ = "incident_revision"
    __table_args__ = (
        sa.UniqueConstraint("incident_id", "revision",
                            name="uq_incident_revision_incident_revision"),
        sa.CheckConstraint("revision >= 1", name="revision_positive"),
        sa.CheckConstraint("revision = 1 OR reason IS NOT NULL", name="reason_after_first"),
        sa.CheckConstraint("occurred_precision IN ('exact', 'date', 'range')",
                           name="occurred_precision_known"),
        sa.CheckConstraint("occurred_end IS NULL OR occurred_end >= occurred_start",
                           name="occurred_end_after_start"),
        sa.Index("ix_incident_revision_client_occurred", "client_id", "occurred_start"),
    )

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    org_id: UUID = Field(foreign_key="org.id", index=True)
    client_id: UUID = Field(foreign_key="client.id")
    incident_id: UUID = Field(foreign_key="incident.id", index=True)
    revision: int
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    created_by: UUID = Field(foreign_key="staff_user.id")
    retracted: bool = False
    occurred_start: datetime = Field(sa_type=UTCDateTime)
    occurred_end: datetime | None = Field(default=None, sa_type=UTCDateTime)
    occurred_precision: str = Field(max_length=8)
    occurred_time_zone: str = Field(max_length=64)
    children_present: bool | None = None
    weapons_involved: bool | None = None
    content: str = Field(sa_type=sa.Text)  # encrypted JSON
    reason: str | None = Field(default=None, sa_type=sa.Text)  # encrypted


class IncidentRevisionCategory(SQLModel, table=True):
    """The categories of one revision, a row each (at least one per revision), so reports
    count and lists filter with plain SQL on any database. Append-only like the revision."""

    __tablename__ = "incident_revision_category"
    __table_args__ = (
        sa.CheckConstraint(
            "category IN (" + ", ".join(f"'{c}'" for c in CATEGORIES) + ")",
            name="category_known"),
    )

    revision_id: UUID = Field(foreign_key="incident_revision.id", primary_key=True)
    category: str = Field(max_length=32, primary_key=True, index=True)
    org_id: UUID = Field(foreign_key="org.id", index=True)
