"""PostgreSQL engines check a pooled connection before use only when it sat idle in the
pool for ``app.db.IDLE_PING_SECONDS``: no round trip for a connection in use moments ago,
and a connection the database ended while idle is replaced before anyone sees it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from app import db as app_db
from app.db import create_db_engine
from tests.support.services import own_database


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    with own_database("postgresql", tmp_path, "idle_ping", migrate=False) as url:
        yield url


@pytest.fixture
def engine(url: str) -> Iterator[Engine]:
    engine = create_db_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def pings(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    seen: list[Any] = []
    ping = engine.dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        seen.append(dbapi_connection)
        return ping(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counted)
    return seen


def _backend_pid(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(sa.text("SELECT pg_backend_pid()")))


def _end_backend(url: str, pid: int) -> None:
    """The database ends one connection, as a restart or an idle timeout would."""
    other = sa.create_engine(url, poolclass=NullPool)
    try:
        with other.connect() as connection:
            assert connection.scalar(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        other.dispose()


def test_without_the_idle_ping_a_connection_ended_while_idle_fails_its_next_statement(
        url: str, engine: Engine, pings: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    # What the ping is for: the failure it prevents, with the ping held off.
    monkeypatch.setattr(app_db, "IDLE_PING_SECONDS", 3600.0)
    _end_backend(url, _backend_pid(engine))
    with pytest.raises(sa.exc.OperationalError) as raised, engine.connect() as connection:
        connection.execute(sa.text("SELECT 1"))
    assert raised.value.connection_invalidated
    assert _backend_pid(engine) > 0  # the pool was invalidated: the next one is fresh
    assert pings == []


def test_a_connection_ended_while_idle_is_replaced_before_use(
        url: str, engine: Engine, pings: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app_db, "IDLE_PING_SECONDS", 0.0)
    first = _backend_pid(engine)
    _end_backend(url, first)
    with engine.connect() as connection:
        assert connection.scalar(sa.text("SELECT 1")) == 1
        assert connection.scalar(sa.text("SELECT pg_backend_pid()")) != first
    assert len(pings) == 1  # the dead one was pinged; the new one was not


def test_a_connection_in_use_moments_ago_is_not_pinged(
        engine: Engine, pings: list[Any]) -> None:
    first = _backend_pid(engine)
    for _ in range(5):
        assert _backend_pid(engine) == first  # the same pooled connection every time
    assert pings == []


def test_a_connection_idle_longer_than_the_limit_is_pinged_once_per_checkout(
        engine: Engine, pings: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    first = _backend_pid(engine)  # new: not pinged
    monkeypatch.setattr(app_db, "IDLE_PING_SECONDS", 0.0)
    assert _backend_pid(engine) == first
    assert _backend_pid(engine) == first
    assert len(pings) == 2
    with engine.connect() as connection:  # a ping leaves no transaction behind
        assert connection.scalar(sa.text("SELECT count(*) FROM pg_stat_activity WHERE "
                                         "pid = pg_backend_pid() AND xact_start IS NOT NULL "
                                         "AND state = 'idle in transaction'")) == 0
