"""Webhook endpoints of partner apps, the events sent to them, deliveries and attempts.

Nothing personal is stored here: an event names its type and the id of its subject
(a referral); the partner fetches details with its own token.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.db import UTCDateTime, utcnow


class DeliveryState(StrEnum):
    pending = "pending"        # due at next_attempt_at
    sending = "sending"        # claimed by a worker until lease_expires_at
    succeeded = "succeeded"    # a 2xx answer was recorded: never sent again unless replayed
    failed = "failed"          # retries exhausted (or the endpoint was deleted)


class WebhookEndpoint(SQLModel, table=True):
    """An HTTPS address of a partner app that receives the event types it subscribed to."""

    __tablename__ = "webhook_endpoint"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    org_id: UUID = Field(foreign_key="org.id", index=True)
    app_id: UUID = Field(foreign_key="partner_app.id", index=True)
    url: str = Field(max_length=2048)
    event_types: str = Field(max_length=500)  # space-separated
    is_active: bool = Field(default=True)
    # The signing secret, sealed (AES-256-GCM) under a master-key subkey, bound to this row.
    sealed_secret: str = Field(max_length=255)
    secret_rotated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    deleted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class WebhookEvent(SQLModel, table=True):
    """Something that happened, once; its id is the ``webhook-id`` of every delivery."""

    __tablename__ = "webhook_event"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    org_id: UUID = Field(foreign_key="org.id", index=True)
    event_type: str = Field(max_length=64)
    subject_id: UUID
    occurred_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class WebhookDelivery(SQLModel, table=True):
    """One event for one endpoint: its schedule and its claim live here, not in the broker."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        sa.UniqueConstraint("endpoint_id", "event_id"),
        sa.Index("ix_webhook_delivery_state_next_attempt_at", "state", "next_attempt_at"),
        sa.Index("ix_webhook_delivery_state_lease_expires_at", "state", "lease_expires_at"),
    )

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    org_id: UUID = Field(foreign_key="org.id", index=True)
    endpoint_id: UUID = Field(foreign_key="webhook_endpoint.id")
    event_id: UUID = Field(foreign_key="webhook_event.id", index=True)
    state: str = Field(default=DeliveryState.pending, max_length=16)
    attempt_count: int = Field(default=0)
    # Attempts made since the last (re)start: drives the backoff; a replay resets it.
    retry_count: int = Field(default=0)
    next_attempt_at: datetime | None = Field(default_factory=utcnow, sa_type=UTCDateTime)
    claim_token: str | None = Field(default=None, max_length=64)
    lease_expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    replay_requested: bool = Field(default=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    succeeded_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    failed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class WebhookAttempt(SQLModel, table=True):
    """One try at sending a delivery: when, how long, and what came back (no body kept)."""

    __tablename__ = "webhook_attempt"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    delivery_id: UUID = Field(foreign_key="webhook_delivery.id", index=True)
    number: int
    started_at: datetime = Field(sa_type=UTCDateTime)
    duration_ms: int | None = Field(default=None)  # None: the worker vanished mid-attempt
    status_code: int | None = Field(default=None)
    error: str | None = Field(default=None, max_length=64)  # an error class, never a message
    succeeded: bool
    replay: bool = Field(default=False)
