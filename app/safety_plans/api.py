"""Safety plans: new versions, the current plan, any earlier version, what changed."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Path, Query

from app.core import access
from app.core.pagination import Page, PageParamsDep, SortKey, paginate
from app.db import SessionDep
from app.identity.deps import CurrentActor
from app.safety_plans import schemas, service
from app.safety_plans.models import SafetyPlanVersion

router = APIRouter(prefix="/api/v1", tags=["safety-plans"])
PROBLEM = {"content": {"application/problem+json": {}}}
MAX_VERSION = 1_000_000




def _summary(plan: SafetyPlanVersion) -> schemas.PlanSummary:
    return schemas.PlanSummary(version=plan.version, review_date=plan.review_date,
                               created_at=plan.created_at, created_by=plan.created_by)


def _out(record: service.PlanRecord) -> schemas.PlanOut:
    p = record.plan
    return schemas.PlanOut(version=p.version, review_date=p.review_date,
                           created_at=p.created_at, created_by=p.created_by,
                           client_id=p.client_id,
                           content=schemas.PlanContent.model_validate(record.content),
                           change_note=record.change_note)


@router.get("/safety-plan-template", response_model=schemas.Template,
            responses={403: PROBLEM})
def plan_template(actor: CurrentActor) -> schemas.Template:
    """A starting checklist for a new plan (go-bag and technology safety, none ticked)."""
    access.require_client_staff(actor)
    return schemas.Template(
        go_bag=[schemas.ChecklistItem(item=i) for i in service.DEFAULT_GO_BAG],
        technology_safety=[schemas.TechItem(item=i) for i in service.DEFAULT_TECHNOLOGY_SAFETY])


@router.get("/clients/{client_id}/safety-plans", response_model=Page[schemas.PlanSummary],
            responses={403: PROBLEM, 404: PROBLEM})
def list_plans(client_id: UUID, actor: CurrentActor, db: SessionDep,
               page: PageParamsDep) -> dict[str, Any]:
    """A client's plan versions, newest first: metadata only, no plan text."""
    access.require_client_staff(actor)
    query = service.list_versions(db, actor, client_id)
    rows, next_cursor = paginate(
        db, query, listing=f"safety-plans:{client_id}",
        keys=[SortKey(SafetyPlanVersion.version, descending=True),
              SortKey(SafetyPlanVersion.id, descending=True)], params=page)
    service.audit_listing(db, actor, client_id, rows)
    return {"items": [_summary(r) for r in rows], "next_cursor": next_cursor}


@router.post("/clients/{client_id}/safety-plans", response_model=schemas.PlanOut,
             status_code=201, responses={403: PROBLEM, 404: PROBLEM, 409: PROBLEM,
                                         422: PROBLEM})
def create_plan(client_id: UUID, body: schemas.PlanCreate, actor: CurrentActor,
                db: SessionDep) -> schemas.PlanOut:
    """Save the plan as its next version (the whole plan each time; earlier versions stay
    as they were). The review date is required: not in the past, at most a year ahead."""
    access.require_client_staff(actor)
    record = service.create_version(db, actor, client_id,
                                    content=body.content.model_dump(mode="json"),
                                    review_date=body.review_date, change_note=body.change_note)
    return _out(record)


@router.get("/clients/{client_id}/safety-plans/current", response_model=schemas.PlanOut,
            responses={403: PROBLEM, 404: PROBLEM})
def current_plan(client_id: UUID, actor: CurrentActor, db: SessionDep) -> schemas.PlanOut:
    """The latest version of the plan (404 when the client has none yet)."""
    access.require_client_staff(actor)
    return _out(service.read_plan(db, actor, client_id))


@router.get("/clients/{client_id}/safety-plans/diff", response_model=schemas.DiffOut,
            responses={403: PROBLEM, 404: PROBLEM, 422: PROBLEM})
def diff_plans(client_id: UUID, actor: CurrentActor, db: SessionDep,
               from_version: Annotated[int | None, Query(
                   alias="from", ge=1, le=MAX_VERSION,
                   description="Default: the version before `to`")] = None,
               to_version: Annotated[int | None, Query(
                   alias="to", ge=1, le=MAX_VERSION,
                   description="Default: the current version")] = None) -> schemas.DiffOut:
    """What changed between two versions, leaf by leaf (list items compared by index)."""
    access.require_client_staff(actor)
    before, after, changes = service.diff_versions(db, actor, client_id, from_version,
                                                   to_version)
    return schemas.DiffOut(from_version=before, to_version=after, changes=[
        schemas.ChangeOut(path=c.path, before=c.before, after=c.after, kind=c.kind)
        for c in changes])


@router.get("/clients/{client_id}/safety-plans/{version}", response_model=schemas.PlanOut,
            responses={403: PROBLEM, 404: PROBLEM})
def plan_version(client_id: UUID, version: Annotated[int, Path(ge=1, le=MAX_VERSION)],
                 actor: CurrentActor, db: SessionDep) -> schemas.PlanOut:
    """One version of the plan, exactly as it was saved."""
    access.require_client_staff(actor)
    return _out(service.read_plan(db, actor, client_id, version))
