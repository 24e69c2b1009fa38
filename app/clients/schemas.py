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


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
HHMM = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")


class ContactWindow(Strict):
    """When a channel is safe to use, in the client's own time zone."""

    days: list[Weekday] = Field(min_length=1, max_length=7)
    start: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="HH:MM")
    end: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="HH:MM, after start")


class SafeChannel(Strict):
    channel: Literal["phone", "sms", "email", "post"]
    safe: bool = False
    windows: list[ContactWindow] = Field(default_factory=list, max_length=14,
                                         description="Empty with safe=true: any time")
    leave_message: bool = False
    code_word: str | None = Field(default=None, max_length=100,
                                  description="Agreed word to confirm it is safe to talk")


class SafeContact(Strict):
    """How, if at all, the agency may contact the client. The default is never."""

    time_zone: str = Field(default="UTC", max_length=64, description="IANA name")
    channels: list[SafeChannel] = Field(default_factory=list, max_length=4)


class Child(Strict):
    first_name: str | None = Field(default=None, max_length=100)
    age: int | None = Field(default=None, ge=0, le=25)
    custody_notes: str | None = Field(default=None, max_length=2000)


class Pet(Strict):
    name: str | None = Field(default=None, max_length=100)
    species: str | None = Field(default=None, max_length=100)
    notes: str | None = Field(default=None, max_length=2000)


class Household(Strict):
    children: list[Child] = Field(default_factory=list, max_length=20)
    pets: list[Pet] = Field(default_factory=list, max_length=20)


class OtherParty(Strict):
    """The person the client is leaving. Encrypted like every personal field."""

    name: str | None = Field(default=None, max_length=200)
    aliases: list[str] = Field(default_factory=list, max_length=20)
    description: str | None = Field(default=None, max_length=2000)
    vehicle: str | None = Field(default=None, max_length=300)
    known_addresses: list[str] = Field(default_factory=list, max_length=20)


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
    safe_contact: SafeContact | None = None
    other_party: OtherParty | None = None


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
    safe_contact: SafeContact
    other_party: OtherParty | None
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
