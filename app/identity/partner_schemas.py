"""Request and response shapes for partner apps and the OAuth endpoints (unknown fields refused).

The client secret appears in exactly two responses (creation and rotation) and its
digest in none.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

ScopeName = Literal["referrals:read", "referrals:write", "resources:read", "resources:write"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PartnerAppCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    scopes: list[ScopeName] = Field(min_length=1, max_length=4)


class PartnerAppUpdate(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    scopes: list[ScopeName] | None = Field(default=None, min_length=1, max_length=4)
    is_active: bool | None = Field(default=None, description=(
        "false disables the app: its tokens stop working at once"))


class PartnerAppOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    org_id: UUID
    name: str
    client_id: str
    scopes: list[str]
    is_active: bool
    created_at: datetime
    created_by: UUID | None
    disabled_at: datetime | None

    @field_validator("scopes", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return value.split() if isinstance(value, str) else value


class PartnerAppCreated(PartnerAppOut):
    client_secret: str = Field(description="Shown this once; store it in the partner app now")


class PartnerAppSecretOut(BaseModel):
    id: UUID
    client_id: str
    client_secret: str = Field(description="Shown this once; the previous secret and its "
                                           "tokens stop working now")


class TokenResponse(BaseModel):
    """RFC 6749 §5.1 (documentation of ``POST /oauth/token``)."""

    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int
    scope: str


class OAuthError(BaseModel):
    """RFC 6749 §5.2."""

    error: str
    error_description: str | None = None


class AuthorizationServerMetadata(BaseModel):
    """RFC 8414 §2."""

    issuer: str
    token_endpoint: str
    revocation_endpoint: str
    jwks_uri: str
    grant_types_supported: list[str]
    response_types_supported: list[str]
    token_endpoint_auth_methods_supported: list[str]
    revocation_endpoint_auth_methods_supported: list[str]
    scopes_supported: list[str]
