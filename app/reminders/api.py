"""Reminders, reminder rules and the caller's email preferences."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Query
from pydantic import AwareDatetime

from app.core.pagination import Page, PageParamsDep, SortKey, paginate
from app.db import SessionDep, UnitOfWorkRoute
from app.identity.deps import CurrentActor
from app.reminders import service
from app.reminders.models import Reminder
from app.reminders.schemas import (
    PreferencesIn,
    ReassignIn,
    ReminderCreate,
    ReminderOut,
    ReminderRules,
    SnoozeIn,
)

router = APIRouter(prefix="/api/v1", tags=["reminders"], route_class=UnitOfWorkRoute)

State = Literal["scheduled", "sending", "delivered", "held", "completed", "cancelled"]


def _out(record: service.ReminderRecord) -> ReminderOut:
    row = record.reminder
    return ReminderOut(id=row.id, kind=row.kind, audience=row.audience, channel=row.channel,
                       client_id=row.client_id, case_number=record.case_number,
                       assignee_id=row.assignee_id, note=record.note, due_at=row.due_at,
                       local_date=row.local_date, local_time=row.local_time,
                       time_zone=row.time_zone, state=row.state, held_reason=row.held_reason,
                       source_kind=row.source_kind, source_id=row.source_id,
                       rule_key=row.rule_key, delivered_at=row.delivered_at,
                       completed_at=row.completed_at, created_at=row.created_at)


@router.get("/reminders", response_model=Page[ReminderOut])
def list_reminders(actor: CurrentActor, db: SessionDep, page: PageParamsDep,
                   mine: bool = False,
                   due_before: Annotated[AwareDatetime | None, Query()] = None,
                   state: State | None = None, client_id: UUID | None = None
                   ) -> dict[str, Any]:
    """Reminders within reach, soonest first: yours, or your caseload's (supervisors: the
    agency's). Filters: mine, due before a time (with offset), state, client."""
    query = service.list_query(actor, mine=mine, due_before=due_before, state=state,
                               client_id=client_id)
    rows, next_cursor = paginate(db, query, listing="reminders",
                                 keys=[SortKey(Reminder.due_at), SortKey(Reminder.id)],
                                 params=page)
    return {"items": [_out(record) for record in service.open_records(db, rows)],
            "next_cursor": next_cursor}


@router.post("/reminders", response_model=ReminderOut, status_code=201)
def create_reminder(body: ReminderCreate, actor: CurrentActor, db: SessionDep) -> ReminderOut:
    return _out(service.create_reminder(db, actor, body))


@router.get("/reminders/{reminder_id}", response_model=ReminderOut)
def read_reminder(reminder_id: UUID, actor: CurrentActor, db: SessionDep) -> ReminderOut:
    return _out(service.read_reminder(db, actor, reminder_id))


@router.post("/reminders/{reminder_id}/snooze", response_model=ReminderOut)
def snooze(reminder_id: UUID, body: SnoozeIn, actor: CurrentActor,
           db: SessionDep) -> ReminderOut:
    return _out(service.snooze(db, actor, reminder_id, body.until))


@router.post("/reminders/{reminder_id}/complete", response_model=ReminderOut)
def complete(reminder_id: UUID, actor: CurrentActor, db: SessionDep) -> ReminderOut:
    return _out(service.complete(db, actor, reminder_id))


@router.post("/reminders/{reminder_id}/reassign", response_model=ReminderOut)
def reassign(reminder_id: UUID, body: ReassignIn, actor: CurrentActor,
             db: SessionDep) -> ReminderOut:
    return _out(service.reassign(db, actor, reminder_id, body.assignee_id))


@router.get("/reminder-settings", response_model=ReminderRules)
def read_rules(actor: CurrentActor, db: SessionDep) -> ReminderRules:
    """The agency's reminder rules and lead times (supervisors and admins)."""
    return service.read_rules(db, actor)


@router.put("/reminder-settings", response_model=ReminderRules)
def update_rules(body: ReminderRules, actor: CurrentActor, db: SessionDep) -> ReminderRules:
    return service.update_rules(db, actor, body)


@router.get("/notification-preferences", response_model=PreferencesIn)
def read_preferences(actor: CurrentActor, db: SessionDep) -> PreferencesIn:
    """Your email preferences: quiet hours (no email then; sent after) and a daily digest."""
    return service.read_preferences(db, actor)


@router.put("/notification-preferences", response_model=PreferencesIn)
def update_preferences(body: PreferencesIn, actor: CurrentActor,
                       db: SessionDep) -> PreferencesIn:
    return service.update_preferences(db, actor, body)

