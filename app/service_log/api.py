"""The service log: contacts and services given to a client."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter

from app.core import access
from app.core.pagination import Page, PageParamsDep
from app.db import SessionDep, UnitOfWorkRoute
from app.identity.deps import CurrentActor
from app.service_log import schemas, service

router = APIRouter(prefix="/api/v1", tags=["service log"], route_class=UnitOfWorkRoute)
PROBLEM = {"content": {"application/problem+json": {}}}




def _out(record: service.ContactRecord) -> schemas.ContactOut:
    c = record.contact
    return schemas.ContactOut(
        id=c.id, client_id=c.client_id, kind=c.kind, occurred_on=c.occurred_on,
        started_at=c.started_at, duration_minutes=c.duration_minutes,
        staff_user_id=c.staff_user_id, notes=record.notes, recorded_by=c.recorded_by,
        created_at=c.created_at)


@router.get("/clients/{client_id}/contacts", response_model=Page[schemas.ContactOut],
            responses={403: PROBLEM, 404: PROBLEM})
def list_contacts(client_id: UUID, actor: CurrentActor, db: SessionDep,
                  page: PageParamsDep) -> dict[str, Any]:
    """A client's service log, newest first (the read is audited)."""
    access.require_client_staff(actor)
    records, next_cursor = service.list_contacts(db, actor, client_id, page)
    return {"items": [_out(r) for r in records], "next_cursor": next_cursor}


@router.post("/clients/{client_id}/contacts", response_model=schemas.ContactOut,
             status_code=201, responses={403: PROBLEM, 404: PROBLEM, 422: PROBLEM})
def record_contact(client_id: UUID, body: schemas.ContactCreate, actor: CurrentActor,
                   db: SessionDep) -> schemas.ContactOut:
    """Log a contact or service given to the client (by you unless staff_user_id says)."""
    access.require_client_staff(actor)
    return _out(service.record_contact(
        db, actor, client_id, kind=body.kind, occurred_on=body.occurred_on,
        started_at=body.started_at, duration_minutes=body.duration_minutes,
        staff_user_id=body.staff_user_id, notes=body.notes))


@router.get("/clients/{client_id}/contacts/{contact_id}", response_model=schemas.ContactOut,
            responses={403: PROBLEM, 404: PROBLEM})
def get_contact(client_id: UUID, contact_id: UUID, actor: CurrentActor,
                db: SessionDep) -> schemas.ContactOut:
    """One contact of the client's service log (the read is audited)."""
    access.require_client_staff(actor)
    return _out(service.read_contact(db, actor, client_id, contact_id))
