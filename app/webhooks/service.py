"""Webhooks: endpoints of partner apps, events, and their signed, retried delivery.

Delivery is at-least-once over the network and exactly-once in our records: a delivery
row is claimed atomically (state ``sending``, a claim token and a lease) before anything
is sent, its result is written only by the claim that holds it, and a delivery marked
``succeeded`` is never claimed again unless its partner asks for a replay. The schedule
(``next_attempt_at``) lives in the database: a beat task finds what is due and enqueues
it by id, so no long ETA waits in the broker, and a worker that dies mid-attempt leaves
a lease that expires and makes the delivery due again.
"""

from __future__ import annotations

import json
import random
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.orm import Session

from app.core import access, audit, crypto
from app.core.access import Actor
from app.core.deferred import enqueue_after_commit
from app.core.errors import Conflict, Forbidden, Invalid, NotFound
from app.core.pagination import PageParams, SortKey, paginate
from app.db import utcnow
from app.identity.models import PartnerApp
from app.settings import Settings, get_settings
from app.webhooks import signing, targets
from app.webhooks.models import (
    DeliveryState,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)

# Every event type a partner can subscribe to; a new one is added here (and documented).
# The payload names the subject by ``<first part of the type>_id``: "referral_id".
EVENT_TYPES: tuple[str, ...] = (
    "referral.sent",
    "referral.updated",
    "referral.consent_revoked",
)

DELIVER_TASK = "webhooks.deliver"  # same name as workers.celery_app.WEBHOOK_DELIVER_TASK
READ_SCOPE = "referrals:read"

# Waits after each failed attempt (before jitter): eight attempts over about 44 hours,
# more than a day even with the jitter taken off.
RETRY_DELAYS: tuple[timedelta, ...] = (
    timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=2),
    timedelta(hours=6), timedelta(hours=12), timedelta(hours=24),
)
JITTER = 0.1  # each wait is stretched or shrunk by up to 10 % so retries do not bunch up
# How long a claim holds a delivery. Longer than an attempt can take (10 s) plus the
# task's hard time limit (workers.celery_app), so a live worker never loses its claim.
LEASE = timedelta(seconds=60)

_D = WebhookDelivery.__table__.c
_E = WebhookEndpoint.__table__.c


def _field_error(field: str, message: str, kind: str) -> dict[str, str]:
    return {"field": field, "location": "body", "message": message, "type": kind}


# --- who may manage endpoints ------------------------------------------------------------


def _require_partner(actor: Actor) -> None:
    """Partner apps with ``referrals:read`` manage their own endpoints; staff do not."""
    if not actor.is_partner:
        raise Forbidden("Webhook endpoints belong to partner apps; staff cannot manage them.",
                        audit={"action": "webhooks:manage"})
    access.require(actor, READ_SCOPE)


def readable_endpoints(actor: Actor) -> sa.Select[Any]:
    """The calling app's own endpoints (deleted ones are gone)."""
    return access.in_org(sa.select(WebhookEndpoint), WebhookEndpoint, actor).where(
        WebhookEndpoint.app_id == actor.id, WebhookEndpoint.deleted_at.is_(None))


def get_endpoint(db: Session, actor: Actor, endpoint_id: UUID, *,
                 for_update: bool = False) -> WebhookEndpoint:
    """One of the calling app's endpoints; another app's is not found (404)."""
    _require_partner(actor)
    query = readable_endpoints(actor).where(WebhookEndpoint.id == endpoint_id)
    if for_update:
        query = query.with_for_update()
    endpoint = db.scalars(query).first()
    if endpoint is None:
        raise NotFound("No such webhook endpoint.")
    return endpoint


# --- validation ----------------------------------------------------------------------------


def check_url(url: str, settings: Settings | None = None) -> str:
    """The URL if webhooks may go there now (https, a host resolving to public addresses
    only); otherwise a 422 naming ``url``."""
    try:
        targets.resolve_target(url, settings or get_settings())
    except targets.TargetRefused as exc:
        raise Invalid(exc.message, errors=[_field_error("url", exc.message, "url")]) from exc
    return url


