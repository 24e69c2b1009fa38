"""A client's timeline."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query
from pydantic import TypeAdapter

from app.core import access
from app.core.pagination import PageParamsDep
from app.db import SessionDep, UnitOfWorkRoute
from app.identity.deps import CurrentActor
from app.timeline import schemas, service

router = APIRouter(prefix="/api/v1", tags=["timeline"], route_class=UnitOfWorkRoute)
PROBLEM = {"content": {"application/problem+json": {}}}
_ENTRY: TypeAdapter[schemas.TimelineEntry] = TypeAdapter(schemas.TimelineEntry)
KIND_HELP = ("Repeat or separate with commas: " + ", ".join(service.KINDS)
             + "; protective_order means both order events. Default: all.")


@router.get("/clients/{client_id}/timeline", response_model=schemas.TimelinePage,
            responses={400: PROBLEM, 403: PROBLEM, 404: PROBLEM, 422: PROBLEM})
def client_timeline(
    client_id: UUID, actor: CurrentActor, db: SessionDep, page: PageParamsDep,
    kind: Annotated[list[str] | None, Query(description=KIND_HELP, max_length=20)] = None,
    start: Annotated[str | None, Query(
        alias="from", max_length=40,
        description="From this moment (RFC 3339 with offset) or day (YYYY-MM-DD), included",
    )] = None,
    end: Annotated[str | None, Query(
        alias="to", max_length=40,
        description="Until this moment, excluded, or to the end of this day (YYYY-MM-DD)",
    )] = None,
) -> schemas.TimelinePage:
    """The client's incidents, court dates, protective orders (issued, expiring), risk
    assessments and safety-plan versions, oldest first, without narrative: kind, id, when
    and a short summary each. Incidents belong to a period their occurrence overlaps."""
    access.require_client_staff(actor)
    entries, next_cursor = service.client_timeline(
        db, actor, client_id, kinds=service.parse_kinds(kind),
        start=service.parse_bound("from", start),
        end=service.parse_bound("to", end, end=True), params=page)
    return schemas.TimelinePage(
        items=[_ENTRY.validate_python({"kind": e.kind, "id": e.id, "at": e.at,
                                       "precision": e.precision, "summary": e.summary})
               for e in entries],
        next_cursor=next_cursor)
