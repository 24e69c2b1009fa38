"""Protective orders and court dates of a client."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query

from app.core import access
from app.core.pagination import Page, PageParamsDep
from app.db import SessionDep, UnitOfWorkRoute, utcnow
from app.identity.deps import CurrentActor
from app.legal import schemas, service

router = APIRouter(prefix="/api/v1", tags=["protective orders and court dates"],
                   route_class=UnitOfWorkRoute)
PROBLEM = {"content": {"application/problem+json": {}}}
READ = {403: PROBLEM, 404: PROBLEM}
WRITE = {403: PROBLEM, 404: PROBLEM, 422: PROBLEM}


def _order(record: service.OrderRecord) -> schemas.ProtectiveOrderOut:
    o = record.order
    return schemas.ProtectiveOrderOut(
        id=o.id, client_id=o.client_id, order_type=o.order_type, status=o.status,
        in_force=record.in_force(utcnow().date()), court=record.court,
        case_number=record.case_number, issued_on=o.issued_on, expires_on=o.expires_on,
        conditions=record.conditions, notes=record.notes, created_at=o.created_at,
        created_by=o.created_by, updated_at=o.updated_at, updated_by=o.updated_by)


def _hearing(record: service.HearingRecord) -> schemas.CourtDateOut:
    h = record.hearing
    return schemas.CourtDateOut(
        id=h.id, client_id=h.client_id, kind=h.kind, starts_at=h.starts_at,
        time_zone=h.time_zone, local_starts_at=record.local_starts_at, status=h.status,
        court=record.court, notes=record.notes, outcome=record.outcome,
        protective_order_id=h.protective_order_id, created_at=h.created_at,
        created_by=h.created_by, updated_at=h.updated_at, updated_by=h.updated_by)


# --- protective orders --------------------------------------------------------------------


@router.get("/clients/{client_id}/protective-orders",
            response_model=Page[schemas.ProtectiveOrderOut], responses=READ)
def list_protective_orders(client_id: UUID, actor: CurrentActor, db: SessionDep,
                           page: PageParamsDep) -> dict[str, Any]:
    """A client's protective orders: not yet issued first, then newest issue date first
    (the read is audited)."""
    access.require_client_staff(actor)
    records, next_cursor = service.list_orders(db, actor, client_id, page)
    return {"items": [_order(r) for r in records], "next_cursor": next_cursor}


@router.post("/clients/{client_id}/protective-orders",
             response_model=schemas.ProtectiveOrderOut, status_code=201, responses=WRITE)
def record_protective_order(client_id: UUID, body: schemas.ProtectiveOrderCreate,
                            actor: CurrentActor, db: SessionDep) -> schemas.ProtectiveOrderOut:
    """Record an order the client asked for or holds. Court, case number, conditions and
    notes are encrypted; expiry is not before issue; a granted order has an issue date."""
    access.require_client_staff(actor)
    return _order(service.record_order(db, actor, client_id, **body.model_dump()))


@router.get("/clients/{client_id}/protective-orders/{order_id}",
            response_model=schemas.ProtectiveOrderOut, responses=READ)
def get_protective_order(client_id: UUID, order_id: UUID, actor: CurrentActor,
                         db: SessionDep) -> schemas.ProtectiveOrderOut:
    """One protective order of the client (the read is audited)."""
    access.require_client_staff(actor)
    return _order(service.read_order(db, actor, client_id, order_id))


@router.patch("/clients/{client_id}/protective-orders/{order_id}",
              response_model=schemas.ProtectiveOrderOut, responses=WRITE)
def update_protective_order(client_id: UUID, order_id: UUID,
                            body: schemas.ProtectiveOrderUpdate, actor: CurrentActor,
                            db: SessionDep) -> schemas.ProtectiveOrderOut:
    """Change an order: fields left out stay, null clears. Status moves requested →
    granted / denied / withdrawn, granted → expired / dismissed, expired → granted
    (extended)."""
    access.require_client_staff(actor)
    changes = body.model_dump(include=body.model_fields_set)
    return _order(service.update_order(db, actor, client_id, order_id, changes))


# --- court dates --------------------------------------------------------------------------


@router.get("/clients/{client_id}/court-dates", response_model=Page[schemas.CourtDateOut],
            responses={**READ, 422: PROBLEM})
def list_court_dates(client_id: UUID, actor: CurrentActor, db: SessionDep,
                     page: PageParamsDep,
                     when: Annotated[schemas.When, Query(
                         description="upcoming, past, or all (upcoming first)")] = "all",
                     ) -> dict[str, Any]:
    """A client's court dates: upcoming ones soonest first, then past ones most recent
    first (the read is audited)."""
    access.require_client_staff(actor)
    records, next_cursor = service.list_court_dates(db, actor, client_id, page, when=when)
    return {"items": [_hearing(r) for r in records], "next_cursor": next_cursor}


@router.post("/clients/{client_id}/court-dates", response_model=schemas.CourtDateOut,
             status_code=201, responses=WRITE)
def record_court_date(client_id: UUID, body: schemas.CourtDateCreate, actor: CurrentActor,
                      db: SessionDep) -> schemas.CourtDateOut:
    """Record a hearing: the moment with an offset (UTC, or the court time zone's own
    offset) and the court's IANA time zone. Court, notes and outcome are encrypted."""
    access.require_client_staff(actor)
    return _hearing(service.record_court_date(db, actor, client_id, **body.model_dump()))


@router.get("/clients/{client_id}/court-dates/{court_date_id}",
            response_model=schemas.CourtDateOut, responses=READ)
def get_court_date(client_id: UUID, court_date_id: UUID, actor: CurrentActor,
                   db: SessionDep) -> schemas.CourtDateOut:
    """One court date of the client (the read is audited)."""
    access.require_client_staff(actor)
    return _hearing(service.read_court_date(db, actor, client_id, court_date_id))


@router.patch("/clients/{client_id}/court-dates/{court_date_id}",
              response_model=schemas.CourtDateOut, responses=WRITE)
def update_court_date(client_id: UUID, court_date_id: UUID, body: schemas.CourtDateUpdate,
                      actor: CurrentActor, db: SessionDep) -> schemas.CourtDateOut:
    """Change or reschedule a court date, or record how it went: fields left out stay,
    null clears. Status moves scheduled → held / adjourned / cancelled, adjourned →
    scheduled / held / cancelled, cancelled → scheduled."""
    access.require_client_staff(actor)
    changes = body.model_dump(include=body.model_fields_set)
    return _hearing(service.update_court_date(db, actor, client_id, court_date_id, changes))
