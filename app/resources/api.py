"""The resource directory: search, listings, capacity, CSV import and export."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import AwareDatetime

from app.core.access import Actor
from app.core.errors import DomainError, Invalid
from app.core.pagination import Page, PageParamsDep
from app.db import SessionDep, UnitOfWorkRoute
from app.identity.deps import CurrentActor
from app.resources import schemas, service
from app.resources.schemas import Category

router = APIRouter(prefix="/api/v1", tags=["resources"], route_class=UnitOfWorkRoute)
PROBLEM = {"content": {"application/problem+json": {}}}
CSV_MEDIA_TYPE = "text/csv"


class UnsupportedMediaType(DomainError):
    status, kind, title = 415, "unsupported-media-type", "Unsupported media type"


def directory_reader(actor: CurrentActor) -> Actor:
    """Staff whose role reads the directory, or a partner app with resources:read."""
    service.require_read(actor)
    return actor


def directory_writer(actor: CurrentActor) -> Actor:
    """Supervisors and admins (resources:manage), or a partner app with resources:write."""
    service.require_write(actor)
    return actor


Reader = Annotated[Actor, Depends(directory_reader)]
Writer = Annotated[Actor, Depends(directory_writer)]


def directory_filters(
    q: Annotated[str | None, Query(max_length=200, description="Words to find in name, "
                                   "description, services and service area (all must "
                                   "match, as word beginnings)")] = None,
    category: Annotated[list[Category] | None, Query(description="Any of these")] = None,
    language: Annotated[list[str] | None, Query(max_length=35, description="BCP 47 tags, "
                                                "any of these; `pt` finds pt-BR too")] = None,
    pets: Annotated[bool | None, Query(description="Pets accepted (true) or not")] = None,
    children: Annotated[bool | None, Query(description="Children accepted or not")] = None,
    open_now: Annotated[bool, Query(description="Open now, on each resource's own "
                                    "clock")] = False,
    open_at: Annotated[AwareDatetime | None, Query(description="Open at this moment "
                                                   "(RFC 3339 with offset)")] = None,
    mine: Annotated[bool, Query(description="Only the listings you manage")] = False,
) -> service.DirectoryFilters:
    languages = []
    for index, tag in enumerate(language or []):
        canonical = service.canonical_language(tag)
        if canonical is None:
            raise Invalid("Not a BCP 47 language tag.", errors=[{
                "field": f"language.{index}", "location": "query",
                "message": "not a BCP 47 language tag (e.g. en, pl, pt-BR)",
                "type": "language"}])
        languages.append(canonical)
    return service.DirectoryFilters(
        q=q, categories=tuple(category or ()), languages=tuple(languages),
        pets_accepted=pets, children_accepted=children, open_now=open_now,
        open_at=open_at, mine=mine)


Filters = Annotated[service.DirectoryFilters, Depends(directory_filters)]


@router.get("/resources", response_model=Page[schemas.ResourceOut],
            responses={403: PROBLEM, 422: PROBLEM})
def list_resources(actor: Reader, db: SessionDep, filters: Filters,
                   page: PageParamsDep) -> dict[str, Any]:
    """Search the directory shared by every agency, by name (a confidential address only
    for its own agency's staff)."""
    now = service.clock()
    rows, next_cursor = service.search(db, actor, filters, page, now=now)
    return {"items": [service.present(r, actor, at=now) for r in rows],
            "next_cursor": next_cursor}


@router.post("/resources", response_model=schemas.ResourceOut, status_code=201,
             responses={403: PROBLEM, 422: PROBLEM})
def create_resource(body: schemas.ResourceCreate, actor: Writer,
                    db: SessionDep) -> schemas.ResourceOut:
    """Add a listing of your agency (a partner app: its own listing)."""
    return service.present(service.create_resource(db, actor, body), actor)


@router.get("/resources/export", response_class=Response,
            responses={200: {"content": {CSV_MEDIA_TYPE: {}}}, 403: PROBLEM, 422: PROBLEM})
def export_resources(actor: Reader, db: SessionDep, filters: Filters) -> Response:
    """The listings matching the filters as CSV. Confidential addresses are never
    exported; cells a spreadsheet would run as formulas are prefixed with an apostrophe."""
    text = service.export_csv(db, actor, filters)
    stamp = service.clock().strftime("%Y%m%d")
    return Response(text.encode("utf-8"), media_type=f"{CSV_MEDIA_TYPE}; charset=utf-8",
                    headers={"Content-Disposition":
                             f'attachment; filename="resource-directory-{stamp}.csv"',
                             "Cache-Control": "no-store"})


async def csv_upload(request: Request) -> str:
    """The CSV text of an import: a text/csv body, or the ``file`` part of a form."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=5)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise Invalid("Send the CSV file in a form field named file.",
                          errors=[{"field": "file", "location": "body",
                                   "message": "required", "type": "missing"}])
        raw = await upload.read()
    elif content_type in (CSV_MEDIA_TYPE, "application/csv"):
        raw = await request.body()
    else:
        raise UnsupportedMediaType(
            "Send the file as text/csv, or as multipart/form-data with a field named file.",
            errors=[{"field": "content-type", "location": "header",
                     "message": "expected text/csv or multipart/form-data",
                     "type": "content_type"}])
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Invalid("The file is not UTF-8 text.", errors=[{
            "field": "file", "location": "body", "message": "not UTF-8", "type": "encoding"}]
        ) from exc


CSV_BODY = {"requestBody": {"required": True, "content": {
    CSV_MEDIA_TYPE: {"schema": {"type": "string"}},
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary"}}}}}}}


@router.post("/resources/import", response_model=schemas.ImportResult, status_code=201,
             openapi_extra=CSV_BODY, responses={403: PROBLEM, 415: PROBLEM, 422: PROBLEM})
def import_resources(actor: Writer, db: SessionDep,
                     text: Annotated[str, Depends(csv_upload)]) -> schemas.ImportResult:
    """Add every listing of a CSV file (the export's columns), or none: a bad cell
    refuses the whole file, listing each bad row and column."""
    resources = service.import_csv(db, actor, text)
    return schemas.ImportResult(imported=len(resources), ids=[r.id for r in resources])


@router.get("/resources/{resource_id}", response_model=schemas.ResourceOut,
            responses={403: PROBLEM, 404: PROBLEM})
def get_resource(resource_id: UUID, actor: Reader, db: SessionDep) -> schemas.ResourceOut:
    """One listing of the directory."""
    return service.present(service.get_resource(db, actor, resource_id), actor)


@router.patch("/resources/{resource_id}", response_model=schemas.ResourceOut,
              responses={403: PROBLEM, 404: PROBLEM, 422: PROBLEM})
def update_resource(resource_id: UUID, body: schemas.ResourceUpdate, actor: Writer,
                    db: SessionDep) -> schemas.ResourceOut:
    """Change a listing you manage (fields left out stay as they are)."""
    return service.present(service.update_resource(db, actor, resource_id, body), actor)


@router.patch("/resources/{resource_id}/capacity", response_model=schemas.ResourceOut,
              responses={403: PROBLEM, 404: PROBLEM, 422: PROBLEM})
def update_capacity(resource_id: UUID, body: schemas.CapacityUpdate, actor: Writer,
                    db: SessionDep) -> schemas.ResourceOut:
    """Record how many beds are free now (the owning partner app or agency staff)."""
    resource = service.update_capacity(
        db, actor, resource_id, beds_available=body.beds_available,
        beds_total=body.beds_total, total_given="beds_total" in body.model_fields_set)
    return service.present(resource, actor)


@router.delete("/resources/{resource_id}", status_code=204,
               responses={403: PROBLEM, 404: PROBLEM})
def archive_resource(resource_id: UUID, actor: Writer, db: SessionDep) -> Response:
    """Take a listing you manage out of the directory."""
    service.archive_resource(db, actor, resource_id)
    return Response(status_code=204)

