"""Service contacts: one service given to a client, counted for funders."""

from __future__ import annotations

from datetime import date, datetime
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.db import UTCDateTime, utcnow


class ServiceContact(SQLModel, table=True):
    """One contact or service (a hotline call, a shelter night, court accompaniment).

    Only what funder counts need is plain — kind, date, duration, staff member — so the
    notes can be purged on a retention schedule while the counts stay. Notes are a
    ciphertext under the client's key."""

    __tablename__ = "service_contact"
    __table_args__ = (
        sa.CheckConstraint("duration_minutes >= 0 AND duration_minutes <= 1440",
                           name="duration_minutes"),
        sa.Index("ix_service_contact_org_id_occurred_on", "org_id", "occurred_on"),
    )

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    org_id: UUID = Field(foreign_key="org.id", index=True)
    client_id: UUID = Field(foreign_key="client.id", index=True)
    kind: str = Field(max_length=32, index=True)
    occurred_on: date
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    duration_minutes: int = Field(default=0)
    staff_user_id: UUID = Field(foreign_key="staff_user.id", index=True)
    notes: str | None = Field(default=None, sa_type=sa.Text)  # encrypted
    recorded_by: UUID = Field(foreign_key="staff_user.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
