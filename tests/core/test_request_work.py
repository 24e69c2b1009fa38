"""The request's unit of work against a real database, as in production (no test
savepoint): success commits, a refusal leaves nothing, a refusal that keeps its
changes keeps them, and a dashboard refusal's audit event survives. Every route
finishes its own work (UnitOfWorkRoute)."""

from __future__ import annotations

from collections.abc import Iterator
from uuid import UUID

import pytest
import sqlalchemy as sa
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from app.clients.models import Client
from app.core.audit import AuditEvent
from app.dashboard.auth import SESSION_COOKIE
from app.db import UnitOfWorkRoute, unit_of_work
from app.identity import web_sessions
from app.main import create_app
from tests.support import services
from tests.support.identity import bearer, make_org, make_user, staff_token


def test_every_route_finishes_its_own_unit_of_work(app) -> None:
    def walk(routes: list) -> Iterator[APIRoute]:
        for route in routes:
            inner = getattr(route, "original_router", None)
            if inner is not None:
                yield from walk(inner.routes)
            elif isinstance(route, APIRoute):
                yield route

    routes = list(walk(app.router.routes))
    assert len(routes) > 50
    strays = [f"{sorted(r.methods)} {r.path}" for r in routes
              if not isinstance(r, UnitOfWorkRoute)]
    assert strays == [], "routes outside UnitOfWorkRoute leave their session open"


@pytest.fixture(params=["sqlite", "postgresql"])
def live(request, tmp_path, settings) -> Iterator[tuple[TestClient, sa.Engine]]:
    with services.own_engine(request.param, tmp_path, "request_work") as engine:
        app = create_app(settings)
        app.state.engine = engine  # the production path, on this test's own database
        with TestClient(app, raise_server_exceptions=False,
                        follow_redirects=False) as client:
            yield client, engine


def _session_begins(engine: sa.Engine) -> Iterator[list[object]]:
    """Count the ORM sessions that begin a transaction on ``engine`` meanwhile."""
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    begun: list[object] = []

    def after_begin(session: Session, transaction: object, connection: sa.Connection) -> None:
        if connection.engine is engine:
            begun.append(session)

    event.listen(Session, "after_begin", after_begin)
    try:
        yield begun
    finally:
        event.remove(Session, "after_begin", after_begin)


def _people(engine: sa.Engine) -> dict[str, object]:
    with unit_of_work(engine) as db:
        org = make_org(db)
        advocate = make_user(db, org, "advocate")
        token = staff_token(db, advocate)
        session, cookie = web_sessions.start_dashboard_session(db, advocate, user_agent="t")
        return {"token": token, "cookie": cookie, "user_id": advocate.id}


def _count(engine: sa.Engine, statement: sa.Select) -> int:
    with engine.connect() as connection:
        return int(connection.execute(statement).scalar_one())


def test_a_refused_write_leaves_nothing_and_a_good_one_commits(live) -> None:
    client, engine = live
    people = _people(engine)
    clients = sa.select(sa.func.count()).select_from(Client)
    refused = client.post("/api/v1/clients", json={"date_of_birth": "not a date"},
                          headers=bearer(people["token"]))
    assert refused.status_code == 422
    assert _count(engine, clients) == 0
    created = client.post("/api/v1/clients", json={"preferred_name": "Fictional Wren"},
                          headers=bearer(people["token"]))
    assert created.status_code == 201, created.text
    assert _count(engine, clients) == 1
    # The read-back comes from another connection: it was committed before the answer.
    assert client.get(f"/api/v1/clients/{created.json()['id']}",
                      headers=bearer(people["token"])).status_code == 200


