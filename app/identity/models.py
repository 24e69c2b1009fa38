"""Agencies (orgs), staff users, their sessions and MFA, and partner apps."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.db import UTCDateTime, utcnow


class Role(StrEnum):
    admin = "admin"
    supervisor = "supervisor"
    advocate = "advocate"
    auditor = "auditor"


class Org(SQLModel, table=True):
    """An agency: the tenant every row of client data belongs to."""

    __tablename__ = "org"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    slug: str = Field(max_length=63, sa_column_kwargs={"unique": True})
    name: str = Field(max_length=200)
    require_mfa_for_all: bool = Field(default=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class StaffUser(SQLModel, table=True):
    """A member of an agency's staff who signs in (clients never do)."""

    __tablename__ = "staff_user"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    org_id: UUID = Field(foreign_key="org.id", index=True)
    email: str = Field(max_length=254, sa_column_kwargs={"unique": True})
    display_name: str = Field(max_length=200)
    role: str = Field(max_length=20)
    password_hash: str | None = Field(default=None, max_length=255)
    is_active: bool = Field(default=True)
    mfa_secret: str | None = Field(default=None, max_length=255)  # sealed, see core.crypto
    mfa_enabled: bool = Field(default=False)
    mfa_last_step: int | None = Field(default=None, sa_type=sa.BigInteger)
    invitation_digest: str | None = Field(default=None, max_length=64,
                                          sa_column_kwargs={"unique": True})
    invitation_expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    password_changed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_login_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    deactivated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class RecoveryCode(SQLModel, table=True):
    """A one-time MFA recovery code, stored as a digest."""

    __tablename__ = "mfa_recovery_code"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    user_id: UUID = Field(foreign_key="staff_user.id", index=True)
    code_digest: str = Field(max_length=64, sa_column_kwargs={"unique": True})
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class AuthSession(SQLModel, table=True):
    """A sign-in: an API refresh-token family or a dashboard cookie session."""

    __tablename__ = "auth_session"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    org_id: UUID = Field(foreign_key="org.id", index=True)
    user_id: UUID = Field(foreign_key="staff_user.id", index=True)
    kind: str = Field(max_length=16)  # "api" | "dashboard"
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_seen_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_reason: str | None = Field(default=None, max_length=40)
    user_agent: str | None = Field(default=None, max_length=200)
    # Dashboard sessions: the cookie token's digest and the CSRF secret.
    cookie_digest: str | None = Field(default=None, max_length=64,
                                      sa_column_kwargs={"unique": True})
    csrf_secret: str | None = Field(default=None, max_length=64)
    reauthenticated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class RefreshToken(SQLModel, table=True):
    """One refresh token of a session's family; a spent one presented again revokes the family."""

    __tablename__ = "refresh_token"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    session_id: UUID = Field(foreign_key="auth_session.id", index=True)
    token_digest: str = Field(max_length=64, sa_column_kwargs={"unique": True})
    issued_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class PartnerApp(SQLModel, table=True):
    """Another agency's software, reaching the API with OAuth2 client credentials."""

    __tablename__ = "partner_app"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    org_id: UUID = Field(foreign_key="org.id", index=True)
    name: str = Field(max_length=200)
    client_id: str = Field(max_length=64, sa_column_kwargs={"unique": True})
    client_secret_digest: str = Field(max_length=64)
    scopes: str = Field(max_length=500)  # space-separated
    is_active: bool = Field(default=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    created_by: UUID | None = Field(default=None, foreign_key="staff_user.id")
    disabled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class PartnerToken(SQLModel, table=True):
    """An access token issued to a partner app, kept so it can be revoked (RFC 7009)."""

    __tablename__ = "partner_token"

    jti: str = Field(primary_key=True, max_length=64)
    app_id: UUID = Field(foreign_key="partner_app.id", index=True)
    scope: str = Field(max_length=500)
    issued_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
