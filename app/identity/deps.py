"""Who is calling: bearer-token authentication shared by every API router."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, Any
from uuid import UUID

import sqlalchemy as sa
from fastapi import Depends, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.core.access import Actor
from app.core.errors import Forbidden, Unauthorized
from app.db import DriverQuery, request_work, utcnow
from app.identity import tokens
from app.identity.models import AuthSession, Org, PartnerApp, PartnerToken, StaffUser

BEARER_DESCRIPTION = "Staff access token or partner-app token"
bearer = HTTPBearer(auto_error=False, description=BEARER_DESCRIPTION)
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="advocase"'}


def _refuse(reason: str, detail: str = "The access token is missing, invalid or expired.",
            **audit: object) -> Unauthorized:
    return Unauthorized(detail, kind="invalid-token",
                        headers=_CHALLENGE | {"WWW-Authenticate":
                                              'Bearer realm="advocase", error="invalid_token"'},
                        audit={"event": "auth.token_rejected", "reason": reason, **audit})


_user, _session, _org = (StaffUser.__table__.c, AuthSession.__table__.c, Org.__table__.c)
_STAFF_LOOKUP = DriverQuery(
    sa.select(_user.id, _user.org_id, _user.email, _user.display_name, _user.role,
              _user.is_active, _user.mfa_enabled, _user.created_at, _user.last_login_at,
              _org.slug.label("org_slug"), _org.name.label("org_name"),
              _org.require_mfa_for_all, _session.revoked_at, _session.expires_at)
    .select_from(AuthSession.__table__.join(StaffUser.__table__, _user.id == _session.user_id)
                 .join(Org.__table__, _org.id == _user.org_id))
    .where(_session.id == sa.bindparam("session_id"), _user.id == sa.bindparam("user_id"))
)
_app, _token = PartnerApp.__table__.c, PartnerToken.__table__.c
_PARTNER_LOOKUP = DriverQuery(
    sa.select(_app.id, _app.org_id, _app.is_active, _token.revoked_at, _token.expires_at,
              _token.scope)
    .select_from(PartnerToken.__table__.join(PartnerApp.__table__, _app.id == _token.app_id))
    .where(_token.jti == sa.bindparam("jti"), _app.client_id == sa.bindparam("client_id"))
)


async def authenticate_request(request: Request) -> Actor:
    """The caller of a request with a bearer token: the token checked, then its session
    (or partner token) read on the request's own connection, so revocation,
    deactivation and role changes take effect on the next request."""
    credentials: HTTPAuthorizationCredentials | None = await bearer(request)
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("Sign in first: this needs a bearer token.", headers=_CHALLENGE,
                           audit={"event": "auth.token_missing"})
    try:
        claims = tokens.decode(credentials.credentials)
    except tokens.InvalidToken as exc:
        raise _refuse(exc.reason) from exc
    now = utcnow()
    if claims.audience == tokens.STAFF_AUDIENCE and claims.session_id is None:
        raise _refuse("claims")
    # One statement, straight to the driver (app.db.DriverQuery): on every API request.
    connection = (await request_work(request)).connection()
    if claims.audience == tokens.STAFF_AUDIENCE:
        row = _STAFF_LOOKUP.first(
            connection, {"session_id": claims.session_id, "user_id": UUID(claims.subject)})
        if row is None or not row.is_active or row.revoked_at is not None \
                or row.expires_at <= now or row.org_id != claims.org_id:
            raise _refuse("session_ended")
        request.state.staff = row
        actor = Actor(kind="user", id=UUID(claims.subject), org_id=row.org_id, role=row.role,
                      scopes=frozenset(claims.scope.split()), session_id=claims.session_id)
    else:
        row = _PARTNER_LOOKUP.first(
            connection, {"jti": claims.token_id, "client_id": claims.subject})
        if row is None or not row.is_active or row.revoked_at is not None \
                or row.expires_at <= now:
            raise _refuse("partner_token_ended")
        actor = Actor(kind="partner_app", id=row.id, org_id=row.org_id,
                      scopes=frozenset(row.scope.split()), token_id=claims.token_id)
    request.state.actor = actor
    return actor


async def any_actor(request: Request) -> Actor:
    """Any valid token, including a staff token limited to MFA enrolment."""
    return await authenticate_request(request)


async def full_actor(request: Request) -> Actor:
    """A valid token with full rights (an enrolment-only token is refused).

    Takes only the request and reads the bearer header and the request's connection
    itself (no sub-dependencies, and not layered on ``any_actor``): it runs on every
    API request, and each dependency FastAPI solves costs it real time per request. The
    OpenAPI document still declares the bearer scheme on these routes (``app.main``)."""
    actor = await authenticate_request(request)
    if tokens.ENROLMENT_SCOPE in actor.scopes:
        raise Forbidden("Set up multi-factor authentication first (POST /api/v1/me/mfa).",
                        kind="mfa-enrolment-required",
                        audit={"event": "auth.mfa_enrolment_pending"})
    return actor


CurrentActor = Annotated[Actor, Depends(full_actor)]
EnrollingActor = Annotated[Actor, Depends(any_actor)]


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any] | None]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


def document_bearer_security(app: FastAPI) -> None:
    """Declare the bearer scheme on every operation that authenticates its caller.

    ``full_actor`` and ``any_actor`` read the header themselves instead of declaring
    ``bearer`` as a sub-dependency (see ``full_actor``), so FastAPI no longer sees the
    scheme; the OpenAPI document gets it here, as FastAPI itself would have written it."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        paths = schema.get("paths", {})
        for route in app.routes:
            if not isinstance(route, APIRoute) or route.path_format not in paths or not any(
                    call in (full_actor, any_actor) for call in _calls(route.dependant)):
                continue
            for method in route.methods:
                operation = paths[route.path_format].get(method.lower())
                if operation is not None and {"HTTPBearer": []} not in \
                        operation.setdefault("security", []):
                    operation["security"].append({"HTTPBearer": []})
        schema.setdefault("components", {}).setdefault("securitySchemes", {})["HTTPBearer"] = {
            "type": "http", "description": BEARER_DESCRIPTION, "scheme": "bearer"}
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
