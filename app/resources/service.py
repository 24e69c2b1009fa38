"""The resource directory: listing, searching and keeping up to date the organisations
and services advocates refer clients to.

Reach. The directory is shared across the installation: every reader (staff with
``resources:read``, partner apps with that scope) reads every live listing's public
fields, starting from :func:`readable`. Listings are changed only through
:func:`manageable`: the owning org's supervisors and admins (``resources:manage``), or
the partner app a listing belongs to (``resources:write``); anything else is simply
not found (404).

Confidential addresses. :func:`may_see_address` is the one decision about a street
address, and :func:`present` / the CSV export are the only ways a listing leaves the
service; a confidential address goes only to the owning org's own staff, never to a
partner app, an export or a printout.

Search. Words of ``q`` match name, description, services and service area (as
prefixes, all words required): an FTS5 table on SQLite, kept in step here on every
write, and an expression GIN index over ``to_tsvector('simple', …)`` on PostgreSQL;
both are created by the migration.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import sqlalchemy as sa
from pydantic import ValidationError
from sqlmodel import Session

from app.core import audit
from app.core.access import Actor, require
from app.core.errors import Invalid, NotFound
from app.core.pagination import PageParams, SortKey, paginate
from app.db import utcnow
from app.identity.models import PartnerApp
from app.resources import directory_csv, opening_hours
from app.resources.models import (
    ACCESSIBILITY_FEATURES,
    CATEGORIES,
    GENDERS,
    Resource,
    ResourceFacet,
    ResourceOpening,
)
from app.resources.schemas import (
    CapacityOut,
    Eligibility,
    OpeningHours,
    OpeningRange,
    ResourceCreate,
    ResourceOut,
    ResourceUpdate,
)

TABLE = "resource"
MAX_QUERY_TERMS = 8
# The clock "open now" is read from; tests replace it with a fixed one.
clock: Callable[[], datetime] = utcnow

# --- reach --------------------------------------------------------------------------------


def require_read(actor: Actor) -> None:
    """Reading the directory: staff whose role reads it, partner apps with resources:read."""
    require(actor, "resources:read")


def require_write(actor: Actor) -> None:
    """Changing listings at all: resources:manage (staff) or resources:write (partner)."""
    require(actor, "resources:write" if actor.is_partner else "resources:manage")


def readable(actor: Actor) -> sa.Select[Any]:
    """Every live listing: the directory is shared by all agencies and partner apps."""
    return sa.select(Resource).where(Resource.archived_at.is_(None))


def manageable(actor: Actor) -> sa.Select[Any]:
    """The listings ``actor`` may change: its org's (staff) or its own (partner app)."""
    query = readable(actor).where(Resource.org_id == actor.org_id)
    if actor.is_partner:
        return query.where(Resource.partner_app_id == actor.id)
    return query


def get_resource(db: Session, actor: Actor, resource_id: UUID, *,
                 include_archived: bool = False) -> Resource:
    """A listing of the directory by id (404 if there is none, or it was archived).

    Decides no role or scope: callers that show it have required ``resources:read``."""
    query = sa.select(Resource).where(Resource.id == resource_id)
    if not include_archived:
        query = query.where(Resource.archived_at.is_(None))
    resource = db.scalar(query)
    if resource is None:
        raise NotFound("No such resource.")
    return resource


def get_resource_for_write(db: Session, actor: Actor, resource_id: UUID) -> Resource:
    """A listing the actor may change (404 for any other, even one it can read)."""
    require_write(actor)
    resource = db.scalar(manageable(actor).where(Resource.id == resource_id)
                         .with_for_update())
    if resource is None:
        raise NotFound("No such resource among the listings you manage.")
    return resource


# --- confidential addresses: the one check ------------------------------------------------


def may_see_address(actor: Actor | None, resource: Resource, *, purpose: str = "read") -> bool:
    """May the street address of ``resource`` go to ``actor`` for ``purpose``?

    ``purpose`` is "read" (an API or dashboard answer), "export" (a CSV file) or
    "print". An address that is not confidential goes everywhere; a confidential one
    only to the owning org's own staff reading it on screen — never to a partner app
    (not even the listing's own), never into an export or a printout."""
    if not resource.address_confidential:
        return True
    return (purpose == "read" and actor is not None and actor.is_user
            and actor.org_id == resource.org_id)


