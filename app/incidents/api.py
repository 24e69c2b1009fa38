"""Incidents: record one, list a client's, read the current revision, the full history with
what changed, correct (a new revision) and retract (a new revision marked retracted)."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Response
from pydantic import AwareDatetime
from sqlalchemy import Row

from app.core import access
from app.core.pagination import Page, PageParamsDep, SortKey, paginate
from app.db import SessionDep, UnitOfWorkRoute
from app.identity.deps import CurrentActor
from app.incidents import schemas, service
from app.incidents.models import IncidentRevision

router = APIRouter(prefix="/api/v1", tags=["incidents"], route_class=UnitOfWorkRoute)
PROBLEM = {"content": {"application/problem+json": {}}}
READ = {403: PROBLEM, 404: PROBLEM}
WRITE = {403: PROBLEM, 404: PROBLEM, 409: PROBLEM, 422: PROBLEM}


def _occurrence(revision: IncidentRevision | Row[Any]) -> schemas.OccurrenceOut:
    return schemas.OccurrenceOut(**service.occurrence_local(revision),
                                 start_utc=revision.occurred_start,
                                 end_utc=revision.occurred_end)


def _summary(revision: IncidentRevision | Row[Any], categories: list[str],
             recorded: tuple[Any, UUID]) -> dict[str, Any]:
    return {"id": revision.incident_id, "client_id": revision.client_id,
            "revision": revision.revision, "retracted": revision.retracted,
            "occurred": _occurrence(revision), "categories": categories,
            "children_present": revision.children_present,
            "weapons_involved": revision.weapons_involved,
            "recorded_at": recorded[0], "recorded_by": recorded[1],
            "revised_at": revision.created_at, "revised_by": revision.created_by}


def _out(record: service.RevisionRecord) -> schemas.IncidentOut:
    incident = record.incident
    return schemas.IncidentOut(
        **_summary(record.revision, record.categories,
                   (incident.created_at, incident.created_by)),
        **record.content, reason=record.reason)


def _revision_out(entry: service.HistoryEntry) -> schemas.RevisionOut:
    record, r = entry.record, entry.record.revision
    return schemas.RevisionOut(
        revision=r.revision, created_at=r.created_at, created_by=r.created_by,
        retracted=r.retracted, reason=record.reason, occurred=_occurrence(r),
        categories=record.categories, children_present=r.children_present,
        weapons_involved=r.weapons_involved, **record.content,
        changes=[schemas.ChangeOut(path=c.path, before=c.before, after=c.after, kind=c.kind)
                 for c in entry.changes])


@router.post("/clients/{client_id}/incidents", response_model=schemas.IncidentOut,
             status_code=201, responses=WRITE)
def record_incident(client_id: UUID, body: schemas.IncidentCreate, actor: CurrentActor,
                    db: SessionDep, response: Response) -> schemas.IncidentOut:
    """Record an incident of the client (revision 1). The server keeps when it was recorded
    and by whom; the place, the accounts, witnesses, police details and the other
    person's identifiers are encrypted under the client's key."""
    access.require_client_staff(actor)
    record = service.record_incident(db, actor, client_id, body)
    response.headers["Location"] = f"/api/v1/incidents/{record.incident.id}"
    return _out(record)


@router.get("/clients/{client_id}/incidents", response_model=Page[schemas.IncidentSummary],
            responses={**READ, 422: PROBLEM})
def list_incidents(
    client_id: UUID, actor: CurrentActor, db: SessionDep, page: PageParamsDep,
    category: Annotated[list[schemas.Category] | None, Query(
        max_length=10, description="Any of these categories (repeat the parameter)")] = None,
    occurred_from: Annotated[AwareDatetime | None, Query(
        description="Incidents whose occurrence ends at or after this instant")] = None,
    occurred_to: Annotated[AwareDatetime | None, Query(
        description="Incidents whose occurrence starts before this instant")] = None,
    include_retracted: bool = True,
) -> dict[str, Any]:
    """A client's incidents as they now read, most recent occurrence first: when, what
    kind, retracted or not — no narrative. Retracted incidents are listed, marked."""
    access.require_client_staff(actor)
    query = service.list_incidents(db, actor, client_id, categories=category or (),
                                   occurred_from=occurred_from, occurred_to=occurred_to,
                                   include_retracted=include_retracted)
    rows, next_cursor = paginate(
        db, query, listing=f"incidents:{client_id}",
        keys=[SortKey(IncidentRevision.occurred_start, descending=True),
              SortKey(IncidentRevision.incident_id, descending=True)], params=page,
        as_rows=True)
    categories = service.summaries(db, rows)
    service.audit_listing(db, actor, rows)
    return {"items": [_summary(r, categories[r.id], (r.recorded_at, r.recorded_by))
                      for r in rows], "next_cursor": next_cursor}


@router.get("/incidents/{incident_id}", response_model=schemas.IncidentOut, responses=READ)
def read_incident(incident_id: UUID, actor: CurrentActor, db: SessionDep) -> schemas.IncidentOut:
    """The incident as its current revision says; a retracted incident is shown, marked."""
    access.require_client_staff(actor)
    return _out(service.read_incident(db, actor, incident_id))


@router.get("/incidents/{incident_id}/revisions", response_model=Page[schemas.RevisionOut],
            responses=READ)
def incident_revisions(incident_id: UUID, actor: CurrentActor, db: SessionDep,
                       page: PageParamsDep) -> dict[str, Any]:
    """Every revision, oldest first, each exactly as saved, with who made it, when, why,
    and what changed from the one before (field by field)."""
    access.require_client_staff(actor)
    query = service.list_revisions(db, actor, incident_id)
    rows, next_cursor = paginate(db, query, listing=f"incident-revisions:{incident_id}",
                                 keys=[SortKey(IncidentRevision.revision)], params=page)
    entries = service.open_history(db, actor, incident_id, rows)
    return {"items": [_revision_out(e) for e in entries], "next_cursor": next_cursor}


@router.post("/incidents/{incident_id}/revisions", response_model=schemas.IncidentOut,
             status_code=201, responses=WRITE)
def revise_incident(incident_id: UUID, body: schemas.RevisionCreate, actor: CurrentActor,
                    db: SessionDep) -> schemas.IncidentOut:
    """Correct the incident: send the whole record as it should now read, the reason, and
    the revision you edited. It becomes the next revision; earlier ones stay unchanged."""
    access.require_client_staff(actor)
    record = service.revise_incident(db, actor, incident_id, body, reason=body.reason,
                                     based_on_revision=body.based_on_revision)
    return _out(record)


@router.post("/incidents/{incident_id}/retract", response_model=schemas.IncidentOut,
             responses=WRITE)
def retract_incident(incident_id: UUID, body: schemas.Retraction, actor: CurrentActor,
                     db: SessionDep) -> schemas.IncidentOut:
    """Retract the incident, saying why: a new revision marked retracted. Nothing is
    removed; the incident and its history stay readable, marked retracted."""
    access.require_client_staff(actor)
    return _out(service.retract_incident(db, actor, incident_id, reason=body.reason))
