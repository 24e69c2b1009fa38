"""Request and response shapes for incidents (unknown fields are refused everywhere)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field, StringConstraints, field_validator

from app.clients.schemas import Strict

SHORT = 200
LINE = 500
TEXT = 4000
NARRATIVE = 20000
LIST = 50

Category = Literal[
    "physical", "sexual", "emotional_verbal", "threats", "stalking", "technology_facilitated",
    "financial", "property_damage", "protective_order_violation", "child_related",
]
Precision = Literal["exact", "date", "range"]


class Occurrence(Strict):
    """When it happened, in the client's time zone.

    - ``exact``: ``start`` is a local date and time (``2026-03-01T21:30``; an offset, if
      given, is converted to ``time_zone``), no ``end``;
    - ``date``: ``start`` is a date only (``2026-03-01``), no time, no ``end``;
    - ``range``: somewhere between ``start`` and ``end``, each a local date and time or a
      date (a date ``end`` means the end of that day); ``end`` after ``start``.
    Nothing may lie in the future."""

    precision: Precision
    start: str = Field(min_length=10, max_length=40)
    end: str | None = Field(default=None, min_length=10, max_length=40)
    time_zone: str = Field(min_length=1, max_length=64,
                           description="The client's IANA time zone, e.g. America/Chicago")


class Witness(Strict):
    name: str = Field(default="", max_length=SHORT)
    contact: str = Field(default="", max_length=LINE)
    note: str = Field(default="", max_length=TEXT)


class Police(Strict):
    involved: bool | None = Field(default=None, description="null: not known")
    agency: str = Field(default="", max_length=SHORT)
    report_number: str = Field(default="", max_length=100)
    officer: str = Field(default="", max_length=SHORT)


class RespondentIdentifier(Strict):
    """A phone number, account handle or address the other person used in the incident."""

    kind: Literal["phone", "account_handle", "email", "other"]
    value: str = Field(min_length=1, max_length=300)
    platform: str = Field(default="", max_length=100,
                          description="Where a handle lives (an app, a site)")


class IncidentFields(Strict):
    """What an incident says: the whole record, sent whole on every revision."""

    occurred: Occurrence
    categories: list[Category] = Field(min_length=1, max_length=10)
    place: str = Field(default="", max_length=LINE)
    client_account: str = Field(default="", max_length=NARRATIVE,
                                description="What happened, in the client's own words")
    advocate_observations: str = Field(default="", max_length=NARRATIVE,
                                       description="What the advocate saw or noted, "
                                                   "kept apart from the client's account")
    injuries: str = Field(default="", max_length=TEXT)
    medical_care: str = Field(default="", max_length=TEXT)
    witnesses: list[Witness] = Field(default_factory=list, max_length=LIST)
    police: Police = Field(default_factory=Police)
    children_present: bool | None = Field(default=None, description="null: not known")
    weapons_involved: bool | None = Field(default=None, description="null: not known")
    respondent_identifiers: list[RespondentIdentifier] = Field(default_factory=list,
                                                               max_length=LIST)

    @field_validator("categories")
    @classmethod
    def _no_repeats(cls, categories: list[str]) -> list[str]:
        if len(set(categories)) != len(categories):
            raise ValueError("a category is listed twice")
        return categories


class IncidentCreate(IncidentFields):
    pass


# Why a revision was made: required, and not just blanks.
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=LINE)]


class RevisionCreate(IncidentFields):
    """The whole incident as it should now read, why, and which revision it corrects."""

    reason: Reason
    based_on_revision: int = Field(ge=1, le=1_000_000, description=(
        "The revision you edited; 409 when someone saved another one since"))


class Retraction(Strict):
    reason: Reason


class OccurrenceOut(BaseModel):
    precision: Precision
    time_zone: str
    start: str = Field(description="Local to time_zone: a date for precision date, else a "
                                   "date and time with its offset")
    end: str | None
    start_utc: datetime
    end_utc: datetime | None = Field(description="Exclusive end of the window (the end of "
                                                 "the day for precision date)")


class IncidentSummary(BaseModel):
    """A line of a client's incident list: no narrative, no names."""

    id: UUID
    client_id: UUID
    revision: int
    retracted: bool
    occurred: OccurrenceOut
    categories: list[Category]
    children_present: bool | None
    weapons_involved: bool | None
    recorded_at: datetime
    recorded_by: UUID
    revised_at: datetime
    revised_by: UUID


class IncidentOut(IncidentSummary):
    """The incident as its current revision says."""

    place: str
    client_account: str
    advocate_observations: str
    injuries: str
    medical_care: str
    witnesses: list[Witness]
    police: Police
    respondent_identifiers: list[RespondentIdentifier]
    reason: str | None = Field(description="Why the current revision was made (null for the "
                                           "first)")


class ChangeOut(BaseModel):
    path: str
    before: Any = None
    after: Any = None
    kind: Literal["changed", "added", "removed"]


class RevisionOut(BaseModel):
    """One revision exactly as saved, and what changed from the one before it."""

    revision: int
    created_at: datetime
    created_by: UUID
    retracted: bool
    reason: str | None
    occurred: OccurrenceOut
    categories: list[Category]
    children_present: bool | None
    weapons_involved: bool | None
    place: str
    client_account: str
    advocate_observations: str
    injuries: str
    medical_care: str
    witnesses: list[Witness]
    police: Police
    respondent_identifiers: list[RespondentIdentifier]
    changes: list[ChangeOut] = Field(description="From the previous revision; empty for the "
                                                 "first")