def present(resource: Resource, actor: Actor, *, at: datetime | None = None) -> ResourceOut:
    """A listing as ``actor`` may see it (the address withheld where it must be)."""
    at = at or clock()
    hours = _hours_out(resource)
    capacity = None
    # Stored values were checked on the way in: the parts are built without checking again
    # (a page of 50 listings would otherwise validate some 300 small models).
    if resource.beds_total is not None or resource.beds_available is not None:
        capacity = CapacityOut.model_construct(beds_total=resource.beds_total,
                                               beds_available=resource.beds_available,
                                               updated_at=resource.capacity_updated_at)
    return ResourceOut.model_construct(
        id=resource.id, org_id=resource.org_id, partner_app_id=resource.partner_app_id,
        name=resource.name, description=resource.description,
        categories=list(resource.categories), services=list(resource.services),
        languages=list(resource.languages),
        eligibility=Eligibility.model_construct(
            genders_served=list(resource.genders_served), min_age=resource.min_age,
            max_age=resource.max_age, children_accepted=resource.children_accepted,
            pets_accepted=resource.pets_accepted),
        accessibility=list(resource.accessibility), opening_hours=hours,
        open_now=opening_hours.is_open(resource.opening_hours, resource.time_zone, at),
        phone=resource.phone, website=resource.website, service_area=resource.service_area,
        regions=list(resource.regions),
        address=resource.address if may_see_address(actor, resource) else None,
        address_confidential=resource.address_confidential, capacity=capacity,
        created_at=resource.created_at, updated_at=resource.updated_at)


def _hours_out(resource: Resource) -> OpeningHours | None:
    if resource.opening_hours is None:
        return None
    return OpeningHours.model_construct(
        time_zone=resource.time_zone,
        always_open=bool(resource.opening_hours.get("always_open")),
        weekly=[OpeningRange.model_construct(**item)
                for item in resource.opening_hours.get("weekly") or []])


# --- validation ---------------------------------------------------------------------------

_LANGUAGE_TAG = re.compile(
    r"^(?:(?:[a-z]{2,3}(?:-[a-z]{3}){0,3}|[a-z]{4}|[a-z]{5,8})"  # language (+ extlang)
    r"(?:-[a-z]{4})?"  # script
    r"(?:-(?:[a-z]{2}|\d{3}))?"  # region
    r"(?:-(?:[a-z\d]{5,8}|\d[a-z\d]{3}))*"  # variants
    r"(?:-[a-wyz\d](?:-[a-z\d]{2,8})+)*"  # extensions
    r"(?:-x(?:-[a-z\d]{1,8})+)?"  # private use
    r"|x(?:-[a-z\d]{1,8})+)$")
_PHONE = re.compile(r"^\+?[0-9(][0-9 ()./-]{2,38}$")


def canonical_language(tag: str) -> str | None:
    """A well-formed BCP 47 tag in its canonical case (``pt-BR``, ``zh-Hant-TW``,
    ``sgn-IE``), or None when ``tag`` is not one."""
    tag = tag.strip().replace("_", "-")
    if not _LANGUAGE_TAG.match(tag.lower()):
        return None
    parts = tag.lower().split("-")
    out = [parts[0]]
    after_singleton = len(parts[0]) == 1  # "x-…": private use throughout
    for part in parts[1:]:
        after_singleton = after_singleton or len(part) == 1
        if not after_singleton and len(part) == 4 and part.isalpha():
            part = part.title()  # script
        elif not after_singleton and len(part) == 2 and part.isalpha():
            part = part.upper()  # region
        out.append(part)
    return "-".join(out)


def _error(field: str, message: str, kind: str = "value") -> dict[str, str]:
    return {"field": field, "location": "body", "message": message, "type": kind}


