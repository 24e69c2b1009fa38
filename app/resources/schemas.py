"""Request and response shapes for the resource directory (unknown fields are refused; on
PATCH, a field left out stays as it is and ``null`` clears it)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field, StringConstraints, field_validator

from app.clients.schemas import Strict

Category = Literal["shelter", "hotline", "legal_aid", "counselling", "medical", "financial",
                   "housing", "child_services", "pet_friendly_shelter", "transport",
                   "immigration", "substance_use", "other"]
Gender = Literal["women", "men", "non_binary", "transgender"]
AccessibilityFeature = Literal[
    "wheelchair_access", "step_free_entrance", "accessible_toilet", "accessible_rooms",
    "hearing_loop", "sign_language", "braille", "large_print", "easy_read",
    "service_animals_welcome", "quiet_space", "interpreters_available"]
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

NAME = 200
DESCRIPTION = 5000
SHORT = 200
TEXT = 500
LIST = 50

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=NAME)]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                             max_length=SHORT)]
LanguageTag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=2,
                                               max_length=35),
                        Field(description="A BCP 47 language tag, e.g. en, pl, pt-BR, sgn-IE")]
Clock = Annotated[str, StringConstraints(pattern=r"^([01]\d|2[0-3]):[0-5]\d$"),
                  Field(description="Local time HH:MM, 00:00 to 23:59")]
ClosingClock = Annotated[str, StringConstraints(pattern=r"^(([01]\d|2[0-3]):[0-5]\d|24:00)$"),
                         Field(description="Local time HH:MM, up to 24:00; at or before "
                               "`opens` means the range runs past midnight into the next day")]
TimeZoneName = Annotated[str, StringConstraints(min_length=1, max_length=64),
                         Field(description="IANA time zone, e.g. Europe/Dublin")]


def _not_null(value: Any) -> Any:
    # An explicit null for a field that always has a value (left out is fine).
    if value is None:
        raise ValueError("may be left out but not null")
    return value


class OpeningRange(Strict):
    day: Day
    opens: Clock
    closes: ClosingClock


class OpeningHours(Strict):
    time_zone: TimeZoneName
    always_open: bool = Field(default=False, description="Open 24 hours, 7 days a week")
    weekly: list[OpeningRange] = Field(default_factory=list, max_length=LIST,
                                       description="Empty when always_open")


class Eligibility(Strict):
    genders_served: list[Gender] = Field(default_factory=list,
                                         description="Empty: people of any gender")
    min_age: int | None = Field(default=None, ge=0, le=120)
    max_age: int | None = Field(default=None, ge=0, le=120)
    children_accepted: bool | None = Field(default=None, description="null: not known")
    pets_accepted: bool | None = Field(default=None, description="null: not known")


class CapacityIn(Strict):
    beds_total: int | None = Field(default=None, ge=0, le=100000)
    beds_available: int | None = Field(default=None, ge=0, le=100000)


class ResourceCreate(Strict):
    name: Name
    description: str = Field(default="", max_length=DESCRIPTION)
    categories: list[Category] = Field(min_length=1, max_length=len(Category.__args__))
    services: list[ShortText] = Field(default_factory=list, max_length=LIST)
    languages: list[LanguageTag] = Field(default_factory=list, max_length=LIST)
    eligibility: Eligibility = Field(default_factory=Eligibility)
    accessibility: list[AccessibilityFeature] = Field(default_factory=list,
                                                      max_length=LIST)
    opening_hours: OpeningHours | None = Field(default=None, description="null: not known")
    phone: str | None = Field(default=None, max_length=40)
    website: str | None = Field(default=None, max_length=TEXT)
    service_area: str | None = Field(default=None, max_length=TEXT)
    regions: list[ShortText] = Field(default_factory=list, max_length=LIST)
    address: str | None = Field(default=None, max_length=TEXT)
    address_confidential: bool = Field(
        default=True, description="Withhold the address from everyone but your own staff "
        "(never sent to partner apps, exported or printed). Default: withheld.")
    capacity: CapacityIn | None = None
    partner_app_id: UUID | None = Field(
        default=None, description="A partner app of your agency that may keep this listing "
        "up to date (a partner app's own listings are always its own)")


class ResourceUpdate(Strict):
    name: Name | None = None
    description: str | None = Field(default=None, max_length=DESCRIPTION)
    categories: list[Category] | None = Field(default=None, min_length=1,
                                              max_length=len(Category.__args__))
    services: list[ShortText] | None = Field(default=None, max_length=LIST)
    languages: list[LanguageTag] | None = Field(default=None, max_length=LIST)
    eligibility: Eligibility | None = None
    accessibility: list[AccessibilityFeature] | None = Field(default=None, max_length=LIST)
    opening_hours: OpeningHours | None = None
    phone: str | None = Field(default=None, max_length=40)
    website: str | None = Field(default=None, max_length=TEXT)
    service_area: str | None = Field(default=None, max_length=TEXT)
    regions: list[ShortText] | None = Field(default=None, max_length=LIST)
    address: str | None = Field(default=None, max_length=TEXT)
    address_confidential: bool | None = None
    partner_app_id: UUID | None = None

    _required = field_validator("name", "categories", "description", "services",
                                "languages", "eligibility", "accessibility", "regions",
                                "address_confidential")(_not_null)


class CapacityUpdate(Strict):
    beds_available: int = Field(ge=0, le=100000)
    beds_total: int | None = Field(default=None, ge=0, le=100000,
                                   description="Left out: unchanged; null: not known")


class CapacityOut(BaseModel):
    beds_total: int | None
    beds_available: int | None
    updated_at: datetime | None


class ResourceOut(BaseModel):
    id: UUID
    org_id: UUID
    partner_app_id: UUID | None
    name: str
    description: str
    categories: list[str]
    services: list[str]
    languages: list[str]
    eligibility: Eligibility
    accessibility: list[str]
    opening_hours: OpeningHours | None
    open_now: bool | None = Field(description="At the time of the request, in the "
                                  "resource's time zone; null when the hours are not known")
    phone: str | None
    website: str | None
    service_area: str | None
    regions: list[str]
    address: str | None = Field(description="null when there is none or it is withheld "
                                "from you (address_confidential)")
    address_confidential: bool
    capacity: CapacityOut | None
    created_at: datetime
    updated_at: datetime


class ImportResult(BaseModel):
    imported: int
    ids: list[UUID]
