"""Request and response shapes for releases of information (unknown fields are refused)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, Field

from app.clients.schemas import Strict

Category = Literal["contact_details", "identity", "address", "safety_plan", "risk_assessment",
                   "incidents", "evidence", "household", "service_history"]
HowGiven = Literal["written", "electronic_signature", "verbal_documented"]
ReleaseStatus = Literal["active", "pending", "expired", "revoked"]


class ReleaseCreate(Strict):
    recipient_app_id: UUID | None = Field(
        default=None, description="A partner app of this agency (or give recipient_name)")
    recipient_name: str | None = Field(default=None, max_length=200,
                                       description="An outside agency (or give recipient_app_id)")
    purpose: str = Field(min_length=1, max_length=2000)
    categories: list[Category] = Field(min_length=1, max_length=20)
    how_given: HowGiven
    given_at: AwareDatetime | None = Field(default=None, description="Default: now")
    effective_from: AwareDatetime | None = Field(default=None, description="Default: given_at")
    expires_at: AwareDatetime = Field(description="At most 365 days after effective_from")


class ReleaseRevoke(Strict):
    reason: str = Field(min_length=3, max_length=2000)


class ReleaseOut(BaseModel):
    id: UUID
    client_id: UUID
    recipient_app_id: UUID | None
    recipient_name: str | None
    purpose: str
    categories: list[Category]
    how_given: HowGiven
    given_at: datetime
    effective_from: datetime
    expires_at: datetime
    status: ReleaseStatus
    recorded_by: UUID
    revoked_at: datetime | None
    revoked_by: UUID | None
    revocation_reason: str | None
    created_at: datetime