def check_event_types(event_types: list[str]) -> list[str]:
    unknown = [t for t in event_types if t not in EVENT_TYPES]
    if unknown or not event_types:
        message = ("Choose at least one event type." if not event_types else
                   f"Unknown event type; known: {', '.join(EVENT_TYPES)}.")
        raise Invalid(message, errors=[_field_error("event_types", message, "event_type")])
    return list(dict.fromkeys(event_types))


# --- endpoints -----------------------------------------------------------------------------


def _seal_secret(endpoint_id: UUID, secret: str) -> str:
    return crypto.seal(secret, table="webhook_endpoint", column="sealed_secret",
                       row_id=str(endpoint_id))


def _open_secret(endpoint: WebhookEndpoint) -> str:
    return crypto.unseal(endpoint.sealed_secret, table="webhook_endpoint",
                         column="sealed_secret", row_id=str(endpoint.id))


def create_endpoint(db: Session, actor: Actor, *, url: str,
                    event_types: list[str]) -> tuple[WebhookEndpoint, str]:
    """Register an endpoint of the calling app; returns it and its signing secret (shown
    this once)."""
    _require_partner(actor)
    chosen = check_event_types(event_types)
    check_url(url)
    secret = signing.new_secret()
    endpoint = WebhookEndpoint(org_id=actor.org_id, app_id=actor.id, url=url,
                               event_types=" ".join(chosen), sealed_secret="")
    endpoint.sealed_secret = _seal_secret(endpoint.id, secret)
    db.add(endpoint)
    db.flush()
    audit.record(db, actor, "webhook_endpoint.created", endpoint,
                 details={"event_types": endpoint.event_types})
    return endpoint, secret


def list_endpoints(db: Session, actor: Actor,
                   page: PageParams) -> tuple[list[WebhookEndpoint], str | None]:
    _require_partner(actor)
    return paginate(db, readable_endpoints(actor), listing="webhook-endpoints",
                    keys=[SortKey(WebhookEndpoint.created_at), SortKey(WebhookEndpoint.id)],
                    params=page)


def update_endpoint(db: Session, actor: Actor, endpoint_id: UUID, *, url: str | None = None,
                    event_types: list[str] | None = None,
                    is_active: bool | None = None) -> WebhookEndpoint:
    """Change an endpoint's URL (checked again), event types or whether it receives."""
    endpoint = get_endpoint(db, actor, endpoint_id, for_update=True)
    changed: list[str] = []
    if event_types is not None:
        endpoint.event_types = " ".join(check_event_types(event_types))
        changed.append("event_types")
    if url is not None:
        endpoint.url = check_url(url)
        changed.append("url")
    if is_active is not None:
        endpoint.is_active = is_active
        changed.append("is_active")
    endpoint.updated_at = utcnow()
    db.flush()
    audit.record(db, actor, "webhook_endpoint.updated", endpoint,
                 details={"fields": " ".join(changed)})
    return endpoint


def delete_endpoint(db: Session, actor: Actor, endpoint_id: UUID) -> None:
    """Stop and remove an endpoint; deliveries still waiting for it are marked failed
    (their history stays)."""
    endpoint = get_endpoint(db, actor, endpoint_id, for_update=True)
    now = utcnow()
    endpoint.is_active = False
    endpoint.deleted_at = endpoint.updated_at = now
    db.execute(sa.update(WebhookDelivery.__table__)
               .where(_D.endpoint_id == endpoint.id,
                      _D.state.in_([DeliveryState.pending, DeliveryState.sending]))
               .values(state=DeliveryState.failed, failed_at=now, next_attempt_at=None,
                       claim_token=None, lease_expires_at=None))
    db.flush()
    audit.record(db, actor, "webhook_endpoint.deleted", endpoint)


def rotate_secret(db: Session, actor: Actor, endpoint_id: UUID) -> tuple[WebhookEndpoint, str]:
    """A new signing secret (shown this once); the old one signs nothing from now on."""
    endpoint = get_endpoint(db, actor, endpoint_id, for_update=True)
    secret = signing.new_secret()
    endpoint.sealed_secret = _seal_secret(endpoint.id, secret)
    endpoint.secret_rotated_at = endpoint.updated_at = utcnow()
    db.flush()
    audit.record(db, actor, "webhook_endpoint.secret_rotated", endpoint)
    return endpoint, secret


