"""The authorization matrix: every API route × every kind of caller → the expected status.

One table decides it. A route of the app with no row fails the coverage test,
so a new endpoint cannot ship without saying who may call it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import uuid4

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlmodel import Session

from app.core import ratelimit
from app.db import utcnow
from app.identity import tokens
from app.identity.models import PartnerApp, PartnerToken, StaffUser
from tests.support.identity import PASSWORD, bearer, make_org, make_user, staff_session

CALLERS = ("anonymous", "admin", "supervisor", "advocate", "auditor", "partner", "enrolling")


@dataclass
class World:
    tokens: dict[str, str]
    users: dict[str, StaffUser]
    other_org_user: StaffUser
    sessions: dict[str, str]
    other_session: str


def partner_token(db: Session, org_id: Any, scopes: str) -> str:
    app = PartnerApp(org_id=org_id, name="Fictional Shelter App", client_id=f"pa_{uuid4().hex}",
                     client_secret_digest="0" * 64, scopes=scopes)
    db.add(app)
    db.flush()
    token, lifetime = tokens.issue({"sub": app.client_id, "org": str(org_id), "scope": scopes},
                                   audience=tokens.PARTNER_AUDIENCE, lifetime_seconds=600)
    jti = tokens.decode(token).token_id
    db.add(PartnerToken(jti=jti, app_id=app.id, scope=scopes,
                        expires_at=utcnow() + timedelta(seconds=lifetime)))
    return token


@pytest.fixture
def world(db: Session) -> World:
    ratelimit.reset_stores()
    org, other = make_org(db), make_org(db)
    users = {role: make_user(db, org, role) for role in ("admin", "supervisor", "advocate",
                                                          "auditor")}
    users["enrolling"] = make_user(db, org, "supervisor")
    spare_admin = make_user(db, org, "admin")  # so demoting an admin is not "the last admin"
    del spare_admin
    sessions = {role: staff_session(db, user) for role, user in users.items()}
    issued = {role: tokens.issue_staff_token(
        user_id=user.id, org_id=org.id, role=user.role, session_id=sessions[role].id,
        scope=tokens.ENROLMENT_SCOPE if role == "enrolling" else "")[0]
        for role, user in users.items()}
    issued["partner"] = partner_token(db, org.id, " ".join(
        ["referrals:read", "referrals:write", "resources:read", "resources:write"]))
    other_user = make_user(db, other, "advocate")
    other_session = staff_session(db, other_user)
    db.commit()
    return World(issued, users, other_user, {k: str(v.id) for k, v in sessions.items()},
                 str(other_session.id))


Body = Callable[[World], Any]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    expected: dict[str, int]
    body: Body | None = None
    target: str = "own"  # which record a {placeholder} names: "own" or "other_org"


def user_id(w: World, target: str) -> str:
    return str(w.other_org_user.id if target == "other_org" else w.users["advocate"].id)


def new_user_body(_: World) -> dict[str, str]:
    return {"email": f"m-{uuid4().hex[:8]}@example.test", "display_name": "Matrix",
            "role": "advocate"}


STAFF_ALL = {"admin": 200, "supervisor": 200, "advocate": 200, "auditor": 200}
DENY_OTHERS = {"anonymous": 401, "partner": 403, "enrolling": 403}

MATRIX: list[Route] = [
    Route("GET", "/healthz", dict.fromkeys(CALLERS, 200)),
    Route("GET", "/readyz", dict.fromkeys(CALLERS, 200)),
    Route("POST", "/api/v1/auth/login", dict.fromkeys(CALLERS, 401),
          body=lambda w: {"email": "nobody@example.test", "password": "wrong guess here"}),
    Route("POST", "/api/v1/auth/refresh", dict.fromkeys(CALLERS, 401),
          body=lambda w: {"refresh_token": "x" * 43}),
    Route("POST", "/api/v1/auth/accept-invitation", dict.fromkeys(CALLERS, 401),
          body=lambda w: {"token": "y" * 43, "password": "a long fictional passphrase"}),
    Route("POST", "/api/v1/auth/logout",
          {"anonymous": 401, "partner": 403, "enrolling": 204} | dict.fromkeys(STAFF_ALL, 204)),
    Route("GET", "/api/v1/me", DENY_OTHERS | STAFF_ALL),
    Route("POST", "/api/v1/me/password", DENY_OTHERS | dict.fromkeys(STAFF_ALL, 204),
          body=lambda w: {"current_password": PASSWORD,
                          "new_password": "another long fictional passphrase"}),
    Route("POST", "/api/v1/me/mfa",
          {"anonymous": 401, "partner": 403, "enrolling": 201} | dict.fromkeys(STAFF_ALL, 201)),
    Route("POST", "/api/v1/me/mfa/confirm",
          {"anonymous": 401, "partner": 403, "enrolling": 409} | dict.fromkeys(STAFF_ALL, 409),
          body=lambda w: {"totp_code": "123456"}),
    Route("GET", "/api/v1/sessions", DENY_OTHERS | STAFF_ALL),
    Route("DELETE", "/api/v1/sessions/{session_id}", DENY_OTHERS | dict.fromkeys(STAFF_ALL, 204)),
    Route("DELETE", "/api/v1/sessions/{session_id}", DENY_OTHERS | dict.fromkeys(STAFF_ALL, 404),
          target="other_org"),
    Route("GET", "/api/v1/users", DENY_OTHERS | {"admin": 200, "supervisor": 200,
                                                 "advocate": 403, "auditor": 403}),
    Route("POST", "/api/v1/users", DENY_OTHERS | {"admin": 201, "supervisor": 403,
                                                  "advocate": 403, "auditor": 403},
          body=new_user_body),
    Route("GET", "/api/v1/users/{user_id}", DENY_OTHERS | {"admin": 200, "supervisor": 200,
                                                           "advocate": 403, "auditor": 403}),
    Route("GET", "/api/v1/users/{user_id}", DENY_OTHERS | {"admin": 404, "supervisor": 404,
                                                           "advocate": 403, "auditor": 403},
          target="other_org"),
    Route("PATCH", "/api/v1/users/{user_id}", DENY_OTHERS | {"admin": 200, "supervisor": 403,
                                                             "advocate": 403, "auditor": 403},
          body=lambda w: {"display_name": "Renamed Fictional"}),
    Route("PATCH", "/api/v1/users/{user_id}", DENY_OTHERS | {"admin": 404, "supervisor": 404,
                                                             "advocate": 403, "auditor": 403},
          body=lambda w: {"display_name": "Renamed Fictional"}, target="other_org"),
    Route("POST", "/api/v1/users/{user_id}/mfa-reset",
          DENY_OTHERS | {"admin": 200, "supervisor": 403, "advocate": 403, "auditor": 403},
          body=lambda w: {"password": PASSWORD}),
    Route("POST", "/api/v1/users/{user_id}/mfa-reset",
          DENY_OTHERS | {"admin": 404, "supervisor": 404, "advocate": 403, "auditor": 403},
          body=lambda w: {"password": PASSWORD}, target="other_org"),
    Route("GET", "/api/v1/audit-events", DENY_OTHERS | {"admin": 403, "supervisor": 200,
                                                        "advocate": 403, "auditor": 200}),
]

# Served by the framework, not by our routers.
FRAMEWORK_ROUTES = {("GET", "/openapi.json"), ("GET", "/docs"), ("HEAD", "/docs"),
                    ("GET", "/docs/oauth2-redirect"), ("HEAD", "/docs/oauth2-redirect"),
                    ("HEAD", "/openapi.json")}


def api_routes(app: Any) -> set[tuple[str, str]]:
    found = set()
    for route in app.routes:
        if isinstance(route, APIRoute) and not route.path.startswith("/dashboard"):
            for method in route.methods:
                found.add((method, route.path))
    return found


def test_every_route_has_a_row(app) -> None:
    covered = {(row.method, row.path) for row in MATRIX}
    missing = api_routes(app) - covered - FRAMEWORK_ROUTES
    assert not missing, f"routes without a row in the authorization matrix: {sorted(missing)}"
    for row in MATRIX:
        assert set(row.expected) == set(CALLERS), f"{row.method} {row.path}: a caller is missing"


def _path(row: Route, w: World, caller: str) -> str:
    path = row.path
    if "{user_id}" in path:
        path = path.replace("{user_id}", user_id(w, row.target))
    if "{session_id}" in path:
        own = w.sessions.get(caller, w.sessions["advocate"])
        path = path.replace("{session_id}", w.other_session if row.target == "other_org" else own)
    return path


CASES = [pytest.param(row, caller, id=f"{row.method} {row.path} [{row.target}] as {caller}")
         for row in MATRIX for caller in CALLERS]


@pytest.mark.parametrize(("row", "caller"), CASES)
def test_matrix(client: TestClient, world: World, row: Route, caller: str) -> None:
    headers = bearer(world.tokens[caller]) if caller != "anonymous" else {}
    kwargs: dict[str, Any] = {"headers": headers}
    if row.body is not None:
        kwargs["json"] = row.body(world)
    response = client.request(row.method, _path(row, world, caller), **kwargs)
    assert response.status_code == row.expected[caller], response.text
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/problem+json")
