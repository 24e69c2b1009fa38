"""Webhooks: endpoints of partner apps, events, and their signed, retried delivery."""

from __future__ import annotations

from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.orm import Session

from app.core.deferred import enqueue_after_commit
from app.db import utcnow
from app.identity.models import PartnerApp
from app.webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookEvent

# Every event type a partner can subscribe to; a new one is added here (and documented).
EVENT_TYPES: tuple[str, ...] = (
    "referral.sent",
    "referral.updated",
    "referral.consent_revoked",
)

DELIVER_TASK = "webhooks.deliver"  # same name as workers.celery_app.WEBHOOK_DELIVER_TASK


def subscribed_endpoints(db: Session, *, org_id: UUID, event_type: str) -> list[WebhookEndpoint]:
    """Active endpoints of the org's active partner apps that asked for ``event_type``."""
    rows = db.scalars(
        sa.select(WebhookEndpoint)
        .join(PartnerApp, PartnerApp.id == WebhookEndpoint.app_id)
        .where(WebhookEndpoint.org_id == org_id, WebhookEndpoint.is_active.is_(True),
               WebhookEndpoint.deleted_at.is_(None), PartnerApp.is_active.is_(True),
               PartnerApp.org_id == org_id)
        .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
    ).all()
    return [row for row in rows if event_type in row.event_types.split()]


def emit(db: Session, *, org_id: UUID, event_type: str, subject_id: UUID) -> None:
    """Record one event and a pending delivery per subscribed endpoint of the org's partner
    apps; the deliveries are sent by Celery once the caller's transaction commits."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    event = WebhookEvent(org_id=org_id, event_type=event_type, subject_id=subject_id,
                         occurred_at=utcnow())
    db.add(event)
    endpoints = subscribed_endpoints(db, org_id=org_id, event_type=event_type)
    deliveries = [WebhookDelivery(org_id=org_id, endpoint_id=endpoint.id, event_id=event.id,
                                  next_attempt_at=event.occurred_at)
                  for endpoint in endpoints]
    db.add_all(deliveries)
    db.flush()
    for delivery in deliveries:
        enqueue_after_commit(db, DELIVER_TASK, delivery.id)