# --- events --------------------------------------------------------------------------------


def subscribed_endpoints(db: Session, *, org_id: UUID, app_id: UUID,
                         event_type: str) -> list[WebhookEndpoint]:
    """Active endpoints of one active partner app of the org that asked for
    ``event_type``."""
    rows = db.scalars(
        sa.select(WebhookEndpoint)
        .join(PartnerApp, PartnerApp.id == WebhookEndpoint.app_id)
        .where(WebhookEndpoint.org_id == org_id, WebhookEndpoint.app_id == app_id,
               WebhookEndpoint.is_active.is_(True), WebhookEndpoint.deleted_at.is_(None),
               PartnerApp.is_active.is_(True), PartnerApp.org_id == org_id)
        .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
    ).all()
    return [row for row in rows if event_type in row.event_types.split()]


def emit(db: Session, *, org_id: UUID, app_id: UUID, event_type: str,
         subject_id: UUID) -> None:
    """Record one event and a pending delivery per subscribed endpoint of ``app_id``, the
    partner app the subject concerns (a referral's recipient) — never another app of the
    org, which has no business knowing the subject exists. The deliveries are sent by
    Celery once the caller's transaction commits."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    event = WebhookEvent(org_id=org_id, event_type=event_type, subject_id=subject_id,
                         occurred_at=utcnow())
    db.add(event)
    endpoints = subscribed_endpoints(db, org_id=org_id, app_id=app_id, event_type=event_type)
    deliveries = [WebhookDelivery(org_id=org_id, endpoint_id=endpoint.id, event_id=event.id,
                                  next_attempt_at=event.occurred_at)
                  for endpoint in endpoints]
    db.add_all(deliveries)
    db.flush()
    for delivery in deliveries:
        enqueue_after_commit(db, DELIVER_TASK, delivery.id)


def payload(event: WebhookEvent) -> bytes:
    """The body of every delivery of ``event``: ids, type and time, nothing personal."""
    subject_key = event.event_type.split(".", 1)[0] + "_id"
    document = {
        "id": str(event.id),
        "type": event.event_type,
        "timestamp": event.occurred_at.isoformat().replace("+00:00", "Z"),
        "data": {subject_key: str(event.subject_id)},
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


# --- claiming and sending ------------------------------------------------------------------


def _due(now: datetime) -> sa.ColumnElement[bool]:
    return sa.or_(
        sa.and_(_D.state == DeliveryState.pending, _D.next_attempt_at <= now),
        # A claim whose worker vanished: the lease ran out, so it is due again.
        sa.and_(_D.state == DeliveryState.sending, _D.lease_expires_at <= now),
    )


def _deliverable() -> sa.ColumnElement[bool]:
    app = PartnerApp.__table__.c
    return sa.exists().where(_E.id == _D.endpoint_id, _E.is_active.is_(True),
                             _E.deleted_at.is_(None), app.id == _E.app_id,
                             app.is_active.is_(True))


def due_delivery_ids(db: Session, *, now: datetime | None = None,
                     limit: int = 500) -> list[UUID]:
    """Deliveries due now (their time has come, or their claim's lease ran out)."""
    now = now or utcnow()
    return list(db.scalars(
        sa.select(_D.id).where(_due(now), _deliverable())
        .order_by(sa.func.coalesce(_D.next_attempt_at, _D.lease_expires_at), _D.id)
        .limit(limit)))


@dataclass(frozen=True)
class Claim:
    """A delivery this worker holds until ``lease_expires_at``: what to send and where.
    Held in memory only (it carries the signing secret)."""

    delivery_id: UUID
    token: str
    attempt_number: int
    retry_count: int
    replay: bool
    claimed_at: datetime
    url: str
    secret: str
    message_id: str
    body: bytes

    def __repr__(self) -> str:  # never the secret, never the URL
        return f"Claim(delivery_id={self.delivery_id}, attempt={self.attempt_number})"


def _next_attempt(retry_count: int, now: datetime) -> datetime | None:
    """When to try again after ``retry_count`` failed attempts; None once exhausted."""
    if retry_count > len(RETRY_DELAYS):
        return None
    delay = RETRY_DELAYS[retry_count - 1]
    return now + delay * random.uniform(1 - JITTER, 1 + JITTER)  # noqa: S311 - not a secret


def claim_delivery(db: Session, delivery_id: UUID, *, now: datetime | None = None
                   ) -> Claim | None:
    """Take a due delivery for one attempt, atomically: None if it is not due, not
    deliverable, or another worker holds or just took it. The caller commits before
    sending. An expired claim found here is recorded as a lost attempt (worker gone)."""
    now = now or utcnow()
    table = WebhookDelivery.__table__
    conditions = [_D.id == delivery_id, _due(now), _deliverable()]
    seen_query = sa.select(_D.state, _D.attempt_count, _D.retry_count, _D.last_attempt_at,
                           _D.replay_requested, _D.endpoint_id, _D.event_id).where(*conditions)
    if db.get_bind().dialect.name == "postgresql":
        # A row another worker has locked is skipped at once, not waited for.
        seen_query = seen_query.with_for_update(skip_locked=True, of=table)
    seen = db.execute(seen_query).first()
    if seen is None:
        return None
    lost = seen.state == DeliveryState.sending
    retry_count = seen.retry_count + (1 if lost else 0)
    if lost and _next_attempt(retry_count, now) is None:
        # The worker that held the last allowed attempt vanished: give up, as after a failure.
        _record_lost_attempt(db, delivery_id, seen, now)
        db.execute(sa.update(table).where(*conditions, _D.attempt_count == seen.attempt_count)
                   .values(state=DeliveryState.failed, failed_at=now, retry_count=retry_count,
                           claim_token=None, lease_expires_at=None, next_attempt_at=None))
        return None
    token = secrets.token_urlsafe(24)
    # The same conditions again, and the attempt count seen: of two workers that read the
    # row at once (SQLite), only the first UPDATE matches.
    claimed = db.execute(
        sa.update(table)
        .where(*conditions, _D.state == seen.state, _D.attempt_count == seen.attempt_count)
        .values(state=DeliveryState.sending, claim_token=token, lease_expires_at=now + LEASE,
                attempt_count=seen.attempt_count + 1, retry_count=retry_count,
                last_attempt_at=now)
        .returning(_D.id)
    ).first()
    if claimed is None:
        return None
    if lost:
        _record_lost_attempt(db, delivery_id, seen, now)
    endpoint = db.get(WebhookEndpoint, seen.endpoint_id)
    event = db.get(WebhookEvent, seen.event_id)
    assert endpoint is not None and event is not None
    return Claim(delivery_id=delivery_id, token=token, attempt_number=seen.attempt_count + 1,
                 retry_count=retry_count, replay=bool(seen.replay_requested), claimed_at=now,
                 url=endpoint.url, secret=_open_secret(endpoint), message_id=str(event.id),
                 body=payload(event))


def _record_lost_attempt(db: Session, delivery_id: UUID, seen: Any, now: datetime) -> None:
    db.add(WebhookAttempt(delivery_id=delivery_id, number=seen.attempt_count,
                          started_at=seen.last_attempt_at or now, duration_ms=None,
                          status_code=None, error="WorkerLost", succeeded=False,
                          replay=bool(seen.replay_requested)))


def send(claim: Claim, settings: Settings | None = None) -> targets.SendOutcome:
    """Sign and POST a claimed delivery (no database: run it outside any transaction)."""
    timestamp = int(utcnow().timestamp())
    headers = signing.headers(claim.secret, message_id=claim.message_id, timestamp=timestamp,
                              body=claim.body)
    return targets.post(claim.url, headers=headers, body=claim.body,
                        settings=settings or get_settings())


def record_attempt(db: Session, claim: Claim, outcome: targets.SendOutcome, *,
                   now: datetime | None = None) -> str:
    """Record the attempt and move the delivery on: succeeded, retried later, or failed.
    Only the claim that holds the delivery moves it; returns its state afterwards
    (``lost`` when the claim had run out and someone else took over)."""
    now = now or utcnow()
    db.add(WebhookAttempt(delivery_id=claim.delivery_id, number=claim.attempt_number,
                          started_at=claim.claimed_at, duration_ms=outcome.duration_ms,
                          status_code=outcome.status_code, error=outcome.error,
                          succeeded=outcome.succeeded, replay=claim.replay))
    table = WebhookDelivery.__table__
    held = [_D.id == claim.delivery_id, _D.claim_token == claim.token,
            _D.state == DeliveryState.sending]
    done = {"claim_token": None, "lease_expires_at": None}
    if outcome.succeeded:
        values = done | {"state": DeliveryState.succeeded, "succeeded_at": now,
                         "next_attempt_at": None, "failed_at": None, "replay_requested": False}
        if db.execute(sa.update(table).where(*held).values(**values)).rowcount:
            return DeliveryState.succeeded
        # Our lease ran out while this attempt was in flight and another claim took over;
        # the partner has the event now, so nothing more is sent, and that other claim's
        # result will no longer match.
        db.execute(sa.update(table).where(_D.id == claim.delivery_id,
                                          _D.state != DeliveryState.succeeded)
                   .values(**values))
        return "lost"
    retry_count = claim.retry_count + 1
    next_at = _next_attempt(retry_count, now)
    if next_at is None:
        values = done | {"state": DeliveryState.failed, "failed_at": now,
                         "next_attempt_at": None, "retry_count": retry_count,
                         "replay_requested": False}
    else:
        values = done | {"state": DeliveryState.pending, "next_attempt_at": next_at,
                         "retry_count": retry_count}
    if db.execute(sa.update(table).where(*held).values(**values)).rowcount:
        return str(values["state"])
    return "lost"


# --- what the partner sees and asks ---------------------------------------------------------


@dataclass(frozen=True)
class DeliveryRecord:
    delivery: WebhookDelivery
    event: WebhookEvent
    attempts: list[WebhookAttempt]


def _records(db: Session, deliveries: list[WebhookDelivery]) -> list[DeliveryRecord]:
    if not deliveries:
        return []
    ids = [d.id for d in deliveries]
    events = {e.id: e for e in db.scalars(sa.select(WebhookEvent).where(
        WebhookEvent.id.in_([d.event_id for d in deliveries])))}
    attempts: dict[UUID, list[WebhookAttempt]] = {i: [] for i in ids}
    for attempt in db.scalars(sa.select(WebhookAttempt)
                              .where(WebhookAttempt.delivery_id.in_(ids))
                              .order_by(WebhookAttempt.number, WebhookAttempt.started_at)):
        attempts[attempt.delivery_id].append(attempt)
    return [DeliveryRecord(d, events[d.event_id], attempts[d.id]) for d in deliveries]


def list_deliveries(db: Session, actor: Actor, endpoint_id: UUID,
                    page: PageParams) -> tuple[list[DeliveryRecord], str | None]:
    """An endpoint's deliveries, newest first, each with its attempts."""
    endpoint = get_endpoint(db, actor, endpoint_id)
    rows, next_cursor = paginate(
        db, sa.select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id,
                                             WebhookDelivery.org_id == actor.org_id)
        # Claims and results are written by Core statements: never serve a stale copy.
        .execution_options(populate_existing=True),
        listing=f"webhook-deliveries:{endpoint.id}",
        keys=[SortKey(WebhookDelivery.created_at, descending=True),
              SortKey(WebhookDelivery.id, descending=True)],
        params=page)
    return _records(db, rows), next_cursor


