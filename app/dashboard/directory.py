"""Dashboard pages for the resource directory: the search, a listing's page, and for staff
who manage listings the forms to add and change one and to record its free beds.

Thin adapters over ``app.resources.service``, making the same calls as its API: the
search is the API's ``DirectoryFilters`` and ``service.search``; a listing is shown
through ``service.present``, so a confidential address reaches only the owning agency's
own staff (``may_see_address``); changes go through ``create_resource``,
``update_resource`` and ``update_capacity`` with bodies checked by the API's own schemas
first. Who may change a listing is ``service.manageable``: another agency's listing has
no edit page (404), though, like every live listing, it can be read.

A resource search is not personal data, so its words and filters ride in a GET query
(and the next-page link). Page titles name the listing, a service, never a person.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import urlencode
from uuid import UUID

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import ValidationError
from sqlmodel import Session
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse

from app.core.errors import DomainError, NotFound
from app.core.pagination import PageParams
from app.dashboard.auth import CsrfChecked, DashboardRoute, Signed, allowed, refuse, request_db
from app.dashboard.client_forms import FormProblem, FormReader, invalid_form, lines
from app.dashboard.web import render
from app.db import SessionDep
from app.resources import opening_hours, schemas
from app.resources import service as resources
from app.resources.models import ACCESSIBILITY_FEATURES, CATEGORIES, DAYS, GENDERS, Resource

router = APIRouter(prefix="/dashboard/resources", route_class=DashboardRoute,
                   include_in_schema=False, dependencies=[Depends(request_db)])

DirectoryReader = Annotated[Signed, Depends(allowed("resources:read"))]
"""Staff whose role reads the directory (advocates, supervisors, admins)."""
DirectoryManager = Annotated[Signed, Depends(allowed("resources:manage"))]
"""Staff who keep their agency's listings (supervisors, admins)."""

Cursor = Annotated[str | None, Query(max_length=1024)]
Done = Annotated[str | None, Query(max_length=40)]

PAGE_SIZE = 25
BLANK_HOURS = 3  # empty opening-hours rows a form shows beyond the filled ones
MIN_HOURS_ROWS = 7

DONE_NOTES = {
    "listing-created": "The listing is in the directory.",
    "listing-updated": "The listing is saved.",
    "capacity-updated": "The bed count is saved.",
}

CATEGORY_LABELS = {
    "shelter": "Shelter", "hotline": "Hotline", "legal_aid": "Legal aid",
    "counselling": "Counselling", "medical": "Medical care", "financial": "Financial help",
    "housing": "Housing", "child_services": "Child services",
    "pet_friendly_shelter": "Pet-friendly shelter", "transport": "Transport",
    "immigration": "Immigration", "substance_use": "Substance use", "other": "Other",
}
GENDER_LABELS = {"women": "Women", "men": "Men", "non_binary": "Non-binary people",
                 "transgender": "Transgender people"}
ACCESSIBILITY_LABELS = {
    "wheelchair_access": "Wheelchair access", "step_free_entrance": "Step-free entrance",
    "accessible_toilet": "Accessible toilet", "accessible_rooms": "Accessible rooms",
    "hearing_loop": "Hearing loop", "sign_language": "Sign language",
    "braille": "Braille", "large_print": "Large print", "easy_read": "Easy read",
    "service_animals_welcome": "Service animals welcome", "quiet_space": "Quiet space",
    "interpreters_available": "Interpreters available",
}
DAY_LABELS = {"mon": "Monday", "tue": "Tuesday", "wed": "Wednesday", "thu": "Thursday",
              "fri": "Friday", "sat": "Saturday", "sun": "Sunday"}
TRI_STATE = (("", "Not known"), ("yes", "Yes"), ("no", "No"))
HOURS_MODES = (("unknown", "Not known"), ("always", "Open 24 hours, every day"),
               ("weekly", "These hours each week"))
PETS_FILTER = (("", "Either"), ("yes", "Pets accepted"), ("no", "No pets"))

LABELS = {
    "categories": [(c, CATEGORY_LABELS[c]) for c in CATEGORIES],
    "category_label": CATEGORY_LABELS,
    "genders": [(g, GENDER_LABELS[g]) for g in GENDERS], "gender_label": GENDER_LABELS,
    "accessibility": [(a, ACCESSIBILITY_LABELS[a]) for a in ACCESSIBILITY_FEATURES],
    "accessibility_label": ACCESSIBILITY_LABELS,
    "days": [(d, DAY_LABELS[d]) for d in DAYS], "day_label": DAY_LABELS,
    "tri_state": list(TRI_STATE), "hours_modes": list(HOURS_MODES),
    "pets_filter": list(PETS_FILTER),
}


class _FormInvalid(Exception):
    """A form refused before any service was called (nothing to roll back)."""

    def __init__(self, problem: FormProblem) -> None:
        super().__init__(problem.detail)
        self.problem = problem


