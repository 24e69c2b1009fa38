"""Request and response shapes for identity routes (unknown fields are refused)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

RoleName = Literal["admin", "supervisor", "advocate", "auditor"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginIn(Strict):
    email: str = Field(min_length=3, max_length=254)
    password: str = Field(min_length=1, max_length=1024)
    totp_code: str | None = Field(default=None, max_length=32)


class TokenOut(BaseModel):
    access_token: str
    refresh_token: str | None
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - a token type, not a secret
    expires_in: int
    scope: str | None = None


class RefreshIn(Strict):
    refresh_token: str = Field(min_length=10, max_length=200)


class AcceptInvitationIn(Strict):
    token: str = Field(min_length=10, max_length=200)
    password: str = Field(max_length=1024)


class UserOut(BaseModel):
    id: UUID
    org_id: UUID
    email: str
    display_name: str
    role: RoleName
    is_active: bool
    mfa_enabled: bool
    created_at: datetime
    last_login_at: datetime | None


class MeOut(UserOut):
    org_slug: str
    org_name: str
    mfa_required: bool
    permissions: list[str]


class UserCreate(Strict):
    email: str = Field(min_length=3, max_length=254)
    display_name: str = Field(min_length=1, max_length=200)
    role: RoleName
    password: str | None = Field(default=None, max_length=1024, description=(
        "Optional: without it the response carries a one-time invitation token"))


class UserCreated(UserOut):
    invitation_token: str | None = None
    invitation_expires_at: datetime | None = None


class UserUpdate(Strict):
    role: RoleName | None = None
    is_active: bool | None = None
    display_name: str | None = Field(default=None, min_length=1, max_length=200)


class ReauthIn(Strict):
    password: str = Field(min_length=1, max_length=1024)


class PasswordChangeIn(Strict):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(max_length=1024)


class MfaEnrolmentOut(BaseModel):
    secret: str
    otpauth_uri: str
    qr_svg: str = Field(description="data: URI of an SVG QR code for the otpauth URI")


class MfaConfirmIn(Strict):
    totp_code: str = Field(min_length=6, max_length=10)


class RecoveryCodesOut(BaseModel):
    recovery_codes: list[str]


class SessionOut(BaseModel):
    id: UUID
    kind: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    user_agent: str | None
    current: bool