def _in_vocabulary(values: Iterable[str], known: tuple[str, ...], field: str,
                   errors: list[dict[str, str]]) -> list[str]:
    values = list(values)
    for index, value in enumerate(values):
        if value not in known:
            errors.append(_error(f"{field}.{index}", f"choose from {', '.join(known)}",
                                 "vocabulary"))
    return [v for v in known if v in values]  # canonical order, no duplicates


def _distinct(values: Iterable[str]) -> list[str]:
    seen: dict[str, str] = {}
    for value in values:
        seen.setdefault(value.casefold(), value)
    return list(seen.values())


def _columns(data: ResourceCreate) -> dict[str, Any]:
    """The table's values for a listing, after every check (Invalid lists each field)."""
    errors: list[dict[str, str]] = []
    categories = _in_vocabulary(data.categories, CATEGORIES, "categories", errors)
    if not data.categories:
        errors.append(_error("categories", "name at least one category", "vocabulary"))
    languages = []
    for index, tag in enumerate(data.languages):
        canonical = canonical_language(tag)
        if canonical is None:
            errors.append(_error(f"languages.{index}", "not a BCP 47 language tag "
                                 "(e.g. en, pl, pt-BR)", "language"))
        else:
            languages.append(canonical)
    eligibility = data.eligibility
    genders = _in_vocabulary(eligibility.genders_served, GENDERS,
                             "eligibility.genders_served", errors)
    if (eligibility.min_age is not None and eligibility.max_age is not None
            and eligibility.min_age > eligibility.max_age):
        errors.append(_error("eligibility.max_age", "below min_age", "range"))
    accessibility = _in_vocabulary(data.accessibility, ACCESSIBILITY_FEATURES,
                                   "accessibility", errors)
    time_zone, hours = "UTC", None
    if data.opening_hours is not None:
        time_zone = data.opening_hours.time_zone
        hours = {"always_open": data.opening_hours.always_open,
                 "weekly": [r.model_dump() for r in data.opening_hours.weekly]}
        try:
            opening_hours.zone(time_zone)
            opening_hours.intervals(hours)
        except opening_hours.HoursError as exc:
            errors.append(_error(f"opening_hours.{exc.field}", exc.message, "hours"))
    phone = (data.phone or "").strip() or None
    if phone is not None and (not _PHONE.match(phone)
                              or sum(c.isdigit() for c in phone) < 3):
        errors.append(_error("phone", "digits, spaces and + ( ) - . only", "phone"))
    website = (data.website or "").strip() or None
    if website is not None:
        parts = urlsplit(website)
        if parts.scheme not in ("https", "http") or not parts.netloc or " " in website:
            errors.append(_error("website", "an http(s) address", "url"))
    capacity = data.capacity
    beds_total = capacity.beds_total if capacity else None
    beds_available = capacity.beds_available if capacity else None
    if beds_total is not None and beds_available is not None and beds_available > beds_total:
        errors.append(_error("capacity.beds_available", "more than beds_total", "range"))
    if errors:
        raise Invalid("One or more fields of the listing are invalid.", errors=errors)
    return {
        "name": data.name, "description": data.description.strip(),
        "categories": categories, "services": _distinct(data.services),
        "languages": _distinct(languages), "genders_served": genders,
        "min_age": eligibility.min_age, "max_age": eligibility.max_age,
        "children_accepted": eligibility.children_accepted,
        "pets_accepted": eligibility.pets_accepted, "accessibility": accessibility,
        "time_zone": time_zone, "opening_hours": hours, "phone": phone, "website": website,
        "service_area": (data.service_area or "").strip() or None,
        "regions": _distinct(data.regions),
        "address": (data.address or "").strip() or None,
        "address_confidential": data.address_confidential,
        "beds_total": beds_total, "beds_available": beds_available,
    }


