"""Reading the audit trail: auditors and supervisors, their own org's chain only."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import sqlalchemy as sa
from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel

from app.core import access
from app.core.audit import AuditEvent
from app.core.pagination import Page, PageParamsDep, SortKey, paginate
from app.db import SessionDep, UnitOfWorkRoute
from app.identity.deps import CurrentActor

router = APIRouter(prefix="/api/v1", tags=["audit"], route_class=UnitOfWorkRoute)


class AuditEventOut(BaseModel):
    id: UUID
    seq: int
    at: datetime
    actor_type: str
    actor_id: str | None
    action: str
    object_type: str | None
    object_id: str | None
    outcome: str
    request_id: str | None
    details: dict[str, Any] | None
    prev_digest: str
    digest: str


@router.get("/audit-events", response_model=Page[AuditEventOut])
def audit_events(
    actor: CurrentActor,
    db: SessionDep,
    page: PageParamsDep,
    actor_id: Annotated[str | None, Query(max_length=64)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    object_type: Annotated[str | None, Query(max_length=40)] = None,
    object_id: Annotated[str | None, Query(max_length=64)] = None,
    outcome: Annotated[str | None, Query(max_length=16)] = None,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
) -> dict[str, Any]:
    """Audit events of your agency, newest first, with filters."""
    access.require_user(actor)
    access.require(actor, "audit:read")
    query = access.in_org(sa.select(AuditEvent), AuditEvent, actor)
    filters = {"actor_id": actor_id, "action": action, "object_type": object_type,
               "object_id": object_id, "outcome": outcome}
    for name, value in filters.items():
        if value is not None:
            query = query.where(getattr(AuditEvent, name) == value)
    if since is not None:
        query = query.where(AuditEvent.at >= since)  # type: ignore[operator]
    if until is not None:
        query = query.where(AuditEvent.at < until)  # type: ignore[operator]
    rows, next_cursor = paginate(db, query, listing="audit-events",
                                 keys=[SortKey(AuditEvent.seq, descending=True)], params=page)
    return {"items": rows, "next_cursor": next_cursor}
