"""Request and response shapes for evidence (unknown fields are refused)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from app.evidence.models import PURPOSES

# Why the evidence is accessed (kept in its chain of custody).
Purpose = Literal[PURPOSES]  # type: ignore[valid-type]

TEXT_FIELDS = ("description", "captured_at", "captured_by", "capture_device", "source_notes")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EvidenceMetadata(Strict):
    """The form fields sent with the file (all optional; the client may not know)."""

    description: str | None = Field(default=None, max_length=4000,
                                    description="What the file shows")
    captured_at: AwareDatetime | None = Field(
        default=None, description="When it was captured, RFC 3339 with an offset")
    captured_by: str | None = Field(default=None, max_length=200,
                                    description="Who captured it, as told by the client")
    capture_device: str | None = Field(default=None, max_length=200,
                                       description="On what device, as told by the client")
    source_notes: str | None = Field(default=None, max_length=2000,
                                     description="Where it comes from, in the client's words")


class EvidenceSource(BaseModel):
    captured_by: str | None
    device: str | None
    notes: str | None


class HashCheckOut(BaseModel):
    at: datetime
    outcome: str


class EvidenceOut(BaseModel):
    id: UUID
    incident_id: UUID
    client_id: UUID
    content_type: str
    size_bytes: int
    sha256: str = Field(description="SHA-256 of the original bytes, lower-case hex")
    original_filename: str | None
    description: str | None
    captured_at: datetime | None
    source: EvidenceSource
    uploaded_by: UUID
    uploaded_at: datetime
    last_hash_check: HashCheckOut | None


class CustodyEventOut(BaseModel):
    id: UUID
    at: datetime
    action: str
    actor_type: str
    actor_id: UUID | None
    purpose: str | None
    outcome: str
    byte_range: str | None


class EvidenceDetail(EvidenceOut):
    custody: list[CustodyEventOut]


UPLOAD_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "additionalProperties": False,
                "properties": {
                    "file": {"type": "string", "format": "binary",
                             "description": "The file, unchanged. Its type is judged from "
                                            "its content against an allowlist."},
                    "description": {"type": "string", "maxLength": 4000},
                    "captured_at": {"type": "string", "format": "date-time"},
                    "captured_by": {"type": "string", "maxLength": 200},
                    "capture_device": {"type": "string", "maxLength": 200},
                    "source_notes": {"type": "string", "maxLength": 2000},
                },
            },
            "encoding": {"file": {"contentType": "application/octet-stream"}},
        }},
    },
}
