"""Test set-up: one database (and one task queue) per xdist worker, a rollback per test.

Defaults: SQLite and the embedded broker in a temporary folder. With
``ADVOCASE_TEST_DATABASE_URL`` the suite runs on PostgreSQL (a database per xdist
worker is created from that URL), with ``ADVOCASE_TEST_BROKER_URL`` on that broker.
With ``CI=true`` a test whose service is missing fails instead of skipping.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

WORKER = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
RUN_DIR = Path(tempfile.mkdtemp(prefix=f"advocase-test-{WORKER}-"))

# Settings are read once per process: the environment is fixed before app code is imported.
os.environ["ADVOCASE_ENV"] = "test"
os.environ["ADVOCASE_VAR_DIR"] = str(RUN_DIR / "var")
os.environ["ADVOCASE_LOG_LEVEL"] = os.environ.get("ADVOCASE_TEST_LOG_LEVEL", "WARNING")
os.environ["ADVOCASE_TASK_QUEUE"] = f"advocase-test-{WORKER}-{os.getpid()}"
for name in ("DATABASE_URL", "BROKER_URL", "RESULT_BACKEND", "STORAGE_DIR"):
    os.environ.pop(f"ADVOCASE_{name}", None)

from tests.support import services  # noqa: E402

if services.TEST_DATABASE_URL:
    os.environ["ADVOCASE_DATABASE_URL"] = services.worker_database_url(
        services.TEST_DATABASE_URL, WORKER
    )
if services.TEST_BROKER_URL:
    os.environ["ADVOCASE_BROKER_URL"] = services.TEST_BROKER_URL
    os.environ["ADVOCASE_RESULT_BACKEND"] = services.TEST_RESULT_BACKEND or services.TEST_BROKER_URL

import sqlalchemy as sa  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402
from sqlmodel import Session  # noqa: E402

from app.db import get_engine  # noqa: E402
from app.settings import Settings, get_settings  # noqa: E402
from tests.support.apps import bind_to_session, bound_unit_of_work  # noqa: E402


def pytest_report_header(config: pytest.Config) -> list[str]:
    settings = get_settings()
    return [
        f"advocase database: {sa.make_url(str(settings.database_url)).get_backend_name()}",
        f"advocase broker: {str(settings.broker_url).split(':', 1)[0]}",
    ]


@pytest.fixture(scope="session")
def settings() -> Settings:
    from app.core.logging import configure_logging

    configure_logging(get_settings(), "test")
    return get_settings()


@pytest.fixture(autouse=True)
def isolated_rate_limits() -> Iterator[None]:
    """Each test counts login failures and rate limits in a key space of its own."""
    from uuid import uuid4

    from app.core import ratelimit

    ratelimit.reset_stores(namespace=f"t{uuid4().hex[:10]}:")
    yield
    ratelimit.reset_stores()


@pytest.fixture(scope="session")
def engine(settings: Settings) -> Iterator[Engine]:
    """The worker's database, created if needed and migrated to head once per run."""
    if services.TEST_DATABASE_URL:
        services.require_postgres(services.TEST_DATABASE_URL)
        services.recreate_postgres_database(str(settings.database_url))
    from app.cli import run_migrations

    run_migrations()
    engine = get_engine(settings)
    yield engine
    engine.dispose()


@pytest.fixture
def db(engine: Engine) -> Iterator[Session]:
    """A session inside a transaction that is rolled back after the test.

    ``create_savepoint`` turns the code's commits into savepoint releases, so
    services and the request dependency behave as in production.
    """
    # Deferred: the test's transaction must not hold SQLite's write lock while
    # other connections (readiness checks, workers) read and write.
    connection = engine.connect().execution_options(sqlite_begin="DEFERRED")
    outer = connection.begin()
    session = Session(bind=connection, join_transaction_mode="create_savepoint",
                      expire_on_commit=False)
    try:
        yield session
    finally:
        session.close()
        if outer.is_active:
            outer.rollback()
        connection.close()


@pytest.fixture
def make_app(settings: Settings, db: Session) -> Callable[..., FastAPI]:
    """Build the real app bound to the test session; extra routers may be mounted."""
    from app.main import create_app

    def build(*routers: object) -> FastAPI:
        app = create_app(settings)
        for router in routers:
            app.include_router(router)  # type: ignore[arg-type]

        bind_to_session(app, db)
        return app

    return build


@pytest.fixture
def app(make_app: Callable[..., FastAPI]) -> FastAPI:
    return make_app()


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def sent_tasks() -> Iterator[list[tuple[str, list[Any]]]]:
    """The Celery tasks the code under test sends after its commits, as (name, args), not
    sent (modules that need the send options too define their own)."""
    from app.core import deferred

    sent: list[tuple[str, list[Any]]] = []
    deferred.set_sender(lambda name, args, options: sent.append((name, args)))
    yield sent
    deferred.set_sender(None)


@pytest.fixture
def bound_work(db: Session) -> Callable[..., Any]:
    """A unit of work inside the test's transaction: what a worker or command would open."""
    return bound_unit_of_work(db)
