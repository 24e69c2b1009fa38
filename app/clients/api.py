"""Clients: the caseload, one client's record, emergency access and erasure."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Response, status

from app.clients import schemas, service
from app.clients.models import Client
from app.core import access
from app.core.pagination import Page, PageParamsDep, SortKey, paginate
from app.db import SessionDep, UnitOfWorkRoute
from app.identity.deps import CurrentActor

router = APIRouter(prefix="/api/v1", tags=["clients"], route_class=UnitOfWorkRoute)
PROBLEM = {"content": {"application/problem+json": {}}}


def _out(record: service.ClientRecord) -> schemas.ClientOut:
    client = record.client
    return schemas.ClientOut(
        id=client.id, org_id=client.org_id, case_number=client.case_number,
        status=client.status, closing_reason=client.closing_reason, urgent=client.urgent,
        assigned_user_ids=record.assigned_user_ids, access=record.access,
        created_at=client.created_at, updated_at=client.updated_at, closed_at=client.closed_at,
        **{k: v for k, v in record.fields.items() if k != "household"})




@router.get("/clients", response_model=Page[schemas.ClientSummary], responses={403: PROBLEM})
def list_clients(
    actor: CurrentActor, db: SessionDep, page: PageParamsDep,
    case_number: Annotated[str | None, Query(max_length=20)] = None,
    name: Annotated[str | None, Query(max_length=200,
                                      description="Exact name (matched through a keyed index)")]
    = None,
    status_: Annotated[schemas.Status | None, Query(alias="status")] = None,
    advocate_id: UUID | None = None,
    urgent: bool | None = None,
) -> dict[str, Any]:
    """Your caseload (supervisors: the whole agency), urgent first, newest first.

    Prefer POST /api/v1/clients/search for name look-ups: a name in a URL can end up in
    proxy logs."""
    access.require_client_staff(actor)
    return _page(db, actor, page, case_number=case_number, name=name, status=status_,
                 advocate_id=advocate_id, urgent=urgent)


class ClientSearch(schemas.Strict):
    case_number: str | None = None
    name: str | None = None
    status: schemas.Status | None = None
    advocate_id: UUID | None = None
    urgent: bool | None = None
    limit: int = 50
    cursor: str | None = None


@router.post("/clients/search", response_model=Page[schemas.ClientSummary],
             responses={403: PROBLEM})
def search_clients(body: ClientSearch, actor: CurrentActor, db: SessionDep) -> dict[str, Any]:
    """The same search with the criteria in the body, so no name travels in a URL."""
    from app.core.pagination import MAX_LIMIT, PageParams

    access.require_client_staff(actor)
    params = PageParams(limit=max(1, min(body.limit, MAX_LIMIT)), cursor=body.cursor)
    return _page(db, actor, params, case_number=body.case_number, name=body.name,
                 status=body.status, advocate_id=body.advocate_id, urgent=body.urgent)


def _page(db: SessionDep, actor: access.Actor, page: Any, **criteria: Any) -> dict[str, Any]:
    query = service.search_clients(actor, db=db, **criteria)
    rows, next_cursor = paginate(
        db, query, listing="clients",
        keys=[SortKey(Client.urgent, descending=True), SortKey(Client.created_at,
                                                               descending=True),
              SortKey(Client.id)], params=page)
    service.audit_listing(db, actor, rows)
    items = [schemas.ClientSummary(
        id=listed.client.id, case_number=listed.client.case_number,
        status=listed.client.status, urgent=listed.client.urgent,
        preferred_name=listed.preferred_name, created_at=listed.client.created_at,
        updated_at=listed.client.updated_at) for listed in service.list_page(db, actor, rows)]
    return {"items": items, "next_cursor": next_cursor}


@router.post("/clients", response_model=schemas.ClientOut, status_code=201,
             responses={403: PROBLEM, 422: PROBLEM})
def create_client(body: schemas.ClientCreate, actor: CurrentActor,
                  db: SessionDep) -> schemas.ClientOut:
    """Open a case; every personal field may be left out."""
    access.require_user(actor)
    personal = body.model_dump(include=set(service.PERSONAL_FIELDS), exclude_unset=True)
    record = service.create_client(db, actor, personal=personal, status=body.status,
                                   assign_to=body.assigned_user_ids)
    return _out(record)


@router.get("/clients/{client_id}", response_model=schemas.ClientOut, responses={404: PROBLEM})
def get_client(client_id: UUID, actor: CurrentActor, db: SessionDep) -> schemas.ClientOut:
    """One client's record (the read is audited)."""
    access.require_client_staff(actor)
    return _out(service.read_client(db, actor, client_id))


@router.patch("/clients/{client_id}", response_model=schemas.ClientOut,
              responses={404: PROBLEM, 422: PROBLEM})
def update_client(client_id: UUID, body: schemas.ClientUpdate, actor: CurrentActor,
                  db: SessionDep) -> schemas.ClientOut:
    """Change details (only the fields sent), status, urgency or assigned staff."""
    access.require_client_staff(actor)
    given = body.model_dump(exclude_unset=True)
    personal = {k: v for k, v in given.items() if k in service.PERSONAL_FIELDS}
    record = service.update_client(
        db, actor, client_id, personal=personal, status=given.get("status"),
        closing_reason=given.get("closing_reason"), urgent=given.get("urgent"),
        assigned_user_ids=given.get("assigned_user_ids"))
    return _out(record)


@router.post("/clients/{client_id}/break-glass", response_model=schemas.BreakGlassOut,
             status_code=201, responses={404: PROBLEM, 422: PROBLEM})
def break_glass(client_id: UUID, body: schemas.BreakGlassIn, actor: CurrentActor,
                db: SessionDep) -> schemas.BreakGlassOut:
    """Emergency access to a client outside your caseload, for an hour, with a reason.
    Supervisors are notified and the access is audited."""
    access.require_user(actor)
    grant = service.break_glass(db, actor, client_id, reason=body.reason)
    return schemas.BreakGlassOut(id=grant.id, client_id=grant.client_id,
                                 granted_at=grant.granted_at, expires_at=grant.expires_at)


@router.delete("/clients/{client_id}", status_code=status.HTTP_204_NO_CONTENT,
               responses={403: PROBLEM, 404: PROBLEM})
def purge_client(client_id: UUID, actor: CurrentActor, db: SessionDep) -> Response:
    """Erase a client for good (supervisors): the client's key is destroyed, so nothing of
    the record can be read again, backups included."""
    access.require_user(actor)
    service.purge_client(db, actor, client_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/clients/{client_id}/household", response_model=schemas.Household,
            responses={404: PROBLEM})
def get_household(client_id: UUID, actor: CurrentActor, db: SessionDep) -> dict[str, Any]:
    """The client's children and pets."""
    access.require_client_staff(actor)
    return service.read_household(db, actor, client_id)


@router.put("/clients/{client_id}/household", response_model=schemas.Household,
            responses={404: PROBLEM, 422: PROBLEM})
def put_household(client_id: UUID, body: schemas.Household, actor: CurrentActor,
                  db: SessionDep) -> dict[str, Any]:
    """Replace the list of the client's children and pets."""
    access.require_client_staff(actor)
    return service.replace_household(db, actor, client_id, body.model_dump())
