"""Request and response shapes for clients (unknown fields are refused)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

Status = Literal["intake", "active", "closed"]
ClosingReason = Literal["goals_met", "client_request", "lost_contact", "referred_elsewhere",
                        "moved_away", "other"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ContactDetail(Strict):
    kind: Literal["phone", "email", "post", "other"]
    value: str = Field(min_length=1, max_length=300)
    label: str | None = Field(default=None, max_length=100)


class PersonalFields(Strict):
    """Every personal field is optional: anonymous and pseudonymous clients are normal."""

    preferred_name: str | None = Field(default=None, max_length=200,
                                       description="Name or pseudonym the client uses")
    legal_name: str | None = Field(default=None, max_length=200)
    aliases: list[str] | None = Field(default=None, max_length=20)
    date_of_birth: str | None = Field(default=None, max_length=10, description="YYYY-MM-DD")
    contact_details: list[ContactDetail] | None = Field(default=None, max_length=20)
    address: str | None = Field(default=None, max_length=1000)
    notes: str | None = Field(default=None, max_length=20000)


class ClientCreate(PersonalFields):
    status: Status = "intake"
    assigned_user_ids: list[UUID] | None = Field(
        default=None, description="Default: the creating advocate")


class ClientUpdate(PersonalFields):
    status: Status | None = None
    closing_reason: ClosingReason | None = None
    urgent: bool | None = None
    assigned_user_ids: list[UUID] | None = Field(default=None, description="Supervisors only")


class ClientSummary(BaseModel):
    id: UUID
    case_number: str
    status: Status
    urgent: bool
    preferred_name: str | None
    created_at: datetime
    updated_at: datetime


class ClientOut(BaseModel):
    id: UUID
    org_id: UUID
    case_number: str
    status: Status
    closing_reason: str | None
    urgent: bool
    preferred_name: str | None
    legal_name: str | None
    aliases: list[str]
    date_of_birth: str | None
    contact_details: list[ContactDetail]
    address: str | None
    notes: str | None
    assigned_user_ids: list[UUID]
    access: Literal["caseload", "org", "break_glass"]
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None


class BreakGlassIn(Strict):
    reason: str = Field(min_length=10, max_length=1000)


class BreakGlassOut(BaseModel):
    id: UUID
    client_id: UUID
    granted_at: datetime
    expires_at: datetime
