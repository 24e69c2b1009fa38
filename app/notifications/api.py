"""The caller's notifications."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter
from pydantic import BaseModel

from app.core.pagination import Page, PageParamsDep, SortKey, paginate
from app.db import SessionDep, UnitOfWorkRoute
from app.identity.deps import CurrentActor
from app.notifications import service
from app.notifications.models import Notification

router = APIRouter(prefix="/api/v1", tags=["notifications"], route_class=UnitOfWorkRoute)


class NotificationOut(BaseModel):
    id: UUID
    kind: str
    message: str
    object_type: str | None
    object_id: UUID | None
    created_at: datetime
    read_at: datetime | None


def _out(row: Notification) -> NotificationOut:
    return NotificationOut(id=row.id, kind=row.kind, message=service.message_for(row),
                           object_type=row.object_type, object_id=row.object_id,
                           created_at=row.created_at, read_at=row.read_at)


@router.get("/notifications", response_model=Page[NotificationOut])
def list_notifications(actor: CurrentActor, db: SessionDep, page: PageParamsDep,
                       unread: bool = False) -> dict[str, Any]:
    """Your notifications, newest first."""
    query = service.readable_notifications(actor)
    if unread:
        query = query.where(Notification.read_at.is_(None))
    rows, next_cursor = paginate(db, query, listing="notifications",
                                 keys=[SortKey(Notification.created_at, descending=True),
                                       SortKey(Notification.id)], params=page)
    return {"items": [_out(row) for row in rows], "next_cursor": next_cursor}


@router.post("/notifications/{notification_id}/read", response_model=NotificationOut)
def mark_read(notification_id: UUID, actor: CurrentActor, db: SessionDep) -> NotificationOut:
    return _out(service.mark_read(db, actor, notification_id))