def replay_delivery(db: Session, actor: Actor, endpoint_id: UUID,
                    delivery_id: UUID) -> DeliveryRecord:
    """Send a delivery again (a new attempt with the same ``webhook-id``), whatever became
    of it; refused while an attempt is in flight or the endpoint is disabled."""
    return _replay(db, actor, get_endpoint(db, actor, endpoint_id), delivery_id)


def _replay(db: Session, actor: Actor, endpoint: WebhookEndpoint,
            delivery_id: UUID) -> DeliveryRecord:
    delivery = db.scalars(sa.select(WebhookDelivery).where(
        WebhookDelivery.id == delivery_id, WebhookDelivery.endpoint_id == endpoint.id,
        WebhookDelivery.org_id == actor.org_id)).first()
    if delivery is None:
        raise NotFound("No such delivery.")
    if not endpoint.is_active:
        raise Conflict("This endpoint is disabled: enable it before replaying a delivery.")
    now = utcnow()
    if delivery.state == DeliveryState.sending and delivery.lease_expires_at \
            and delivery.lease_expires_at > now:
        raise Conflict("This delivery is being sent right now; ask again in a minute.")
    replayed = db.execute(
        sa.update(WebhookDelivery.__table__)
        .where(_D.id == delivery.id, _D.state == delivery.state,
               _D.attempt_count == delivery.attempt_count)
        .values(state=DeliveryState.pending, next_attempt_at=now, replay_requested=True,
                retry_count=0, failed_at=None, claim_token=None, lease_expires_at=None)
    ).rowcount
    if not replayed:
        raise Conflict("This delivery changed meanwhile; look at it again and retry.")
    db.refresh(delivery)
    audit.record(db, actor, "webhook_delivery.replayed", delivery)
    enqueue_after_commit(db, DELIVER_TASK, delivery.id)
    return _records(db, [delivery])[0]