def _partner_app_for(db: Session, actor: Actor, partner_app_id: UUID | None) -> UUID | None:
    """Whose listing: a partner app's own listings are always its own; staff may hand a
    listing to an active partner app of their agency."""
    if actor.is_partner:
        if partner_app_id not in (None, actor.id):
            raise Invalid("A partner app keeps only its own listings.",
                          errors=[_error("partner_app_id", "must be your own app or left "
                                         "out", "partner_app")])
        return actor.id
    if partner_app_id is None:
        return None
    found = db.scalar(sa.select(PartnerApp.id).where(
        PartnerApp.id == partner_app_id, PartnerApp.org_id == actor.org_id,
        PartnerApp.is_active.is_(True)))
    if found is None:
        raise Invalid("No such active partner app in your agency.",
                      errors=[_error("partner_app_id", "not an active partner app of your "
                                     "agency", "partner_app")])
    return found


# --- derived rows: facets, opening intervals, the search index ----------------------------


def _language_facets(languages: Iterable[str]) -> set[str]:
    """Each tag, lower-cased, and its primary language: a filter on ``pt`` finds pt-BR."""
    values: set[str] = set()
    for tag in languages:
        values.add(tag.lower())
        values.add(tag.lower().split("-")[0])
    return values


def _search_document(resource: Resource) -> dict[str, str]:
    return {"name": resource.name, "description": resource.description or "",
            "services": " ".join(resource.services),
            "service_area": " ".join([resource.service_area or "", *resource.regions])}


_FTS = sa.table("resource_fts", sa.column("rowid", sa.Integer()), sa.column("name"),
                sa.column("description"), sa.column("services"), sa.column("service_area"))
_FTS_KEY = sa.table("resource_fts_key", sa.column("rowid", sa.Integer()),
                    sa.column("resource_id", sa.Uuid()))
_CHUNK = 500  # ids a statement, well under SQLite's limit of bound values


def _chunks(items: list[Any]) -> Iterable[list[Any]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start:start + _CHUNK]


def _search_keys(db: Session, ids: list[UUID]) -> dict[UUID, int]:
    keys: dict[UUID, int] = {}
    for chunk in _chunks(ids):
        keys.update(db.execute(sa.select(_FTS_KEY.c.resource_id, _FTS_KEY.c.rowid)
                               .where(_FTS_KEY.c.resource_id.in_(chunk))).all())
    return keys


def _unindex(db: Session, ids: list[UUID]) -> None:
    """Take listings out of the SQLite search index (rows and keys)."""
    keys = list(_search_keys(db, ids).values())
    for chunk in _chunks(keys):
        db.execute(sa.delete(_FTS).where(_FTS.c.rowid.in_(chunk)))
        db.execute(sa.delete(_FTS_KEY).where(_FTS_KEY.c.rowid.in_(chunk)))


def _index(db: Session, resources: list[Resource], *, fresh: bool) -> None:
    """(Re)write the SQLite search index rows of ``resources``."""
    ids = [r.id for r in resources]
    if not fresh:
        _unindex(db, ids)
    for chunk in _chunks(ids):
        db.execute(sa.insert(_FTS_KEY), [{"resource_id": i} for i in chunk])
    keys = _search_keys(db, ids)
    db.execute(sa.insert(_FTS), [{"rowid": keys[r.id], **_search_document(r)}
                                 for r in resources])


def _sync(db: Session, resources: list[Resource], *, fresh: bool = False) -> None:
    """Rewrite the rows derived from each listing: facets, opening intervals and, on
    SQLite, its row of the full-text index (PostgreSQL indexes the table itself)."""
    ids = [r.id for r in resources]
    if not fresh:
        db.execute(sa.delete(ResourceFacet).where(ResourceFacet.resource_id.in_(ids)))
        db.execute(sa.delete(ResourceOpening).where(ResourceOpening.resource_id.in_(ids)))
    facets, openings = [], []
    for resource in resources:
        facets += [{"resource_id": resource.id, "facet": "category", "value": value}
                   for value in resource.categories]
        facets += [{"resource_id": resource.id, "facet": "language", "value": value}
                   for value in sorted(_language_facets(resource.languages))]
        openings += [{"resource_id": resource.id, "day": i.day, "opens": i.opens,
                      "closes": i.closes}
                     for i in opening_hours.intervals(resource.opening_hours)]
    if facets:
        db.execute(sa.insert(ResourceFacet), facets)
    if openings:
        db.execute(sa.insert(ResourceOpening), openings)
    if db.get_bind().dialect.name == "sqlite":
        _index(db, resources, fresh=fresh)


