"""Safety plans: new versions, the current plan, any earlier version, what changed, a
printable copy for the client, and the agency's starting template."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from app.core import access
from app.core.pagination import Page, PageParamsDep, SortKey, paginate
from app.db import SessionDep, UnitOfWorkRoute
from app.identity.deps import CurrentActor
from app.safety_plans import printing, schemas, service
from app.safety_plans.models import SafetyPlanVersion

router = APIRouter(prefix="/api/v1", tags=["safety-plans"], route_class=UnitOfWorkRoute)
PROBLEM = {"content": {"application/problem+json": {}}}
MAX_VERSION = 1_000_000
VersionPath = Annotated[int, Path(ge=1, le=MAX_VERSION)]
FormatQuery = Annotated[service.PrintFormat, Query(
    alias="format", description="html (a page to print from the browser) or pdf")]
PRINT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The printable plan",
          "content": {"text/html": {"schema": {"type": "string"}},
                      "application/pdf": {"schema": {"type": "string", "format": "binary"}}}},
    403: PROBLEM, 404: PROBLEM, 422: PROBLEM}


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


def _template(record: service.TemplateRecord) -> schemas.Template:
    return schemas.Template(
        go_bag=[schemas.ChecklistItem(item=i) for i in record.go_bag],
        technology_safety=[schemas.TechItem(item=i) for i in record.technology_safety],
        updated_at=record.updated_at, updated_by=record.updated_by)


def _printed(printed: service.PrintedPlan) -> Response:
    headers = {"Cache-Control": "no-store",
               "Content-Disposition": f'inline; filename="{printed.filename}"'}
    if printed.media_type.startswith("text/html"):
        headers["Content-Security-Policy"] = printing.content_security_policy()
    return Response(printed.body, media_type=printed.media_type, headers=headers)


@router.get("/safety-plan-template", response_model=schemas.Template,
            responses={403: PROBLEM})
def plan_template(actor: CurrentActor, db: SessionDep) -> schemas.Template:
    """The agency's starting checklist for a new plan (go-bag and technology safety, none
    ticked): the built-in one until a supervisor or admin saves the agency's own."""
    return _template(service.get_template(db, actor))


@router.put("/safety-plan-template", response_model=schemas.Template,
            responses={403: PROBLEM, 422: PROBLEM})
def replace_plan_template(body: schemas.TemplateUpdate, actor: CurrentActor,
                          db: SessionDep) -> schemas.Template:
    """Replace the agency's starting checklist (supervisors and admins). Each list holds
    at most 50 distinct one-line items of up to 200 characters; plans already saved are
    not changed."""
    return _template(service.update_template(db, actor, go_bag=body.go_bag,
                                             technology_safety=body.technology_safety))


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


# Before "/{version}/print": "current" is not a version number.
@router.get("/clients/{client_id}/safety-plans/current/print", response_class=Response,
            responses=PRINT_RESPONSES)
def print_current_plan(client_id: UUID, actor: CurrentActor, db: SessionDep,
                       fmt: FormatQuery = "html") -> Response:
    """The client's own copy of the current plan, to print or hand over: no agency name,
    a neutral title, never cached; the read is audited."""
    access.require_client_staff(actor)
    return _printed(service.print_plan(db, actor, client_id, fmt=fmt))


@router.get("/clients/{client_id}/safety-plans/{version}/print", response_class=Response,
            responses=PRINT_RESPONSES)
def print_plan_version(client_id: UUID, version: VersionPath, actor: CurrentActor,
                       db: SessionDep, fmt: FormatQuery = "html") -> Response:
    """The client's own copy of one version of the plan (as ``/current/print``)."""
    access.require_client_staff(actor)
    return _printed(service.print_plan(db, actor, client_id, version, fmt=fmt))


@router.get("/clients/{client_id}/safety-plans/{version}", response_model=schemas.PlanOut,
            responses={403: PROBLEM, 404: PROBLEM})
def plan_version(client_id: UUID, version: VersionPath,
                 actor: CurrentActor, db: SessionDep) -> schemas.PlanOut:
    """One version of the plan, exactly as it was saved."""
    access.require_client_staff(actor)
    return _out(service.read_plan(db, actor, client_id, version))
