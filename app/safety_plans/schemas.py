"""Request and response shapes for safety plans (unknown fields are refused everywhere)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, Field, StringConstraints, field_validator

from app.clients.schemas import Strict

SHORT = 200
LINE = 500
TEXT = 4000
LIST = 50

ContactMode = Literal["none", "written_logistics_only", "other"]


class SafePlace(Strict):
    place: str = Field(min_length=1, max_length=SHORT)
    how_to_get_there: str = Field(default="", max_length=LINE)


class ChecklistItem(Strict):
    item: str = Field(min_length=1, max_length=SHORT)
    ready: bool = False


class TechItem(Strict):
    item: str = Field(min_length=1, max_length=SHORT)
    done: bool = False


class ImportantContact(Strict):
    name: str = Field(min_length=1, max_length=SHORT)
    phone: str = Field(default="", max_length=40)
    note: str = Field(default="", max_length=LINE)


class CodeWord(Strict):
    word: str = Field(default="", max_length=100)
    trusted_person: str = Field(default="", max_length=SHORT)
    check_in_time: str | None = Field(default=None, pattern=r"^([01]\d|2[0-3]):[0-5]\d$",
                                      description="HH:MM, 24-hour clock")


class ContactWithOtherParty(Strict):
    mode: ContactMode = "none"
    notes: str = Field(default="", max_length=TEXT)


class PlanContent(Strict):
    """The whole plan. Every section is optional and defaults to empty."""

    safe_places: list[SafePlace] = Field(default_factory=list, max_length=LIST)
    go_bag: list[ChecklistItem] = Field(default_factory=list, max_length=LIST)
    important_contacts: list[ImportantContact] = Field(default_factory=list, max_length=LIST)
    code_word: CodeWord = Field(default_factory=CodeWord)
    children: str = Field(default="", max_length=TEXT)
    pets: str = Field(default="", max_length=TEXT)
    technology_safety: list[TechItem] = Field(default_factory=list, max_length=LIST)
    money: str = Field(default="", max_length=TEXT)
    housing_and_legal: str = Field(default="", max_length=TEXT)
    contact_with_other_party: ContactWithOtherParty = Field(
        default_factory=ContactWithOtherParty)
    reasons_for_leaving: str = Field(default="", max_length=TEXT)
    notes: str = Field(default="", max_length=TEXT)


class PlanCreate(Strict):
    content: PlanContent
    review_date: date = Field(description="Not in the past, at most 365 days ahead")
    change_note: str | None = Field(default=None, max_length=LINE)


class PlanSummary(BaseModel):
    version: int
    review_date: date
    created_at: datetime
    created_by: UUID


class PlanOut(PlanSummary):
    client_id: UUID
    content: PlanContent
    change_note: str | None


class ChangeOut(BaseModel):
    path: str
    before: Any = None
    after: Any = None
    kind: Literal["changed", "added", "removed"]


class DiffOut(BaseModel):
    from_version: int
    to_version: int
    changes: list[ChangeOut]


class Template(BaseModel):
    go_bag: list[ChecklistItem]
    technology_safety: list[TechItem]
    updated_at: datetime | None = Field(
        description="When the agency last changed its template; null: the built-in one")
    updated_by: UUID | None


def _single_spaced(text: str) -> str:
    return " ".join(text.split())


# One checklist line: no control characters (so no line breaks), no blank item, and no
# longer than a plan's own checklist item, so every template item fits a plan.
TemplateItem = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=SHORT,
                      pattern=r"^[^\x00-\x1f\x7f]*$"),
    AfterValidator(_single_spaced),
]


class TemplateUpdate(Strict):
    """The agency's whole starting checklist (replaces the previous one)."""

    go_bag: list[TemplateItem] = Field(max_length=LIST)
    technology_safety: list[TemplateItem] = Field(max_length=LIST)

    @field_validator("go_bag", "technology_safety")
    @classmethod
    def _no_duplicates(cls, items: list[str]) -> list[str]:
        seen: dict[str, int] = {}
        for position, item in enumerate(items):
            key = item.casefold()
            if key in seen:
                # Positions, not the text: a refusal never echoes what was sent.
                raise ValueError(f"items {seen[key]} and {position} are the same")
            seen[key] = position
        return items