# --- writing ------------------------------------------------------------------------------


def create_resource(db: Session, actor: Actor, data: ResourceCreate) -> Resource:
    """Add a listing owned by the actor's agency (and partner app, when a partner app
    adds it). Audited."""
    require_write(actor)
    return _create_many(db, actor, [data])[0]


def _create_many(db: Session, actor: Actor, items: list[ResourceCreate]) -> list[Resource]:
    now = utcnow()
    resources = []
    for data in items:
        partner_app_id = _partner_app_for(db, actor, data.partner_app_id)
        values = _columns(data)
        resources.append(Resource(org_id=actor.org_id, partner_app_id=partner_app_id,
                                  created_at=now, updated_at=now,
                                  capacity_updated_at=now if data.capacity else None,
                                  **values))
    db.add_all(resources)
    db.flush()
    _sync(db, resources, fresh=True)
    if len(resources) == 1:
        audit.record(db, actor, "resource.created", resources[0],
                     details={"address_confidential": resources[0].address_confidential})
    else:
        audit.append_many(db, action="resource.created", org_id=actor.org_id,
                          actor_type=actor.kind, actor_id=str(actor.id), object_type=TABLE,
                          object_ids=[r.id for r in resources])
    return resources


def _as_create(resource: Resource) -> dict[str, Any]:
    """A stored listing in the shape of a ResourceCreate (to apply a PATCH to)."""
    hours = _hours_out(resource)
    return {
        "name": resource.name, "description": resource.description,
        "categories": list(resource.categories), "services": list(resource.services),
        "languages": list(resource.languages),
        "eligibility": {"genders_served": list(resource.genders_served),
                        "min_age": resource.min_age, "max_age": resource.max_age,
                        "children_accepted": resource.children_accepted,
                        "pets_accepted": resource.pets_accepted},
        "accessibility": list(resource.accessibility),
        "opening_hours": hours.model_dump() if hours else None,
        "phone": resource.phone, "website": resource.website,
        "service_area": resource.service_area, "regions": list(resource.regions),
        "address": resource.address, "address_confidential": resource.address_confidential,
        "capacity": {"beds_total": resource.beds_total,
                     "beds_available": resource.beds_available},
        "partner_app_id": resource.partner_app_id,
    }


def update_resource(db: Session, actor: Actor, resource_id: UUID,
                    changes: ResourceUpdate) -> Resource:
    """Change a listing the actor manages (fields left out stay). Audited with the names
    of the fields changed."""
    resource = get_resource_for_write(db, actor, resource_id)
    given = changes.model_dump(exclude_unset=True)
    if actor.is_partner and "partner_app_id" in given:
        _partner_app_for(db, actor, given["partner_app_id"])  # refuses any other app
        given.pop("partner_app_id")
    merged = _as_create(resource) | given
    try:
        data = ResourceCreate.model_validate(merged)
    except ValidationError as exc:  # only a field combination the PATCH shape let through
        raise Invalid("One or more fields of the listing are invalid.",
                      errors=[_error(".".join(str(p) for p in e["loc"]), e["msg"])
                              for e in exc.errors()]) from exc
    values = _columns(data)
    if not actor.is_partner and "partner_app_id" in given:
        values["partner_app_id"] = _partner_app_for(db, actor, data.partner_app_id)
    changed = sorted(k for k, v in values.items() if getattr(resource, k) != v)
    for key in changed:
        setattr(resource, key, values[key])
    if changed:
        resource.updated_at = utcnow()
        db.flush()
        _sync(db, [resource])
    audit.record(db, actor, "resource.updated", resource,
                 details={"fields": ",".join(changed)[:200]})
    return resource


