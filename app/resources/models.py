"""The resource directory: organisations and services advocates refer clients to.

A resource belongs to the org that owns the listing and, optionally, to one of that
org's partner apps (a shelter's own software keeping its listing and bed count up to
date). The directory is shared across the installation; the street address of a
confidential resource (a shelter) is withheld by ``service.may_see_address``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.db import UTCDateTime, utcnow

CATEGORIES: tuple[str, ...] = (
    "shelter", "hotline", "legal_aid", "counselling", "medical", "financial", "housing",
    "child_services", "pet_friendly_shelter", "transport", "immigration", "substance_use",
    "other",
)
GENDERS: tuple[str, ...] = ("women", "men", "non_binary", "transgender")
ACCESSIBILITY_FEATURES: tuple[str, ...] = (
    "wheelchair_access", "step_free_entrance", "accessible_toilet", "accessible_rooms",
    "hearing_loop", "sign_language", "braille", "large_print", "easy_read",
    "service_animals_welcome", "quiet_space", "interpreters_available",
)
# The facets a listing is filtered on, a row each (see ResourceFacet).
FACETS: tuple[str, ...] = ("category", "language")
DAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MINUTES_PER_DAY = 24 * 60


class Resource(SQLModel, table=True):
    """One organisation or service in the directory (a shelter, a hotline, a legal-aid
    clinic). ``categories``, ``languages`` and ``opening_hours`` are the canonical copies
    returned to callers; ``ResourceFacet`` and ``ResourceOpening`` rows are derived from
    them for filtering, rewritten by the service on every change."""

    __tablename__ = "resource"
    __table_args__ = (
        sa.CheckConstraint("min_age IS NULL OR (min_age >= 0 AND min_age <= 120)",
                           name="min_age"),
        sa.CheckConstraint("max_age IS NULL OR (max_age >= 0 AND max_age <= 120)",
                           name="max_age"),
        sa.CheckConstraint("min_age IS NULL OR max_age IS NULL OR min_age <= max_age",
                           name="age_range"),
        sa.CheckConstraint("beds_total IS NULL OR beds_total >= 0", name="beds_total"),
        sa.CheckConstraint("beds_available IS NULL OR (beds_available >= 0 AND "
                           "(beds_total IS NULL OR beds_available <= beds_total))",
                           name="beds_available"),
        sa.Index("ix_resource_archived_at_name_id", "archived_at", "name", "id"),
    )

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    org_id: UUID = Field(foreign_key="org.id", index=True)
    partner_app_id: UUID | None = Field(default=None, foreign_key="partner_app.id", index=True)
    name: str = Field(max_length=200)
    description: str = Field(default="", sa_type=sa.Text)
    categories: list[Any] = Field(sa_type=sa.JSON)  # names from CATEGORIES
    services: list[Any] = Field(default_factory=list, sa_type=sa.JSON)  # short texts
    languages: list[Any] = Field(default_factory=list, sa_type=sa.JSON)  # BCP 47 tags
    genders_served: list[Any] = Field(default_factory=list, sa_type=sa.JSON)  # empty: anyone
    min_age: int | None = None
    max_age: int | None = None
    children_accepted: bool | None = None  # None: not known
    pets_accepted: bool | None = None
    accessibility: list[Any] = Field(default_factory=list, sa_type=sa.JSON)
    time_zone: str = Field(default="UTC", max_length=64, index=True)  # IANA name
    # {"always_open": bool, "weekly": [{"day", "opens", "closes"}]} or None (not known)
    opening_hours: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    phone: str | None = Field(default=None, max_length=40)
    website: str | None = Field(default=None, max_length=500)
    service_area: str | None = Field(default=None, max_length=500)
    regions: list[Any] = Field(default_factory=list, sa_type=sa.JSON)
    # Withheld from everyone but the owning org's staff while address_confidential is set;
    # confidential unless the listing says otherwise (fail closed).
    address: str | None = Field(default=None, max_length=500)
    address_confidential: bool = Field(default=True)
    beds_total: int | None = None
    beds_available: int | None = None
    capacity_updated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    archived_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ResourceFacet(SQLModel, table=True):
    """One category or language of a resource, a row each, so listings filter with plain
    indexed SQL on any database (the JSON lists on ``Resource`` are what callers see)."""

    __tablename__ = "resource_facet"
    __table_args__ = (
        sa.CheckConstraint("facet IN (" + ", ".join(f"'{f}'" for f in FACETS) + ")",
                           name="facet_known"),
        sa.Index("ix_resource_facet_facet_value", "facet", "value"),
    )

    resource_id: UUID = Field(foreign_key="resource.id", primary_key=True)
    facet: str = Field(max_length=16, primary_key=True)
    value: str = Field(max_length=64, primary_key=True)


class ResourceOpening(SQLModel, table=True):
    """One opening interval in the resource's local time: ``day`` 0 (Monday) to 6, from
    ``opens`` to ``closes`` minutes after local midnight. An overnight range is stored
    as two rows split at midnight, 24/7 as seven whole days, so "open now" is one
    indexed comparison per time zone."""

    __tablename__ = "resource_opening"
    __table_args__ = (
        sa.CheckConstraint("day >= 0 AND day <= 6", name="day"),
        sa.CheckConstraint(f"opens >= 0 AND opens < closes AND closes <= {MINUTES_PER_DAY}",
                           name="interval"),
        sa.Index("ix_resource_opening_day_opens", "day", "opens", "closes"),
    )

    resource_id: UUID = Field(foreign_key="resource.id", primary_key=True)
    day: int = Field(primary_key=True)
    opens: int = Field(primary_key=True)
    closes: int
