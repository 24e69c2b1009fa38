"""Who is calling: bearer-token authentication shared by every API router."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import sqlalchemy as sa
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.core.access import Actor
from app.core.errors import Forbidden, Unauthorized
from app.db import SessionDep, utcnow
from app.identity import tokens
from app.identity.models import AuthSession, PartnerApp, PartnerToken, StaffUser

bearer = HTTPBearer(auto_error=False, description="Staff access token or partner-app token")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="advocase"'}


def _refuse(reason: str, detail: str = "The access token is missing, invalid or expired.",
            **audit: object) -> Unauthorized:
    return Unauthorized(detail, kind="invalid-token",
                        headers=_CHALLENGE | {"WWW-Authenticate":
                                              'Bearer realm="advocase", error="invalid_token"'},
                        audit={"event": "auth.token_rejected", "reason": reason, **audit})


def authenticate_request(request: Request, db: SessionDep,
                         credentials: HTTPAuthorizationCredentials | None) -> Actor:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("Sign in first: this needs a bearer token.", headers=_CHALLENGE,
                           audit={"event": "auth.token_missing"})
    try:
        claims = tokens.decode(credentials.credentials)
    except tokens.InvalidToken as exc:
        raise _refuse(exc.reason) from exc
    now = utcnow()
    if claims.audience == tokens.STAFF_AUDIENCE:
        if claims.session_id is None:
            raise _refuse("claims")
        row = db.execute(
            sa.select(StaffUser.role, StaffUser.is_active, StaffUser.org_id,
                      AuthSession.revoked_at, AuthSession.expires_at)
            .join(AuthSession, AuthSession.user_id == StaffUser.id)
            .where(AuthSession.id == claims.session_id,
                   StaffUser.id == UUID(claims.subject))
        ).first()
        if row is None or not row.is_active or row.revoked_at is not None \
                or row.expires_at <= now or row.org_id != claims.org_id:
            raise _refuse("session_ended")
        actor = Actor(kind="user", id=UUID(claims.subject), org_id=row.org_id, role=row.role,
                      scopes=frozenset(claims.scope.split()), session_id=claims.session_id)
    else:
        row = db.execute(
            sa.select(PartnerApp.id, PartnerApp.org_id, PartnerApp.is_active,
                      PartnerToken.revoked_at, PartnerToken.expires_at, PartnerToken.scope)
            .join(PartnerToken, PartnerToken.app_id == PartnerApp.id)
            .where(PartnerToken.jti == claims.token_id, PartnerApp.client_id == claims.subject)
        ).first()
        if row is None or not row.is_active or row.revoked_at is not None \
                or row.expires_at <= now:
            raise _refuse("partner_token_ended")
        actor = Actor(kind="partner_app", id=row.id, org_id=row.org_id,
                      scopes=frozenset(row.scope.split()), token_id=claims.token_id)
    request.state.actor = actor
    return actor


def any_actor(request: Request, db: SessionDep,
              credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
              ) -> Actor:
    """Any valid token, including a staff token limited to MFA enrolment."""
    return authenticate_request(request, db, credentials)


def full_actor(actor: Annotated[Actor, Depends(any_actor)]) -> Actor:
    """A valid token with full rights (an enrolment-only token is refused)."""
    if tokens.ENROLMENT_SCOPE in actor.scopes:
        raise Forbidden("Set up multi-factor authentication first (POST /api/v1/me/mfa).",
                        kind="mfa-enrolment-required",
                        audit={"event": "auth.mfa_enrolment_pending"})
    return actor


CurrentActor = Annotated[Actor, Depends(full_actor)]
EnrollingActor = Annotated[Actor, Depends(any_actor)]