def update_capacity(db: Session, actor: Actor, resource_id: UUID, *, beds_available: int,
                    beds_total: int | None = None, total_given: bool = False) -> Resource:
    """Record how many beds are free now (and, when ``total_given``, how many there are),
    by the owning partner app or the owning org's staff. Audited."""
    resource = get_resource_for_write(db, actor, resource_id)
    total = beds_total if total_given else resource.beds_total
    if beds_available < 0 or (total is not None and total < 0):
        raise Invalid("Bed counts cannot be negative.",
                      errors=[_error("beds_available", "0 or more", "range")])
    if total is not None and beds_available > total:
        raise Invalid("More beds free than the resource has.",
                      errors=[_error("beds_available", "more than beds_total", "range")])
    resource.beds_available, resource.beds_total = beds_available, total
    resource.capacity_updated_at = resource.updated_at = utcnow()
    db.flush()
    audit.record(db, actor, "resource.capacity_updated", resource,
                 details={"beds_available": beds_available})
    return resource


def archive_resource(db: Session, actor: Actor, resource_id: UUID) -> None:
    """Take a listing out of the directory (kept for the referrals that name it). Audited."""
    resource = get_resource_for_write(db, actor, resource_id)
    resource.archived_at = resource.updated_at = utcnow()
    db.flush()
    if db.get_bind().dialect.name == "sqlite":
        _unindex(db, [resource.id])
    audit.record(db, actor, "resource.archived", resource)


# --- searching ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DirectoryFilters:
    """What a directory listing is narrowed to; every filter must hold."""

    q: str | None = None
    categories: tuple[str, ...] = ()  # any of these
    languages: tuple[str, ...] = ()  # any of these (a primary language covers its regions)
    pets_accepted: bool | None = None
    children_accepted: bool | None = None
    open_now: bool = False
    open_at: datetime | None = None
    mine: bool = False  # listings the caller manages

    def key(self) -> str:
        """Binds a cursor to these filters (a cursor of another search is refused)."""
        raw = json.dumps([self.q, self.categories, self.languages, self.pets_accepted,
                          self.children_accepted, self.open_now,
                          self.open_at.isoformat() if self.open_at else None, self.mine],
                         separators=(",", ":"))
        return hashlib.sha256(raw.encode()).hexdigest()[:16]


def query_terms(q: str | None) -> list[str]:
    """The words of a search, lower-cased (punctuation and operators are not syntax)."""
    return re.findall(r"\w+", (q or "").lower())[:MAX_QUERY_TERMS]


# Must stay the very expression of the migration's ix_resource_fts, or PostgreSQL will
# not use the index.
PG_SEARCH_DOCUMENT = (
    "to_tsvector('simple'::regconfig, coalesce(name, '') || ' ' || coalesce(description, '')"
    " || ' ' || coalesce(services::text, '') || ' ' || coalesce(service_area, '')"
    " || ' ' || coalesce(regions::text, ''))")


# Below this many matching listings, a text search reads the matches and sorts them;
# above it, it walks the listings in name order and stops at a page (SQLite).
FEW_MATCHES = 1000


def _text_match(db: Session, terms: list[str]) -> tuple[sa.ColumnElement[bool], bool]:
    """The text condition, and whether few listings match (so the matches should drive)."""
    if db.get_bind().dialect.name == "postgresql":
        tsquery = " & ".join(f"{term}:*" for term in terms)
        return sa.literal_column(PG_SEARCH_DOCUMENT).op("@@")(
            sa.func.to_tsquery(sa.literal_column("'simple'::regconfig"), tsquery)), False
    fts_query = " ".join(f'"{term}"*' for term in terms)
    matching = sa.select(sa.literal_column("rowid")).select_from(_FTS).where(
        sa.literal_column("resource_fts").op("MATCH")(fts_query))
    few = (db.scalar(sa.select(sa.func.count()).select_from(
        matching.limit(FEW_MATCHES + 1).subquery())) or 0) <= FEW_MATCHES
    keys = sa.select(_FTS_KEY.c.resource_id).where(_FTS_KEY.c.rowid.in_(matching))
    return Resource.id.in_(keys), few


def _facet(facet: str, values: Iterable[str]) -> sa.ColumnElement[bool]:
    return sa.exists(sa.select(ResourceFacet.resource_id).where(
        ResourceFacet.resource_id == Resource.id, ResourceFacet.facet == facet,
        ResourceFacet.value.in_(list(values))))


