"""Reaching the real services the suite runs against (PostgreSQL, Redis).

Locally a missing service skips the tests that need it, with the reason; on CI
(``CI=true``) it fails them, so a broken CI machine can never pass silently.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.settings import normalise_database_url

TEST_DATABASE_URL = (
    normalise_database_url(os.environ["ADVOCASE_TEST_DATABASE_URL"])
    if os.environ.get("ADVOCASE_TEST_DATABASE_URL")
    else None
)
TEST_BROKER_URL = os.environ.get("ADVOCASE_TEST_BROKER_URL") or None
TEST_RESULT_BACKEND = os.environ.get("ADVOCASE_TEST_RESULT_BACKEND") or None

# Where tests that always cover PostgreSQL or Redis (migrations, outage drills) look for them.
POSTGRES_URL = TEST_DATABASE_URL or "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS_URL = (
    TEST_BROKER_URL
    if TEST_BROKER_URL and TEST_BROKER_URL.startswith("redis")
    else "redis://127.0.0.1:6379/0"
)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(service: str, why: str) -> None:
    message = f"{service} is not reachable ({why})"
    if in_ci():
        pytest.fail(message + "; CI=true, so this is a failure, not a skip", pytrace=False)
    pytest.skip(message)


def _safe_name(text: str) -> str:
    return re.sub(r"[^a-z0-9_]", "_", text.lower())


def worker_database_url(base_url: str, worker: str, suffix: str = "") -> str:
    url = sa.make_url(base_url)
    name = f"{url.database or 'advocase'}_{_safe_name(worker)}{suffix}"
    return url.set(database=name).render_as_string(hide_password=False)


def _admin_engine(url: str) -> sa.Engine:
    admin = sa.make_url(url).set(database="postgres")
    return sa.create_engine(admin, isolation_level="AUTOCOMMIT",
                            connect_args={"connect_timeout": 3})


def require_postgres(url: str = POSTGRES_URL) -> None:
    engine = _admin_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        unavailable("PostgreSQL", type(exc.orig).__name__ if exc.orig else "connection failed")
    finally:
        engine.dispose()


def _drop_database(url: str, *, create_again: bool) -> None:
    name = sa.make_url(url).database
    assert name and re.fullmatch(r"[a-z0-9_]+", name), name  # test databases only
    engine = _admin_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            if create_again:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()


def recreate_postgres_database(url: str) -> None:
    """Drop and create the database named in ``url``."""
    _drop_database(url, create_again=True)


def drop_postgres_database(url: str) -> None:
    _drop_database(url, create_again=False)


@contextmanager
def own_database(kind: str, folder: Path, name: str, *, migrate: bool = True) -> Iterator[str]:
    """A fresh database of its own (``kind`` "sqlite" or "postgresql") for tests that
    commit for real; migrated to head unless asked not to, dropped afterwards."""
    if kind == "sqlite":
        url = f"sqlite:///{folder / (name + '.sqlite')}"
    else:
        require_postgres()
        worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
        url = worker_database_url(POSTGRES_URL, worker, f"_{name}")
        recreate_postgres_database(url)
    try:
        if migrate:
            from alembic import command

            from app.cli import alembic_config

            command.upgrade(alembic_config(url), "head")
        yield url
    finally:
        if kind == "postgresql":
            drop_postgres_database(url)


@contextmanager
def own_engine(kind: str, folder: Path, name: str) -> Iterator[sa.Engine]:
    """An engine on a fresh, migrated database of its own (:func:`own_database`), disposed
    before the database is dropped."""
    from app.db import create_db_engine

    with own_database(kind, folder, name) as url:
        engine = create_db_engine(url)
        try:
            yield engine
        finally:
            engine.dispose()


def require_redis(url: str = REDIS_URL) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        unavailable("Redis", type(exc).__name__)
    finally:
        client.close()
