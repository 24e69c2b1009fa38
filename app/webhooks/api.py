"""Webhook endpoints of the calling partner app, and their deliveries."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Response

from app.core.pagination import Page, PageParamsDep
from app.db import SessionDep, UnitOfWorkRoute
from app.identity.deps import CurrentActor
from app.webhooks import schemas, service
from app.webhooks.models import WebhookEndpoint

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"], route_class=UnitOfWorkRoute)
PROBLEM = {"content": {"application/problem+json": {}}}
READ = {403: PROBLEM, 404: PROBLEM}
WRITE = {403: PROBLEM, 404: PROBLEM, 422: PROBLEM}


def _endpoint(endpoint: WebhookEndpoint) -> schemas.EndpointOut:
    return schemas.EndpointOut(
        id=endpoint.id, url=endpoint.url, event_types=endpoint.event_types.split(),
        is_active=endpoint.is_active, created_at=endpoint.created_at,
        updated_at=endpoint.updated_at, secret_rotated_at=endpoint.secret_rotated_at)


def _delivery(record: service.DeliveryRecord) -> schemas.DeliveryOut:
    d = record.delivery
    return schemas.DeliveryOut(
        id=d.id, endpoint_id=d.endpoint_id, event_id=d.event_id,
        event_type=record.event.event_type, subject_id=record.event.subject_id,
        state=d.state, attempt_count=d.attempt_count, next_attempt_at=d.next_attempt_at,
        created_at=d.created_at, succeeded_at=d.succeeded_at, failed_at=d.failed_at,
        attempts=[schemas.AttemptOut(
            number=a.number, started_at=a.started_at, duration_ms=a.duration_ms,
            status_code=a.status_code, error=a.error, succeeded=a.succeeded, replay=a.replay)
            for a in record.attempts])


@router.post("", response_model=schemas.EndpointCreated, status_code=201,
             responses={403: PROBLEM, 422: PROBLEM})
def create_endpoint(body: schemas.EndpointCreate, actor: CurrentActor,
                    db: SessionDep) -> schemas.EndpointCreated:
    """Register an https endpoint for referral events (partner apps with referrals:read).
    The signing secret is in this response only."""
    endpoint, secret = service.create_endpoint(db, actor, url=body.url,
                                               event_types=body.event_types)
    return schemas.EndpointCreated(**_endpoint(endpoint).model_dump(), secret=secret)


@router.get("", response_model=Page[schemas.EndpointOut], responses={403: PROBLEM})
def list_endpoints(actor: CurrentActor, db: SessionDep, page: PageParamsDep) -> dict[str, Any]:
    """The calling app's endpoints, oldest first."""
    rows, next_cursor = service.list_endpoints(db, actor, page)
    return {"items": [_endpoint(row) for row in rows], "next_cursor": next_cursor}


@router.get("/{endpoint_id}", response_model=schemas.EndpointOut, responses=READ)
def get_endpoint(endpoint_id: UUID, actor: CurrentActor, db: SessionDep) -> schemas.EndpointOut:
    """One of the calling app's endpoints (never its secret)."""
    return _endpoint(service.get_endpoint(db, actor, endpoint_id))


@router.patch("/{endpoint_id}", response_model=schemas.EndpointOut, responses=WRITE)
def update_endpoint(endpoint_id: UUID, body: schemas.EndpointUpdate, actor: CurrentActor,
                    db: SessionDep) -> schemas.EndpointOut:
    """Change the URL (checked again), the event types, or pause with is_active=false."""
    return _endpoint(service.update_endpoint(db, actor, endpoint_id, **body.model_dump(
        exclude_unset=True)))


@router.delete("/{endpoint_id}", status_code=204, response_class=Response, responses=READ)
def delete_endpoint(endpoint_id: UUID, actor: CurrentActor, db: SessionDep) -> Response:
    """Remove an endpoint; deliveries still waiting for it are marked failed."""
    service.delete_endpoint(db, actor, endpoint_id)
    return Response(status_code=204)


@router.post("/{endpoint_id}/rotate-secret", response_model=schemas.SecretOut, responses=READ)
def rotate_secret(endpoint_id: UUID, actor: CurrentActor, db: SessionDep) -> schemas.SecretOut:
    """A new signing secret, shown in this response only; the old one stops at once."""
    endpoint, secret = service.rotate_secret(db, actor, endpoint_id)
    assert endpoint.secret_rotated_at is not None
    return schemas.SecretOut(endpoint_id=endpoint.id, secret=secret,
                             secret_rotated_at=endpoint.secret_rotated_at)


@router.get("/{endpoint_id}/deliveries", response_model=Page[schemas.DeliveryOut],
            responses=READ)
def list_deliveries(endpoint_id: UUID, actor: CurrentActor, db: SessionDep,
                    page: PageParamsDep) -> dict[str, Any]:
    """The endpoint's deliveries, newest first, each with its attempts."""
    records, next_cursor = service.list_deliveries(db, actor, endpoint_id, page)
    return {"items": [_delivery(r) for r in records], "next_cursor": next_cursor}


@router.post("/{endpoint_id}/deliveries/{delivery_id}/replay", status_code=202,
             response_model=schemas.DeliveryOut, responses={**READ, 409: PROBLEM})
def replay_delivery(endpoint_id: UUID, delivery_id: UUID, actor: CurrentActor,
                    db: SessionDep) -> schemas.DeliveryOut:
    """Send a delivery again, as a new attempt with the same webhook-id."""
    return _delivery(service.replay_delivery(db, actor, endpoint_id, delivery_id))
