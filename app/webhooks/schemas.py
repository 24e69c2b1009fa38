"""Request and response shapes for webhook endpoints and deliveries (unknown fields are
refused; on PATCH a field left out stays as it is)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from app.webhooks.service import EVENT_TYPES
from app.webhooks.targets import MAX_URL_LENGTH

Url = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                       max_length=MAX_URL_LENGTH),
                Field(description="https address that receives the events; its host must "
                                  "resolve to public addresses only",
                      examples=["https://partner.example.org/advocase/webhooks"])]
EventTypes = Annotated[list[str], Field(
    min_length=1, max_length=len(EVENT_TYPES),
    description="Event types to receive: " + ", ".join(EVENT_TYPES),
    json_schema_extra={"items": {"type": "string", "enum": list(EVENT_TYPES)}})]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EndpointCreate(Strict):
    url: Url
    event_types: EventTypes = Field(default_factory=lambda: list(EVENT_TYPES))


def _not_null(value: Any) -> Any:
    if value is None:
        raise ValueError("may be left out but not null")
    return value


class EndpointUpdate(Strict):
    url: Url | None = None
    event_types: EventTypes | None = None
    is_active: bool | None = Field(default=None, description="false pauses deliveries")

    @field_validator("url", "event_types", "is_active", mode="before")
    @classmethod
    def _no_null(cls, value: Any) -> Any:
        return _not_null(value)


class EndpointOut(BaseModel):
    id: UUID
    url: str
    event_types: list[str]
    is_active: bool
    created_at: datetime
    updated_at: datetime
    secret_rotated_at: datetime | None


class EndpointCreated(EndpointOut):
    secret: str = Field(description="The signing secret (whsec_…), shown only in this "
                                    "response: keep it")


class SecretOut(BaseModel):
    endpoint_id: UUID
    secret: str = Field(description="The new signing secret, shown only in this response")
    secret_rotated_at: datetime


class AttemptOut(BaseModel):
    number: int
    started_at: datetime
    duration_ms: int | None = Field(description="null when the worker vanished mid-attempt")
    status_code: int | None
    error: str | None = Field(description="error class (e.g. ConnectTimeout), no message")
    succeeded: bool
    replay: bool


class DeliveryOut(BaseModel):
    id: UUID
    endpoint_id: UUID
    event_id: UUID = Field(description="the webhook-id header of every attempt")
    event_type: str
    subject_id: UUID
    state: str = Field(description="pending, sending, succeeded or failed")
    attempt_count: int
    next_attempt_at: datetime | None
    created_at: datetime
    succeeded_at: datetime | None
    failed_at: datetime | None
    attempts: list[AttemptOut]
