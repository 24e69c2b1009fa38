"""Clients (the people advocates help), who works with them, and emergency access."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.db import UTCDateTime, utcnow


class Client(SQLModel, table=True):
    """A client's case. Every personal field is a ciphertext under the client's own key;
    only facts needed to find and route a case (number, status, dates) are plain."""

    __tablename__ = "client"
    __table_args__ = (sa.UniqueConstraint("org_id", "case_number"),)

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    org_id: UUID = Field(foreign_key="org.id", index=True)
    case_number: str = Field(max_length=20)
    status: str = Field(default="intake", max_length=16, index=True)
    closing_reason: str | None = Field(default=None, max_length=40)
    urgent: bool = Field(default=False, index=True)
    # Encrypted (see app.core.keys); None when the client did not give it.
    preferred_name: str | None = Field(default=None, sa_type=sa.Text)
    legal_name: str | None = Field(default=None, sa_type=sa.Text)
    aliases: str | None = Field(default=None, sa_type=sa.Text)
    date_of_birth: str | None = Field(default=None, sa_type=sa.Text)
    contact_details: str | None = Field(default=None, sa_type=sa.Text)
    address: str | None = Field(default=None, sa_type=sa.Text)
    notes: str | None = Field(default=None, sa_type=sa.Text)
    safe_contact: str | None = Field(default=None, sa_type=sa.Text)
    other_party: str | None = Field(default=None, sa_type=sa.Text)
    household: str | None = Field(default=None, sa_type=sa.Text)
    # Keyed blind index of the legal and preferred names, for exact-match search.
    name_index: str | None = Field(default=None, max_length=64, index=True)
    preferred_name_index: str | None = Field(default=None, max_length=64, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    created_by: UUID | None = Field(default=None, foreign_key="staff_user.id")
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    purged_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


# The caseload's order (urgent first, newest first, then id) within an agency, live clients
# only: a supervisor's first page reads 50 rows instead of sorting the agency. Partial on
# both databases, with the condition every read of clients has (``readable_clients``).
_LIVE = Client.purged_at.is_(None)  # type: ignore[union-attr]
sa.Index("ix_client_caseload", Client.org_id, Client.urgent.desc(),  # type: ignore[attr-defined]
         Client.created_at.desc(), Client.id,  # type: ignore[attr-defined]
         postgresql_where=_LIVE, sqlite_where=_LIVE)


class ClientAssignment(SQLModel, table=True):
    """An advocate working with a client: the client is in that advocate's caseload."""

    __tablename__ = "client_assignment"

    client_id: UUID = Field(foreign_key="client.id", primary_key=True)
    user_id: UUID = Field(foreign_key="staff_user.id", primary_key=True, index=True)
    org_id: UUID = Field(foreign_key="org.id", index=True)
    assigned_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    assigned_by: UUID | None = Field(default=None, foreign_key="staff_user.id")


class BreakGlassGrant(SQLModel, table=True):
    """Emergency access to a client outside one's caseload: time-limited, with a reason,
    flagged to supervisors and audited."""

    __tablename__ = "break_glass_grant"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    org_id: UUID = Field(foreign_key="org.id", index=True)
    user_id: UUID = Field(foreign_key="staff_user.id", index=True)
    client_id: UUID = Field(foreign_key="client.id", index=True)
    reason: str = Field(sa_type=sa.Text)  # encrypted under the client's key
    granted_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)


class CaseNumberCounter(SQLModel, table=True):
    """The last case number handed out per org and year (``2026-000123``)."""

    __tablename__ = "case_number_counter"

    org_id: UUID = Field(foreign_key="org.id", primary_key=True)
    year: int = Field(primary_key=True)
    last: int = Field(default=0)
