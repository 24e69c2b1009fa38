"""/healthz and /readyz: what is reported, and what happens when a dependency goes away."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from app.db import unit_of_work
from app.main import create_app
from app.system.health import ReadinessChecker
from app.system.models import WorkerHeartbeat
from app.system.service import record_heartbeat
from tests.support import services
from tests.support.proxy import OutageProxy


def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_reports_database_broker_and_missing_worker(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["broker"]["status"] == "ok"
    assert body["checks"]["worker"]["status"] == "missing"


@pytest.fixture
def beat_at(engine):
    """Record a committed heartbeat (readiness reads through its own connection)."""
    names = []

    def record(name: str, at: datetime) -> None:
        with unit_of_work(engine) as db:
            record_heartbeat(db, name, at)
        names.append(name)

    yield record
    with unit_of_work(engine) as db:
        db.execute(sa.delete(WorkerHeartbeat).where(WorkerHeartbeat.worker.in_(names)))


def test_readyz_reports_heartbeat_age(client: TestClient, beat_at) -> None:
    beat_at("celery@fresh", datetime.now(UTC) - timedelta(seconds=3))
    worker = client.get("/readyz").json()["checks"]["worker"]
    assert worker["status"] == "ok"
    assert 2.5 <= worker["last_heartbeat_age_seconds"] < 60


def test_stale_heartbeat_is_reported_but_does_not_fail_readiness(
    client: TestClient, beat_at
) -> None:
    beat_at("celery@old", datetime.now(UTC) - timedelta(minutes=10))
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"]["worker"]["status"] == "stale"


def test_storage_is_reported_and_an_unwritable_one_does_not_fail_readiness(
        app, settings, tmp_path) -> None:
    with TestClient(app) as client:
        assert client.get("/readyz").json()["checks"]["storage"]["status"] == "ok"
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    broken = settings.model_copy(update={"storage_dir": not_a_folder / "storage"})
    app.state.readiness = ReadinessChecker(broken, app.state.readiness.engine)
    with TestClient(app) as client:
        response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"]["storage"] == {
        "status": "down", "duration_ms": response.json()["checks"]["storage"]["duration_ms"],
        "error": "NotADirectoryError"}
    assert str(tmp_path) not in response.text


def test_broker_down_is_503_naming_the_broker(app, settings) -> None:
    down = settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0",
                                       "broker_check_timeout": 0.5})
    app.state.readiness = ReadinessChecker(down, app.state.readiness.engine)
    with TestClient(app) as client:
        response = client.get("/readyz")
        assert client.get("/healthz").status_code == 200
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["failed_checks"] == ["broker"]
    assert "broker" in body["detail"]
    assert body["checks"]["database"]["status"] == "ok"
    assert "127.0.0.1" not in response.text  # no connection details leak


def test_database_down_is_503_naming_the_database(app, settings, tmp_path) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    broken = sa.create_engine(f"sqlite:///{not_a_folder}/db.sqlite")
    app.state.readiness = ReadinessChecker(settings, broken)
    with TestClient(app) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["failed_checks"] == ["database"]
    assert body["checks"]["worker"]["status"] == "unknown"


def test_postgres_outage_and_recovery_under_a_running_app(settings) -> None:
    """PostgreSQL goes away under a running server and comes back: 503, then 200 by itself."""
    services.require_postgres()
    url = services.worker_database_url(services.POSTGRES_URL, services_worker(), "_outage")
    services.recreate_postgres_database(url)
    from alembic import command

    from app.cli import alembic_config

    command.upgrade(alembic_config(url), "head")
    target = sa.make_url(url)
    proxy = OutageProxy(target.host or "127.0.0.1", target.port or 5432)
    proxy.start()
    proxied = target.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    app = create_app(settings.model_copy(update={"database_url": proxied}))
    try:
        with TestClient(app) as client:
            assert client.get("/readyz").status_code == 200

            proxy.stop()
            down = client.get("/readyz")
            assert down.status_code == 503, down.text
            assert down.json()["failed_checks"] == ["database"]
            assert client.get("/healthz").status_code == 200

            proxy.start()
            deadline = time.monotonic() + 15
            status = None
            while time.monotonic() < deadline:
                status = client.get("/readyz").status_code
                if status == 200:
                    break
                time.sleep(0.2)
            assert status == 200
    finally:
        proxy.stop()
        app.state.readiness.engine.dispose()
        services.drop_postgres_database(url)


def services_worker() -> str:
    from tests.conftest import WORKER

    return WORKER
