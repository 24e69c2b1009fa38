"""Protective orders and court dates of a client.

What reminders and the timeline need stays plain and indexed (type, status, dates);
everything that could name the client or the case (the court, the court's case number,
the order's conditions, notes, a hearing's outcome) is a ciphertext under the client's
key, bound to its table, column and row."""

from __future__ import annotations

from datetime import date, datetime
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.db import UTCDateTime, utcnow


class ProtectiveOrder(SQLModel, table=True):
    """A protective, restraining or no-contact order the client asked for or holds.

    ``issued_on`` is empty until a court issues the order; ``expires_on`` is empty for
    an order without an end date. Reminders of expiry read the plain dates."""

    __tablename__ = "protective_order"
    __table_args__ = (
        sa.CheckConstraint("expires_on IS NULL OR issued_on IS NULL OR expires_on >= issued_on",
                           name="expires_after_issue"),
        sa.Index("ix_protective_order_org_id_expires_on", "org_id", "expires_on"),
    )

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    org_id: UUID = Field(foreign_key="org.id", index=True)
    client_id: UUID = Field(foreign_key="client.id", index=True)
    order_type: str = Field(max_length=32)
    status: str = Field(max_length=16, index=True)
    issued_on: date | None = Field(default=None, index=True)
    expires_on: date | None = Field(default=None, index=True)
    court: str | None = Field(default=None, sa_type=sa.Text)  # encrypted
    case_number: str | None = Field(default=None, sa_type=sa.Text)  # encrypted
    conditions: str | None = Field(default=None, sa_type=sa.Text)  # encrypted JSON list
    notes: str | None = Field(default=None, sa_type=sa.Text)  # encrypted
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    created_by: UUID = Field(foreign_key="staff_user.id")
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_by: UUID = Field(foreign_key="staff_user.id")


class CourtDate(SQLModel, table=True):
    """A hearing the client has (or had): when, in which time zone, what kind, how it went.

    ``starts_at`` is stored in UTC with the IANA name of the court's time zone, so the
    local time can be shown and reminders computed without guessing offsets."""

    __tablename__ = "court_date"
    __table_args__ = (
        sa.Index("ix_court_date_org_id_starts_at", "org_id", "starts_at"),
        sa.Index("ix_court_date_client_id_starts_at", "client_id", "starts_at"),
    )

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    org_id: UUID = Field(foreign_key="org.id", index=True)
    client_id: UUID = Field(foreign_key="client.id")
    kind: str = Field(max_length=32)
    starts_at: datetime = Field(sa_type=UTCDateTime, index=True)
    time_zone: str = Field(max_length=64)
    status: str = Field(max_length=16, index=True)
    protective_order_id: UUID | None = Field(default=None, foreign_key="protective_order.id",
                                             index=True)
    court: str | None = Field(default=None, sa_type=sa.Text)  # encrypted
    notes: str | None = Field(default=None, sa_type=sa.Text)  # encrypted
    outcome: str | None = Field(default=None, sa_type=sa.Text)  # encrypted
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    created_by: UUID = Field(foreign_key="staff_user.id")
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_by: UUID = Field(foreign_key="staff_user.id")
