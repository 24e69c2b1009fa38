"""Request and response shapes for reminders (unknown fields are refused)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

HHMM = r"^([01]\d|2[0-3]):[0-5]\d$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReminderCreate(Strict):
    due_at: AwareDatetime = Field(description="RFC 3339 with an offset")
    assignee_id: UUID | None = Field(default=None, description="Default: yourself")
    note: str | None = Field(default=None, max_length=2000)
    client_id: UUID | None = None
    audience: Literal["staff", "client"] = "staff"
    channel: Literal["email", "sms", "phone"] | None = Field(
        default=None, description="Only for audience=client")


class SnoozeIn(Strict):
    until: AwareDatetime


class ReassignIn(Strict):
    assignee_id: UUID


class ReminderOut(BaseModel):
    id: UUID
    kind: str
    audience: str
    channel: str | None
    client_id: UUID | None
    case_number: str | None
    assignee_id: UUID
    note: str | None
    due_at: datetime
    local_date: date | None
    local_time: str | None
    time_zone: str | None
    state: str
    held_reason: str | None
    source_kind: str | None
    source_id: UUID | None
    rule_key: str | None
    delivered_at: datetime | None
    completed_at: datetime | None
    created_at: datetime


class RuleLeads(Strict):
    enabled: bool = True
    lead_days: list[int] = Field(min_length=1, max_length=5)
    at: str = Field(default="09:00", pattern=HHMM, description="Local time of day")


class RuleOnDay(Strict):
    enabled: bool = True
    lead_days: int = Field(default=0, ge=0, le=60)
    at: str = Field(default="09:00", pattern=HHMM)


class RuleEnabled(Strict):
    enabled: bool = True


class RuleNoContact(Strict):
    enabled: bool = True
    days: int = Field(default=14, ge=1, le=365)


class ReminderRules(Strict):
    """An org's rules. Dates without a time (review dates, expiries) are reminded at
    ``at`` in the org's ``time_zone``; hearings in the court's own zone."""

    time_zone: str = Field(default="UTC", max_length=64)
    safety_plan_review: RuleOnDay = Field(default_factory=RuleOnDay)
    court_date: RuleLeads = Field(default_factory=lambda: RuleLeads(lead_days=[7, 1]))
    protective_order_expiry: RuleLeads = Field(
        default_factory=lambda: RuleLeads(lead_days=[30, 7]))
    check_in: RuleEnabled = Field(default_factory=RuleEnabled)
    high_risk_no_contact: RuleNoContact = Field(default_factory=RuleNoContact)
    referral_unanswered: RuleNoContact = Field(
        default_factory=lambda: RuleNoContact(days=5))


class PreferencesIn(Strict):
    email_enabled: bool = True
    time_zone: str = Field(default="UTC", max_length=64)
    quiet_start: str | None = Field(default=None, pattern=HHMM)
    quiet_end: str | None = Field(default=None, pattern=HHMM)
    daily_digest: bool = False
    digest_time: str = Field(default="08:00", pattern=HHMM)


class PreferencesOut(PreferencesIn):
    pass