def _redirect(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def _page(request: Request, template: str, *, title: str, **context: Any) -> Response:
    return render(request, template, title=title, labels=LABELS, **context)


def _listing_path(resource_id: UUID, done: str | None = None) -> str:
    return f"/dashboard/resources/{resource_id}" + (f"?done={done}" if done else "")


async def _posted_form(request: Request) -> FormData:
    # Already parsed for the CSRF field; Starlette hands back the same FormData.
    return await request.form()


PostedForm = Annotated[FormData, Depends(_posted_form)]


def _yes_no(value: str) -> bool | None:
    return {"yes": True, "no": False}.get(value)


def _yes_no_value(value: bool | None) -> str:
    return "" if value is None else ("yes" if value else "no")


def language_tags(text: str) -> list[str]:
    """Language tags typed in one field, separated by commas or spaces."""
    return [tag for tag in re.split(r"[\s,;]+", text) if tag][:50]


# --- the search ----------------------------------------------------------------------------


def search_filters(*, q: str, category: list[str], language: str, pets: str,
                   open_now: bool) -> tuple[resources.DirectoryFilters, list[dict[str, str]]]:
    """The search form as the API's filters, with an error per input it refuses."""
    errors: list[dict[str, str]] = []
    chosen = [c for c in category if c in CATEGORIES]
    if len(chosen) != len(category):
        errors.append({"field": "category", "message": "choose from the list"})
    languages = []
    for tag in language_tags(language):
        canonical = resources.canonical_language(tag)
        if canonical is None:
            errors.append({"field": "language",
                           "message": "not a language tag (e.g. en, pl, pt-BR)"})
            break
        languages.append(canonical)
    if pets not in ("", "yes", "no"):
        errors.append({"field": "pets", "message": "choose from the list"})
    return resources.DirectoryFilters(
        q=q.strip() or None, categories=tuple(chosen), languages=tuple(languages),
        pets_accepted=_yes_no(pets), open_now=open_now), errors


def search_page(db: Session, signed: Signed, filters: resources.DirectoryFilters,
                cursor: str | None) -> tuple[list[schemas.ResourceOut], str | None]:
    """One page of listings as the API presents them (the address only where allowed)."""
    now = resources.clock()
    rows, next_cursor = resources.search(db, signed.actor, filters,
                                         PageParams(limit=PAGE_SIZE, cursor=cursor or None),
                                         now=now)
    return [resources.present(row, signed.actor, at=now) for row in rows], next_cursor


@router.get("")
def directory(request: Request, db: SessionDep, signed: DirectoryReader,
              q: Annotated[str, Query(max_length=200)] = "",
              category: Annotated[list[str] | None, Query(max_length=40)] = None,
              language: Annotated[str, Query(max_length=200)] = "",
              pets: Annotated[str, Query(max_length=8)] = "",
              open_now: Annotated[bool, Query()] = False,
              cursor: Cursor = None, done: Done = None) -> Response:
    """Search the directory every agency shares: words, categories, languages, pets, open
    now; by name, a page at a time."""
    typed = {"q": q, "category": list(category or [])[:len(CATEGORIES) + 1],
             "language": language, "pets": pets, "open_now": open_now}
    filters, errors = search_filters(**typed)
    problem, status_code = None, 200
    rows: list[schemas.ResourceOut] = []
    next_href = None
    if errors:
        problem, status_code = invalid_form(errors), 422
    else:
        try:
            rows, next_cursor = search_page(db, signed, filters, cursor)
        except DomainError as exc:  # a cursor of another search
            refuse(request, exc)
            problem, status_code = exc, exc.status
        else:
            if next_cursor:
                query = [(k, v) for k, v in (("q", q), ("language", language), ("pets", pets))
                         if v] + [("category", c) for c in filters.categories]
                if open_now:
                    query.append(("open_now", "true"))
                next_href = "/dashboard/resources?" + urlencode(query + [("cursor",
                                                                          next_cursor)])
    return _page(request, "resources.html", title="Directory", rows=rows, typed=typed,
                 next_href=next_href, searched=bool(q or category or language or pets
                                                    or open_now),
                 may_add=signed.can("resources:manage"), note=DONE_NOTES.get(done or ""),
                 problem=problem, status_code=status_code)


# --- a listing -----------------------------------------------------------------------------


def may_manage(db: Session, signed: Signed, resource_id: UUID) -> bool:
    """Whether the service would let this member of staff change the listing."""
    if not signed.can("resources:manage"):
        return False
    found = resources.manageable(signed.actor).where(Resource.id == resource_id)
    return bool(db.scalar(sa.select(sa.exists(found.with_only_columns(Resource.id)))))


def _listing_page(request: Request, db: Session, signed: Signed, resource_id: UUID, *,
                  note: str | None = None, status_code: int = 200, problem: Any = None,
                  capacity: dict[str, str] | None = None) -> Response:
    listing = resources.present(resources.get_resource(db, signed.actor, resource_id),
                                signed.actor)
    hours = None
    if listing.opening_hours is not None:
        hours = opening_hours.describe(listing.opening_hours.model_dump())
    beds = listing.capacity
    capacity = capacity or {
        "beds_available": "" if beds is None or beds.beds_available is None
        else str(beds.beds_available),
        "beds_total": "" if beds is None or beds.beds_total is None else str(beds.beds_total)}
    return _page(request, "resource.html", title=f"Directory: {listing.name}",
                 listing=listing, hours=hours, own_agency=listing.org_id == signed.actor.org_id,
                 manage=may_manage(db, signed, resource_id), capacity=capacity,
                 may_refer=signed.can("clients:write"), note=note, problem=problem,
                 status_code=status_code)


# --- the listing form ----------------------------------------------------------------------


def read_listing_form(r: FormReader, *, editing: bool) -> dict[str, Any]:
    """The posted listing form as the API's body (ResourceCreate, or a whole
    ResourceUpdate when editing: every field given, so the service compares them all)."""
    body: dict[str, Any] = {
        "name": r.text("name"),
        "description": r.text("description"),
        "categories": r.choices("categories"),
        "services": lines(r.text("services")),
        "languages": language_tags(r.text("languages")),
        "eligibility": {
            "genders_served": r.choices("eligibility.genders_served"),
            "min_age": r.text("eligibility.min_age") or None,
            "max_age": r.text("eligibility.max_age") or None,
            "children_accepted": _yes_no(r.text("eligibility.children_accepted")),
            "pets_accepted": _yes_no(r.text("eligibility.pets_accepted")),
        },
        "accessibility": r.choices("accessibility"),
        "opening_hours": _read_hours(r),
        "phone": r.text("phone") or None,
        "website": r.text("website") or None,
        "service_area": r.text("service_area") or None,
        "regions": lines(r.text("regions")),
        "address": r.text("address") or None,
        "address_confidential": r.flag("address_confidential"),
    }
    if not editing:
        total, available = r.text("capacity.beds_total"), r.text("capacity.beds_available")
        body["capacity"] = ({"beds_total": total or None, "beds_available": available or None}
                            if total or available else None)
    return body


def _read_hours(r: FormReader) -> dict[str, Any] | None:
    mode = r.text("opening_hours.mode") or "unknown"
    zone = r.text("opening_hours.time_zone")
    weekly, kept = [], []
    for row in range(r.count("opening_hours.weekly", ("opens", "closes"))):
        prefix = f"opening_hours.weekly.{row}"
        day = r.text(f"{prefix}.day")
        opens, closes = r.text(f"{prefix}.opens"), r.text(f"{prefix}.closes")
        if opens or closes:
            weekly.append({"day": day, "opens": opens, "closes": closes})
            kept.append(row)
    r.keep("opening_hours.weekly", kept)
    if mode == "always":
        return {"time_zone": zone, "always_open": True, "weekly": []}
    if mode == "weekly":
        return {"time_zone": zone, "always_open": False, "weekly": weekly}
    return None


def listing_values(resource: Resource | None) -> FormReader:
    """A form filled with a stored listing (or a blank one: confidential by default)."""
    r = FormReader()
    if resource is None:
        r.values = {"address_confidential": True, "opening_hours.mode": "unknown"}
        r.counts["opening_hours.weekly"] = MIN_HOURS_ROWS
        return r
    hours = resource.opening_hours
    v: dict[str, Any] = {
        "name": resource.name, "description": resource.description,
        "categories": list(resource.categories), "services": "\n".join(resource.services),
        "languages": ", ".join(resource.languages),
        "eligibility.genders_served": list(resource.genders_served),
        "eligibility.min_age": "" if resource.min_age is None else str(resource.min_age),
        "eligibility.max_age": "" if resource.max_age is None else str(resource.max_age),
        "eligibility.children_accepted": _yes_no_value(resource.children_accepted),
        "eligibility.pets_accepted": _yes_no_value(resource.pets_accepted),
        "accessibility": list(resource.accessibility),
        "opening_hours.mode": ("unknown" if hours is None else
                               "always" if hours.get("always_open") else "weekly"),
        "opening_hours.time_zone": resource.time_zone if hours is not None else "",
        "phone": resource.phone or "", "website": resource.website or "",
        "service_area": resource.service_area or "", "regions": "\n".join(resource.regions),
        "address": resource.address or "",
        "address_confidential": resource.address_confidential,
    }
    weekly = (hours or {}).get("weekly") or []
    for index, item in enumerate(weekly):
        for name in ("day", "opens", "closes"):
            v[f"opening_hours.weekly.{index}.{name}"] = item[name]
    r.values = v
    r.counts["opening_hours.weekly"] = len(weekly)
    return r


def _hours_rows(reader: FormReader) -> int:
    return max(reader.counts.get("opening_hours.weekly", 0) + BLANK_HOURS, MIN_HOURS_ROWS)


def _listing_form(request: Request, *, reader: FormReader, resource: Resource | None = None,
                  status_code: int = 200, problem: Any = None) -> Response:
    title = f"Edit the listing: {resource.name}" if resource else "Add a listing"
    return _page(request, "resource_form.html", title=title, resource=resource,
                 v=reader.values, hours_rows=_hours_rows(reader), problem=problem,
                 status_code=status_code)


def _checked(reader: FormReader, body: dict[str, Any], model: type[Any]) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise _FormInvalid(invalid_form(reader.schema_errors(exc))) from None


@router.get("/new")
def new_listing_form(request: Request, signed: DirectoryManager) -> Response:
    """Add a listing of your agency: its address is withheld from other agencies unless you
    say otherwise."""
    return _listing_form(request, reader=listing_values(None))


@router.post("/new")
def create_listing(request: Request, db: SessionDep, signed: DirectoryManager,
                   _csrf: CsrfChecked, form: PostedForm) -> Response:
    reader = FormReader(form)
    body = read_listing_form(reader, editing=False)
    try:
        data = _checked(reader, body, schemas.ResourceCreate)
        resource = resources.create_resource(db, signed.actor, data)
    except _FormInvalid as exc:
        return _listing_form(request, reader=reader, status_code=422, problem=exc.problem)
    except DomainError as exc:
        refuse(request, exc)
        return _listing_form(request, reader=reader, status_code=exc.status,
                             problem=reader.relabel(exc))
    return _redirect(_listing_path(resource.id, "listing-created"))


@router.get("/{resource_id}")
def listing_page(request: Request, resource_id: UUID, db: SessionDep,
                 signed: DirectoryReader, done: Done = None) -> Response:
    """One listing with all its fields; the street address of a confidential listing only
    for the owning agency's own staff."""
    return _listing_page(request, db, signed, resource_id, note=DONE_NOTES.get(done or ""))


@router.get("/{resource_id}/edit")
def edit_listing_form(request: Request, resource_id: UUID, db: SessionDep,
                      signed: DirectoryManager) -> Response:
    """Change a listing of your agency (another agency's has no such page)."""
    resource = resources.get_resource_for_write(db, signed.actor, resource_id)
    return _listing_form(request, reader=listing_values(resource), resource=resource)


@router.post("/{resource_id}/edit")
def update_listing(request: Request, resource_id: UUID, db: SessionDep,
                   signed: DirectoryManager, _csrf: CsrfChecked, form: PostedForm) -> Response:
    resource = resources.get_resource_for_write(db, signed.actor, resource_id)
    reader = FormReader(form)
    body = read_listing_form(reader, editing=True)
    try:
        data = _checked(reader, body, schemas.ResourceUpdate)
        resources.update_resource(db, signed.actor, resource_id, data)
    except _FormInvalid as exc:
        return _listing_form(request, reader=reader, resource=resource, status_code=422,
                             problem=exc.problem)
    except DomainError as exc:
        if isinstance(exc, NotFound):
            raise
        refuse(request, exc)
        return _listing_form(request, reader=reader, resource=resource,
                             status_code=exc.status, problem=reader.relabel(exc))
    return _redirect(_listing_path(resource_id, "listing-updated"))


@router.post("/{resource_id}/capacity")
def update_capacity(request: Request, resource_id: UUID, db: SessionDep,
                    signed: DirectoryManager, _csrf: CsrfChecked,
                    form: PostedForm) -> Response:
    """Record how many beds are free now (and how many there are; empty: not known)."""
    resources.get_resource_for_write(db, signed.actor, resource_id)
    reader = FormReader(form)
    typed = {"beds_available": reader.text("beds_available"),
             "beds_total": reader.text("beds_total")}
    try:
        data = _checked(reader, {"beds_available": typed["beds_available"] or None,
                                 "beds_total": typed["beds_total"] or None},
                        schemas.CapacityUpdate)
        resources.update_capacity(db, signed.actor, resource_id,
                                  beds_available=data.beds_available,
                                  beds_total=data.beds_total, total_given=True)
    except _FormInvalid as exc:
        return _listing_page(request, db, signed, resource_id, status_code=422,
                             problem=exc.problem, capacity=typed)
    except DomainError as exc:
        if isinstance(exc, NotFound):
            raise
        refuse(request, exc)
        return _listing_page(request, db, signed, resource_id, status_code=exc.status,
                             problem=reader.relabel(exc), capacity=typed)
    return _redirect(_listing_path(resource_id, "capacity-updated"))