def test_a_denial_is_audited_durably_on_the_api_and_the_dashboard(live) -> None:
    client, engine = live
    people = _people(engine)
    denied = sa.select(sa.func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "access.denied")
    assert client.get("/api/v1/users", headers=bearer(people["token"])).status_code == 403
    assert _count(engine, denied) == 1
    client.cookies.set(SESSION_COOKIE, people["cookie"], path="/dashboard")
    response = client.post("/dashboard/security/password", data={"csrf_token": "0" * 64})
    assert response.status_code == 403
    assert _count(engine, denied) == 2
    with engine.connect() as connection:
        rows = connection.execute(sa.select(AuditEvent.details, AuditEvent.actor_id)
                                  .where(AuditEvent.action == "access.denied")).all()
    dashboard = [row for row in rows if row.details.get("surface") == "dashboard"]
    assert len(dashboard) == 1 and dashboard[0].details["reason"] == "csrf"
    assert UUID(str(dashboard[0].actor_id)) == people["user_id"]


def test_an_audited_request_commits_in_the_thread_pool_not_on_the_event_loop(live) -> None:
    """Its commit appends to the agency's audit chain, which may wait for another
    request's commit: the event loop must never be the one waiting."""
    import asyncio

    from sqlalchemy import event
    from sqlalchemy.orm import Session

    client, engine = live
    people = _people(engine)
    created = client.post("/api/v1/clients", json={"preferred_name": "Fictional Wren"},
                          headers=bearer(people["token"]))
    assert created.status_code == 201
    on_loop: list[bool] = []

    def commit_started(session: Session) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            on_loop.append(False)
        else:
            on_loop.append(True)

    event.listen(Session, "before_commit", commit_started)
    try:
        read = client.get(f"/api/v1/clients/{created.json()['id']}",
                          headers=bearer(people["token"]))
        listed = client.get("/api/v1/clients", headers=bearer(people["token"]))
        client.cookies.set(SESSION_COOKIE, people["cookie"], path="/dashboard")
        caseload = client.get("/dashboard/clients")
    finally:
        event.remove(Session, "before_commit", commit_started)
    assert read.status_code == listed.status_code == caseload.status_code == 200
    assert "Fictional Wren" in caseload.text
    assert on_loop == [False, False, False]
    assert _count(engine, sa.select(sa.func.count()).select_from(AuditEvent).where(
        AuditEvent.action.in_(("client.read", "client.listed")))) == 3


def test_the_token_check_of_a_read_needs_no_orm_session_on_sqlite(live) -> None:
    """On SQLite a reading request starts with a connection only: ``GET /api/v1/me``
    (the token check and nothing else) makes no ORM session; a read that needs one gets
    it on the same connection and its audit event commits. On PostgreSQL the session
    comes first, so the token check and the handler share one transaction."""
    from contextlib import contextmanager

    client, engine = live
    people = _people(engine)
    created = client.post("/api/v1/clients", json={"preferred_name": "Fictional Wren"},
                          headers=bearer(people["token"]))
    assert created.status_code == 201
    counting = contextmanager(_session_begins)
    with counting(engine) as begun:
        me = client.get("/api/v1/me", headers=bearer(people["token"]))
    assert me.status_code == 200 and me.json()["id"] == str(people["user_id"])
    assert len(begun) == (0 if engine.dialect.name == "sqlite" else 1)
    with counting(engine) as begun:
        read = client.get(f"/api/v1/clients/{created.json()['id']}",
                          headers=bearer(people["token"]))
    assert read.status_code == 200 and read.json()["preferred_name"] == "Fictional Wren"
    assert len(begun) == 1
    assert _count(engine, sa.select(sa.func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "client.read")) == 1
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]


def test_a_revoked_session_is_refused_on_the_next_read_and_no_connection_is_kept(live) -> None:
    client, engine = live
    people = _people(engine)
    assert client.get("/api/v1/me", headers=bearer(people["token"])).status_code == 200
    assert client.post("/api/v1/auth/logout",
                       headers=bearer(people["token"])).status_code == 204
    for headers in (bearer(people["token"]), {}, bearer("not-a-token")):
        refused = client.get("/api/v1/me", headers=headers)
        assert refused.status_code == 401
        assert refused.headers["content-type"] == "application/problem+json"
    rejected = sa.select(sa.func.count()).select_from(AuditEvent).where(
        AuditEvent.action.in_(("auth.token_rejected", "auth.token_missing")))
    assert _count(engine, rejected) == 3
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
