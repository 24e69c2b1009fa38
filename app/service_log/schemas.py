"""Request and response shapes for the service log (unknown fields are refused)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, Field

from app.clients.schemas import Strict

ContactKind = Literal["hotline_call", "in_person", "court_accompaniment",
                      "hospital_accompaniment", "counselling", "shelter_night",
                      "legal_advocacy", "transport", "other"]


class ContactCreate(Strict):
    kind: ContactKind
    occurred_on: date
    started_at: AwareDatetime | None = None
    duration_minutes: int = Field(default=0, ge=0, le=1440)
    staff_user_id: UUID | None = Field(default=None, description="Default: you")
    notes: str | None = Field(default=None, max_length=20000)


class ContactOut(BaseModel):
    id: UUID
    client_id: UUID
    kind: ContactKind
    occurred_on: date
    started_at: datetime | None
    duration_minutes: int
    staff_user_id: UUID
    notes: str | None
    recorded_by: UUID
    created_at: datetime
