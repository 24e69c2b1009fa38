"""Notifications to staff (in the dashboard; email comes with reminders)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID, uuid4

from sqlmodel import Field, SQLModel

from app.db import UTCDateTime, utcnow


class Notification(SQLModel, table=True):
    """Something a staff member should know. It names a kind and an object by id only:
    the text is composed when shown, so no client detail is ever stored or sent here."""

    __tablename__ = "notification"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    org_id: UUID = Field(foreign_key="org.id", index=True)
    user_id: UUID = Field(foreign_key="staff_user.id", index=True)
    kind: str = Field(max_length=40)
    object_type: str | None = Field(default=None, max_length=40)
    object_id: UUID | None = Field(default=None)
    actor_id: UUID | None = Field(default=None)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    read_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
