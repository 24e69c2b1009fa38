"""Consents: a client's releases of information, recording and revoking them."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter

from app.consents import schemas, service
from app.consents.models import ReleaseOfInformation
from app.core import access
from app.core.pagination import Page, PageParamsDep, SortKey, paginate
from app.db import SessionDep, UnitOfWorkRoute
from app.identity.deps import CurrentActor

router = APIRouter(prefix="/api/v1", tags=["consents"], route_class=UnitOfWorkRoute)
PROBLEM = {"content": {"application/problem+json": {}}}




def _out(record: service.ReleaseRecord) -> schemas.ReleaseOut:
    r = record.release
    return schemas.ReleaseOut(
        id=r.id, client_id=r.client_id, recipient_app_id=r.recipient_app_id,
        recipient_name=record.recipient_name, purpose=record.purpose, categories=r.categories,
        how_given=r.how_given, given_at=r.given_at, effective_from=r.effective_from,
        expires_at=r.expires_at, status=record.status, recorded_by=r.recorded_by,
        revoked_at=r.revoked_at, revoked_by=r.revoked_by,
        revocation_reason=record.revocation_reason, created_at=r.created_at)


@router.get("/clients/{client_id}/consents", response_model=Page[schemas.ReleaseOut],
            responses={403: PROBLEM, 404: PROBLEM})
def list_consents(client_id: UUID, actor: CurrentActor, db: SessionDep,
                  page: PageParamsDep) -> dict[str, Any]:
    """A client's releases of information, newest first (the read is audited)."""
    access.require_client_staff(actor)
    query = service.list_releases(db, actor, client_id)
    rows, next_cursor = paginate(
        db, query, listing=f"consents:{client_id}",
        keys=[SortKey(ReleaseOfInformation.created_at, descending=True),
              SortKey(ReleaseOfInformation.id, descending=True)], params=page)
    service.audit_listing(db, actor, client_id, rows)
    return {"items": [_out(service.decrypt_release(db, r)) for r in rows],
            "next_cursor": next_cursor}


@router.post("/clients/{client_id}/consents", response_model=schemas.ReleaseOut,
             status_code=201, responses={403: PROBLEM, 404: PROBLEM, 409: PROBLEM,
                                         422: PROBLEM})
def record_consent(client_id: UUID, body: schemas.ReleaseCreate, actor: CurrentActor,
                   db: SessionDep) -> schemas.ReleaseOut:
    """Record a release of information to one recipient. One unexpired release per
    recipient: revoke the old one before recording a new one (409 otherwise)."""
    access.require_client_staff(actor)
    record = service.record_release(
        db, actor, client_id, recipient_app_id=body.recipient_app_id,
        recipient_name=body.recipient_name, purpose=body.purpose,
        categories=list(body.categories), how_given=body.how_given, given_at=body.given_at,
        effective_from=body.effective_from, expires_at=body.expires_at)
    return _out(record)


@router.post("/clients/{client_id}/consents/{consent_id}/revoke",
             response_model=schemas.ReleaseOut,
             responses={403: PROBLEM, 404: PROBLEM, 409: PROBLEM, 422: PROBLEM})
def revoke_consent(client_id: UUID, consent_id: UUID, body: schemas.ReleaseRevoke,
                   actor: CurrentActor, db: SessionDep) -> schemas.ReleaseOut:
    """Revoke a release from now on, with the reason (kept encrypted)."""
    access.require_client_staff(actor)
    return _out(service.revoke_release(db, actor, client_id, consent_id, reason=body.reason))
