"""Request and response shapes for protective orders and court dates (unknown fields are
refused; on PATCH, a field left out stays as it is and ``null`` clears it)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, Field, StringConstraints, field_validator

from app.clients.schemas import Strict

OrderType = Literal["emergency", "temporary", "final", "criminal_no_contact", "other"]
OrderStatus = Literal["requested", "granted", "denied", "withdrawn", "dismissed", "expired"]
HearingKind = Literal["protective_order_hearing", "custody", "criminal", "divorce", "other"]
HearingStatus = Literal["scheduled", "held", "adjourned", "cancelled"]
When = Literal["all", "upcoming", "past"]

COURT = 300
CASE_NUMBER = 100
CONDITION = 500
CONDITIONS = 50
TEXT = 20000
TIME_ZONE = 64

Court = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=COURT)]
CaseNumber = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                              max_length=CASE_NUMBER)]
Condition = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                             max_length=CONDITION)]
Text = Annotated[str, StringConstraints(max_length=TEXT)]
TimeZoneName = Annotated[str, StringConstraints(min_length=1, max_length=TIME_ZONE),
                         Field(description="IANA time zone of the court, e.g. Europe/Dublin")]


def _not_null(value: Any) -> Any:
    # An explicit null for a field that always has a value (left out is fine).
    if value is None:
        raise ValueError("may be left out but not null")
    return value


class ProtectiveOrderCreate(Strict):
    order_type: OrderType
    status: OrderStatus = "requested"
    court: Court | None = None
    case_number: CaseNumber | None = Field(default=None, description="The court's case number")
    issued_on: date | None = Field(default=None, description="Required once granted")
    expires_on: date | None = Field(default=None, description="Not before issued_on; "
                                    "empty for an order without an end date")
    conditions: list[Condition] = Field(default_factory=list, max_length=CONDITIONS)
    notes: Text | None = None


class ProtectiveOrderUpdate(Strict):
    order_type: OrderType | None = None
    status: OrderStatus | None = None
    court: Court | None = None
    case_number: CaseNumber | None = None
    issued_on: date | None = None
    expires_on: date | None = None
    conditions: list[Condition] | None = Field(default=None, max_length=CONDITIONS)
    notes: Text | None = None

    _required = field_validator("order_type", "status")(_not_null)


class ProtectiveOrderOut(BaseModel):
    id: UUID
    client_id: UUID
    order_type: OrderType
    status: OrderStatus
    in_force: bool = Field(description="Granted and not past its expiry date")
    court: str | None
    case_number: str | None
    issued_on: date | None
    expires_on: date | None
    conditions: list[str]
    notes: str | None
    created_at: datetime
    created_by: UUID
    updated_at: datetime
    updated_by: UUID


class CourtDateCreate(Strict):
    kind: HearingKind
    starts_at: AwareDatetime = Field(description="RFC 3339 with an offset: UTC (Z) or the "
                                     "offset of time_zone at that moment")
    time_zone: TimeZoneName
    status: HearingStatus = "scheduled"
    court: Court | None = None
    notes: Text | None = None
    outcome: Text | None = None
    protective_order_id: UUID | None = Field(default=None,
                                             description="An order of the same client")


class CourtDateUpdate(Strict):
    kind: HearingKind | None = None
    starts_at: AwareDatetime | None = None
    time_zone: TimeZoneName | None = None
    status: HearingStatus | None = None
    court: Court | None = None
    notes: Text | None = None
    outcome: Text | None = None
    protective_order_id: UUID | None = None

    _required = field_validator("kind", "starts_at", "time_zone", "status")(_not_null)


class CourtDateOut(BaseModel):
    id: UUID
    client_id: UUID
    kind: HearingKind
    starts_at: datetime = Field(description="In UTC")
    time_zone: str
    local_starts_at: datetime = Field(description="The same moment in the court's time zone")
    status: HearingStatus
    court: str | None
    notes: str | None
    outcome: str | None
    protective_order_id: UUID | None
    created_at: datetime
    created_by: UUID
    updated_at: datetime
    updated_by: UUID
