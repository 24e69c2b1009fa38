"""A PostgreSQL engine made by ``create_db_engine`` checks every pooled connection before it
hands it out (``pool_pre_ping``), so a connection the database ended — a restart, an idle
timeout, an administrator — is replaced before a request uses it, even one used a moment
before. (Pinging only connections idle for a few seconds was tried: a connection ended
right after its last use then failed a request with a 500.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from app.db import create_db_engine
from tests.support.services import own_database


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    with own_database("postgresql", tmp_path, "pool_ping", migrate=False) as url:
        yield url


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


def test_without_a_ping_a_connection_ended_after_use_fails_its_next_statement(
        url: str) -> None:
    # What the ping is for: the failure it prevents, on an engine without it.
    engine = sa.create_engine(url, pool_size=1, max_overflow=0)
    try:
        _end_backend(url, _backend_pid(engine))
        with pytest.raises(sa.exc.OperationalError) as raised, engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        assert raised.value.connection_invalidated
    finally:
        engine.dispose()


def test_a_connection_ended_right_after_use_is_replaced_before_the_next_one(url: str) -> None:
    engine = create_db_engine(url)
    try:
        first = _backend_pid(engine)
        assert _backend_pid(engine) == first  # the pool hands the same connection back
        _end_backend(url, first)
        with engine.connect() as connection:
            assert connection.scalar(sa.text("SELECT 1")) == 1
            assert connection.scalar(sa.text("SELECT pg_backend_pid()")) != first
    finally:
        engine.dispose()