# --- what the agency's admins see ----------------------------------------------------------


@dataclass(frozen=True)
class EndpointDeliveries:
    endpoint: WebhookEndpoint
    deliveries: list[DeliveryRecord]


def _app_of_agency(db: Session, actor: Actor, app_id: UUID) -> PartnerApp:
    """A partner app of the admin's own agency (staff with ``partner_apps:manage``); any
    other app is not found."""
    access.require_user(actor)
    access.require(actor, "partner_apps:manage")
    app = db.scalar(access.in_org(sa.select(PartnerApp), PartnerApp, actor)
                    .where(PartnerApp.id == app_id))
    if app is None:
        raise NotFound("No such partner app.")
    return app


def app_webhooks(db: Session, actor: Actor, app_id: UUID, *,
                 per_endpoint: int = 20) -> tuple[PartnerApp, list[EndpointDeliveries]]:
    """For the agency's admins: a partner app's endpoints (never their secrets), oldest
    first, each with its newest deliveries and their attempts. Ids, types and states
    only: nothing here names a client."""
    app = _app_of_agency(db, actor, app_id)
    endpoints = db.scalars(
        sa.select(WebhookEndpoint)
        .where(WebhookEndpoint.org_id == actor.org_id, WebhookEndpoint.app_id == app.id,
               WebhookEndpoint.deleted_at.is_(None))
        .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)).all()
    found = []
    for endpoint in endpoints:
        rows = list(db.scalars(
            sa.select(WebhookDelivery)
            .where(WebhookDelivery.endpoint_id == endpoint.id,
                   WebhookDelivery.org_id == actor.org_id)
            .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
            .limit(per_endpoint)
            # Claims and results are written by Core statements: never serve a stale copy.
            .execution_options(populate_existing=True)))
        found.append(EndpointDeliveries(endpoint, _records(db, rows)))
    return app, found


def replay_for_app(db: Session, actor: Actor, app_id: UUID, endpoint_id: UUID,
                   delivery_id: UUID) -> DeliveryRecord:
    """An admin of the agency sends one of its partner app's deliveries again, as the app
    itself could (same rules); refused while the app is disabled."""
    app = _app_of_agency(db, actor, app_id)
    endpoint = db.scalar(sa.select(WebhookEndpoint).where(
        WebhookEndpoint.id == endpoint_id, WebhookEndpoint.app_id == app.id,
        WebhookEndpoint.org_id == actor.org_id, WebhookEndpoint.deleted_at.is_(None)))
    if endpoint is None:
        raise NotFound("No such webhook endpoint.")
    if not app.is_active:
        raise Conflict("This partner app is disabled: enable it before replaying a delivery.")
    return _replay(db, actor, endpoint, delivery_id)