def open_at_clause(db: Session, moment: datetime) -> sa.ColumnElement[bool]:
    """Listings open at ``moment`` on their own clocks: the local weekday and minute are
    worked out once per time zone in use, and zones on the same local time share one
    comparison against the opening intervals."""
    # Archived listings' zones too: read from the time_zone index alone, it is far cheaper.
    zones = db.scalars(sa.select(Resource.time_zone).distinct())
    by_local: dict[tuple[int, int], list[str]] = {}
    for name in zones:
        try:
            by_local.setdefault(opening_hours.local_minute(moment, name), []).append(name)
        except (ValueError, KeyError):  # KeyError: ZoneInfoNotFoundError
            continue  # a zone removed from the tz database since: nothing is open there
    if not by_local:
        return sa.false()
    return sa.exists(sa.select(ResourceOpening.resource_id).where(
        ResourceOpening.resource_id == Resource.id,
        sa.or_(*(sa.and_(Resource.time_zone.in_(names), ResourceOpening.day == day,
                         ResourceOpening.opens <= minute, ResourceOpening.closes > minute)
                 for (day, minute), names in by_local.items()))))


def search_query(db: Session, actor: Actor, filters: DirectoryFilters,
                 *, now: datetime | None = None) -> sa.Select[Any]:
    """The directory narrowed to ``filters`` (unordered)."""
    require_read(actor)
    terms = query_terms(filters.q)
    few_matches = False
    if terms:
        text_match, few_matches = _text_match(db, terms)
    if few_matches:
        # SQLite: a unary plus keeps the name-order index out of the plan, so the few
        # matches are read by primary key and sorted instead of the whole index walked.
        query = sa.select(Resource).where(sa.literal_column("+resource.archived_at").is_(None))
    else:
        query = readable(actor)
    if terms:
        query = query.where(text_match)
    if filters.categories:
        query = query.where(_facet("category", filters.categories))
    if filters.languages:
        query = query.where(_facet("language", [t.lower() for t in filters.languages]))
    if filters.pets_accepted is not None:
        query = query.where(Resource.pets_accepted.is_(filters.pets_accepted))
    if filters.children_accepted is not None:
        query = query.where(Resource.children_accepted.is_(filters.children_accepted))
    if filters.open_at is not None:
        query = query.where(open_at_clause(db, filters.open_at))
    elif filters.open_now:
        query = query.where(open_at_clause(db, now or clock()))
    if filters.mine:
        query = query.where(Resource.org_id == actor.org_id)
        if actor.is_partner:
            query = query.where(Resource.partner_app_id == actor.id)
    return query


def search(db: Session, actor: Actor, filters: DirectoryFilters, params: PageParams,
           *, now: datetime | None = None) -> tuple[list[Resource], str | None]:
    """One page of the directory, by name. Reads of the shared directory are not audited
    row by row."""
    query = search_query(db, actor, filters, now=now)
    return paginate(db, query, listing=f"resources:{filters.key()}",
                    keys=[SortKey(Resource.name), SortKey(Resource.id)], params=params)


# --- CSV import and export ----------------------------------------------------------------

MAX_IMPORT_ROWS = 5000


def export_row(resource: Resource, actor: Actor) -> dict[str, Any]:
    """One listing as a CSV row; a confidential address is never exported."""
    return {
        "id": resource.id, "name": resource.name, "categories": resource.categories,
        "description": resource.description, "services": resource.services,
        "languages": resource.languages, "genders_served": resource.genders_served,
        "min_age": resource.min_age, "max_age": resource.max_age,
        "children_accepted": resource.children_accepted,
        "pets_accepted": resource.pets_accepted, "accessibility": resource.accessibility,
        "time_zone": resource.time_zone if resource.opening_hours else None,
        "hours": opening_hours.describe(resource.opening_hours), "phone": resource.phone,
        "website": resource.website, "service_area": resource.service_area,
        "regions": resource.regions,
        "address": (resource.address if may_see_address(actor, resource, purpose="export")
                    else None),
        "address_confidential": resource.address_confidential,
        "beds_total": resource.beds_total, "beds_available": resource.beds_available,
        "capacity_updated_at": resource.capacity_updated_at,
        "updated_at": resource.updated_at,
    }


