"""Response shapes of the timeline: one entry model per kind, told apart by ``kind``."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, Field

from app.legal.schemas import HearingKind, HearingStatus, OrderStatus, OrderType

Precision = Literal["exact", "date", "range"]


class _Entry(BaseModel):
    id: UUID = Field(description="The record's id (an order's for both of its events)")
    at: datetime = Field(description="In UTC; a date's midnight when precision is date")
    precision: Precision


class IncidentSummary(BaseModel):
    categories: list[str]
    retracted: bool
    revision: int


class IncidentEntry(_Entry):
    kind: Literal["incident"]
    summary: IncidentSummary


class CourtDateSummary(BaseModel):
    hearing_kind: HearingKind
    status: HearingStatus
    protective_order_id: UUID | None


class CourtDateEntry(_Entry):
    kind: Literal["court_date"]
    summary: CourtDateSummary


class OrderSummary(BaseModel):
    order_type: OrderType
    status: OrderStatus


class OrderIssuedEntry(_Entry):
    kind: Literal["protective_order_issued"]
    summary: OrderSummary


class OrderExpiryEntry(_Entry):
    kind: Literal["protective_order_expiry"]
    summary: OrderSummary


class RiskSummary(BaseModel):
    instrument_id: str
    instrument_version: str
    level: str
    is_highest_level: bool
    complete: bool


class RiskEntry(_Entry):
    kind: Literal["risk_assessment"]
    summary: RiskSummary


class PlanSummary(BaseModel):
    version: int
    review_date: date


class PlanEntry(_Entry):
    kind: Literal["safety_plan_version"]
    summary: PlanSummary


TimelineEntry = Annotated[
    IncidentEntry | CourtDateEntry | OrderIssuedEntry | OrderExpiryEntry | RiskEntry
    | PlanEntry, Field(discriminator="kind")]


class TimelinePage(BaseModel):
    items: list[TimelineEntry]
    next_cursor: str | None
