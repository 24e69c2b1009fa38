"""``app.db.DriverQuery``, the token check's statement run straight on the driver: the
same row as SQLAlchemy's own execution (types included), errors raised as SQLAlchemy's
without their parameters, a lost connection invalidated, and SQLAlchemy's path taken
whenever something else watches the engine's statements. Runs on SQLite and, with
``ADVOCASE_TEST_DATABASE_URL``, on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from app.db import DriverQuery, create_db_engine
from app.identity import deps, tokens
from tests.support.identity import make_org, make_user, staff_token


@pytest.fixture
def signed_in(db: Session) -> dict[str, Any]:
    user = make_user(db, make_org(db), "supervisor")
    claims = tokens.decode(staff_token(db, user))
    db.flush()
    return {"session_id": claims.session_id, "user_id": user.id}


@contextmanager
def _statements(engine: Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def listener(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", listener)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", listener)


def test_the_driver_row_equals_sqlalchemys_own(db: Session, signed_in: dict[str, Any]) -> None:
    connection = db.connection()
    row = deps._STAFF_LOOKUP.first(connection, signed_in)
    expected = connection.execute(deps._STAFF_LOOKUP.statement, signed_in).one()
    assert row is not None
    assert tuple(row) == tuple(expected)
    assert row._asdict() == dict(expected._mapping)
    assert isinstance(row.id, UUID) and row.id == signed_in["user_id"]
    assert isinstance(row.is_active, bool) and row.is_active is True
    assert isinstance(row.expires_at, datetime) and row.expires_at.utcoffset() is not None
    assert row.revoked_at is None


def test_no_row_is_none(db: Session, signed_in: dict[str, Any]) -> None:
    unknown = signed_in | {"user_id": UUID(int=1)}
    assert deps._STAFF_LOOKUP.first(db.connection(), unknown) is None


def test_the_driver_path_is_taken_only_while_nothing_watches_the_statements(
        db: Session, signed_in: dict[str, Any]) -> None:
    connection = db.connection()
    with _statements(connection.engine) as seen:
        watched = deps._STAFF_LOOKUP.first(connection, signed_in)
    assert len(seen) == 1 and "auth_session" in seen[0]  # seen by the listener
    # The listener gone, nothing but advocase's own watches: the driver runs it, and
    # SQLAlchemy's execution (and so its events) never sees it.
    executed: list[object] = []

    def after_execute(*args: object) -> None:
        executed.append(args)

    sa.event.listen(connection, "after_execute", after_execute)
    try:
        assert deps._STAFF_LOOKUP.first(connection, signed_in) == watched
    finally:
        sa.event.remove(connection, "after_execute", after_execute)
    assert executed == []


NOBODY = {"session_id": UUID(int=1), "user_id": UUID(int=2)}


def test_an_engine_not_made_by_advocase_goes_through_sqlalchemy(settings: Any) -> None:
    # An engine without advocase's bookkeeping (a library's, a test's) is never bypassed.
    engine = sa.create_engine(str(settings.database_url))
    try:
        with _statements(engine) as seen, engine.connect() as connection:
            assert deps._STAFF_LOOKUP.first(connection, NOBODY) is None
        assert len([statement for statement in seen if "auth_session" in statement]) == 1
    finally:
        engine.dispose()


def test_a_listener_on_the_connection_alone_also_sees_the_statement(
        own_engine: Engine) -> None:
    seen: list[str] = []

    def listener(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    with own_engine.connect() as connection:
        sa.event.listen(connection, "before_cursor_execute", listener)
        assert deps._STAFF_LOOKUP.first(connection, NOBODY) is None
    assert len([statement for statement in seen if "auth_session" in statement]) == 1


@pytest.fixture
def own_engine(settings: Any) -> Iterator[Engine]:
    engine = create_db_engine(str(settings.database_url), settings)
    yield engine
    engine.dispose()


def test_an_error_is_sqlalchemys_and_names_no_parameter(own_engine: Engine) -> None:
    missing = sa.table("no_such_table", sa.column("secret"))
    query = DriverQuery(sa.select(missing.c.secret).where(
        missing.c.secret == sa.bindparam("secret")))
    with own_engine.connect() as connection, pytest.raises(sa.exc.DBAPIError) as raised:
        query.first(connection, {"secret": "Fictional Person Name"})
    assert "no_such_table" in str(raised.value)
    assert "Fictional Person Name" not in str(raised.value)
    assert raised.value.hide_parameters


def test_a_lost_connection_is_invalidated_and_the_pool_recovers(own_engine: Engine) -> None:
    with own_engine.connect() as connection:
        connection.connection.dbapi_connection.close()  # type: ignore[union-attr]
        with pytest.raises(sa.exc.DBAPIError) as raised:
            deps._STAFF_LOOKUP.first(connection, NOBODY)
        assert raised.value.connection_invalidated
        assert connection.invalidated
    with own_engine.connect() as connection:  # a fresh connection answers again
        assert deps._STAFF_LOOKUP.first(connection, NOBODY) is None
