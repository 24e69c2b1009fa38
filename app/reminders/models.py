"""Reminders, their deliveries, per-org rules and per-user notification preferences.

The database holds the schedule: a reminder's ``due_at`` (UTC) and its ``state`` decide
when it is delivered, never a broker ETA. Rule-generated reminders also keep the local
wall time and the IANA zone they were set in (``local_date``, ``local_time``,
``time_zone``), so each occurrence's UTC instant is computed in that zone and a 9:00
reminder stays at 9:00 across daylight-saving changes.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.db import UTCDateTime, utcnow


class ReminderState:
    scheduled = "scheduled"  # waiting for due_at
    sending = "sending"  # claimed by a worker until claimed_until
    delivered = "delivered"
    held = "held"  # a message to the client that its safe-contact preferences do not allow
    completed = "completed"
    cancelled = "cancelled"


REMINDER_STATES = ("scheduled", "sending", "delivered", "held", "completed", "cancelled")


class Reminder(SQLModel, table=True):
    """Something due for a staff member (or, where the client allows it, for the client).

    A generated reminder names its source (``source_kind``, ``source_id``) and the rule
    occurrence (``rule_key``, e.g. ``court_date:7d``): one row per occurrence, moved when
    the source's date moves and cancelled when the source closes. ``round`` counts the
    times the reminder was (re)scheduled after a delivery, so each round is delivered once.
    """

    __tablename__ = "reminder"
    __table_args__ = (
        sa.UniqueConstraint("source_kind", "source_id", "rule_key",
                            name="uq_reminder_source_rule"),
        sa.Index("ix_reminder_state_due_at", "state", "due_at"),
        sa.Index("ix_reminder_org_id_due_at", "org_id", "due_at"),
        sa.CheckConstraint("audience IN ('staff', 'client')", name="audience_known"),
    )

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    org_id: UUID = Field(foreign_key="org.id", index=True)
    client_id: UUID | None = Field(default=None, foreign_key="client.id", index=True)
    assignee_id: UUID = Field(foreign_key="staff_user.id", index=True)
    kind: str = Field(max_length=40)
    audience: str = Field(default="staff", max_length=8)
    channel: str | None = Field(default=None, max_length=8)  # client audience: email|sms|phone
    note: str | None = Field(default=None, sa_type=sa.Text)  # encrypted when client_id is set
    source_kind: str | None = Field(default=None, max_length=32)
    source_id: UUID | None = Field(default=None)
    rule_key: str | None = Field(default=None, max_length=40)
    due_at: datetime = Field(sa_type=UTCDateTime)
    local_date: date | None = Field(default=None)
    local_time: str | None = Field(default=None, max_length=5)  # HH:MM
    time_zone: str | None = Field(default=None, max_length=64)
    repeat_daily: bool = Field(default=False)
    state: str = Field(default=ReminderState.scheduled, max_length=12)
    round: int = Field(default=1)
    held_reason: str | None = Field(default=None, max_length=32)
    claim_token: str | None = Field(default=None, max_length=48)
    claimed_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Until when the message a sweep enqueued for it may still be waiting in the broker.
    queued_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    attempts: int = Field(default=0)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    completed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    created_by: UUID | None = Field(default=None, foreign_key="staff_user.id")
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ReminderDelivery(SQLModel, table=True):
    """One delivery of one round of a reminder on one channel: the idempotency key.

    ``in_app`` rows are written in the same transaction as the notification. For email,
    the row is committed as ``sending`` before the SMTP conversation and ``sent`` after;
    ``waiting`` rows wait for the end of quiet hours or the daily digest (``not_before``).
    """

    __tablename__ = "reminder_delivery"
    __table_args__ = (
        sa.UniqueConstraint("reminder_id", "round", "channel",
                            name="uq_reminder_delivery_reminder_round_channel"),
        sa.Index("ix_reminder_delivery_state_not_before", "state", "not_before"),
    )

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    org_id: UUID = Field(foreign_key="org.id", index=True)
    reminder_id: UUID = Field(foreign_key="reminder.id", index=True)
    round: int
    channel: str = Field(max_length=16)  # in_app | email | digest | client_email | client_sms …
    recipient_id: UUID | None = Field(default=None, foreign_key="staff_user.id")
    state: str = Field(max_length=16)  # waiting | sending | sent | needs_person | skipped
    not_before: datetime | None = Field(default=None, sa_type=UTCDateTime)
    claimed_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    queued_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    attempts: int = Field(default=0)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ReminderSettings(SQLModel, table=True):
    """An org's reminder rules and lead times (JSON, validated by the schema)."""

    __tablename__ = "reminder_settings"

    org_id: UUID = Field(foreign_key="org.id", primary_key=True)
    rules: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_by: UUID | None = Field(default=None, foreign_key="staff_user.id")


class NotificationPreference(SQLModel, table=True):
    """A staff member's email preferences: quiet hours (no email then; sent after) and a
    daily digest instead of one email per reminder."""

    __tablename__ = "notification_preference"

    user_id: UUID = Field(foreign_key="staff_user.id", primary_key=True)
    org_id: UUID = Field(foreign_key="org.id", index=True)
    email_enabled: bool = Field(default=True)
    time_zone: str = Field(default="UTC", max_length=64)
    quiet_start: str | None = Field(default=None, max_length=5)  # HH:MM
    quiet_end: str | None = Field(default=None, max_length=5)
    daily_digest: bool = Field(default=False)
    digest_time: str = Field(default="08:00", max_length=5)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