def export_csv(db: Session, actor: Actor, filters: DirectoryFilters, *,
               now: datetime | None = None) -> str:
    """The listings matching ``filters`` as CSV, by name; audited as one export."""
    query = search_query(db, actor, filters, now=now).order_by(Resource.name, Resource.id)
    rows = [export_row(resource, actor)
            for resource in db.scalars(query.execution_options(yield_per=500))]
    audit.record(db, actor, "resource.exported", object_type=TABLE,
                 details={"count": len(rows)})
    return directory_csv.write(rows)


def _row_error(line: int, column: str, message: str, kind: str = "value") -> dict[str, Any]:
    return {"row": line, "column": column, "field": column, "location": f"row {line}",
            "message": message, "type": kind}


def _invalid_file(errors: list[dict[str, Any]]) -> Invalid:
    return Invalid("The file was not imported: fix the rows listed and send it again. "
                   "Nothing was added.", errors=errors[:500])


# Stand-ins for fields whose shape is wrong, so the checks of the other fields still run
# and a row's every bad cell is reported at once.
_STAND_INS: dict[str, Any] = {"name": "stand-in", "categories": ["other"]}


def _check_listing(fields: dict[str, Any]) -> tuple[ResourceCreate | None, list[dict[str, Any]]]:
    """A listing from a CSV row and every problem with it (the listing None if any)."""
    problems: list[dict[str, Any]] = []
    try:
        data = ResourceCreate.model_validate(fields)
    except ValidationError as exc:
        problems += [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"],
                      "type": e["type"]} for e in exc.errors()]
        shaped = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
        fields = {k: v for k, v in fields.items() if k not in shaped} | {
            k: _STAND_INS[k] for k in shaped if k in _STAND_INS}
        try:
            data = ResourceCreate.model_validate(fields)
        except ValidationError:
            return None, problems
    try:
        _columns(data)
    except Invalid as exc:
        problems += [{"field": e["field"], "message": e["message"],
                      "type": e.get("type", "value")} for e in exc.errors or []]
    return (None if problems else data), problems


def import_csv(db: Session, actor: Actor, text: str) -> list[Resource]:
    """Add every listing of a CSV file, or none: each row is checked as a new listing
    would be, and any bad cell refuses the whole file with every bad row and column
    listed (row numbers as a spreadsheet shows them, the header being row 1)."""
    require_write(actor)
    header, rows = directory_csv.read_rows(text)
    known = set(directory_csv.COLUMNS) | set(directory_csv.READ_ONLY_COLUMNS)
    errors = [_row_error(1, column or "(empty)", "unknown column", "column")
              for column in header if column not in known]
    errors += [_row_error(1, column, "required column missing", "column")
               for column in directory_csv.REQUIRED_COLUMNS if column not in header]
    if not header or not rows:
        errors.append(_row_error(1, "name", "the file has no listings", "empty"))
    if len(rows) > MAX_IMPORT_ROWS:
        errors.append(_row_error(1, "name", f"at most {MAX_IMPORT_ROWS} listings a file",
                                 "too_many"))
    if errors:
        raise _invalid_file(errors)
    listings: list[ResourceCreate] = []
    for row in rows:
        row_errors = []
        if row.extra_cells:
            row_errors.append(_row_error(row.line, "name", "more cells than columns",
                                         "cells"))
        fields, cell_errors = directory_csv.to_listing(row.cells)
        row_errors += [_row_error(row.line, e.column, e.message) for e in cell_errors]
        data, problems = _check_listing(fields)
        row_errors += [_row_error(row.line, directory_csv.column_of(e["field"]), e["message"],
                                  e["type"]) for e in problems]
        if data is not None:
            listings.append(data)
        errors += row_errors
    if errors:
        raise _invalid_file(errors)
    resources = _create_many(db, actor, listings)
    audit.record(db, actor, "resource.imported", object_type=TABLE,
                 details={"count": len(resources)})
    return resources
