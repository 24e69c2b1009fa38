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
from app.identity.models import AuthSession, Org, PartnerApp, PartnerToken, StaffUser

bearer = HTTPBearer(auto_error=False, description="Staff access token or partner-app token")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="advocase"'}


def _refuse(reason: str, detail: str = "The access token is missing, invalid or expired.",
            **audit: object) -> Unauthorized:
    return Unauthorized(detail, kind="invalid-token",
                        headers=_CHALLENGE | {"WWW-Authenticate":
                                              'Bearer realm="advocase", error="invalid_token"'},
                        audit={"event": "auth.token_rejected", "reason": reason, **audit})


_user, _session, _org = (StaffUser.__table__.c, AuthSession.__table__.c, Org.__table__.c)
_STAFF_LOOKUP = (
    sa.select(_user.id, _user.org_id, _user.email, _user.display_name, _user.role,
              _user.is_active, _user.mfa_enabled, _user.created_at, _user.last_login_at,
              _org.slug.label("org_slug"), _org.name.label("org_name"),
              _org.require_mfa_for_all, _session.revoked_at, _session.expires_at)
    .select_from(AuthSession.__table__.join(StaffUser.__table__, _user.id == _session.user_id)
                 .join(Org.__table__, _org.id == _user.org_id))
    .where(_session.id == sa.bindparam("session_id"), _user.id == sa.bindparam("user_id"))
)
_app, _token = PartnerApp.__table__.c, PartnerToken.__table__.c
_PARTNER_LOOKUP = (
    sa.select(_app.id, _app.org_id, _app.is_active, _token.revoked_at, _token.expires_at,
              _token.scope)
    .select_from(PartnerToken.__table__.join(PartnerApp.__table__, _app.id == _token.app_id))
    .where(_token.jti == sa.bindparam("jti"), _app.client_id == sa.bindparam("client_id"))
)


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
        # One Core statement (no ORM layer): this runs on every staff request.
        row = db.connection().execute(
            _STAFF_LOOKUP, {"session_id": claims.session_id, "user_id": UUID(claims.subject)}
        ).first()
        if row is None or not row.is_active or row.revoked_at is not None \
                or row.expires_at <= now or row.org_id != claims.org_id:
            raise _refuse("session_ended")
        request.state.staff = row
        actor = Actor(kind="user", id=UUID(claims.subject), org_id=row.org_id, role=row.role,
                      scopes=frozenset(claims.scope.split()), session_id=claims.session_id)
    else:
        row = db.connection().execute(
            _PARTNER_LOOKUP, {"jti": claims.token_id, "client_id": claims.subject}
        ).first()
        if row is None or not row.is_active or row.revoked_at is not None \
                or row.expires_at <= now:
            raise _refuse("partner_token_ended")
        actor = Actor(kind="partner_app", id=row.id, org_id=row.org_id,
                      scopes=frozenset(row.scope.split()), token_id=claims.token_id)
    request.state.actor = actor
    return actor


async def any_actor(request: Request, db: SessionDep,
              credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
              ) -> Actor:
    """Any valid token, including a staff token limited to MFA enrolment."""
    return authenticate_request(request, db, credentials)


async def full_actor(request: Request, db: SessionDep,
                     credentials: Annotated[HTTPAuthorizationCredentials | None,
                                            Depends(bearer)],
                     ) -> Actor:
    """A valid token with full rights (an enrolment-only token is refused).

    Flat on purpose (not layered on ``any_actor``): it runs on every API request, and
    each level of dependencies costs FastAPI real time."""
    actor = authenticate_request(request, db, credentials)
    if tokens.ENROLMENT_SCOPE in actor.scopes:
        raise Forbidden("Set up multi-factor authentication first (POST /api/v1/me/mfa).",
                        kind="mfa-enrolment-required",
                        audit={"event": "auth.mfa_enrolment_pending"})
    return actor


CurrentActor = Annotated[Actor, Depends(full_actor)]
EnrollingActor = Annotated[Actor, Depends(any_actor)]
