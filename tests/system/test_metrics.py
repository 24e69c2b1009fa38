"""/metrics: requests by route template (never a raw path), tasks by name and outcome,
queue depth from the broker, the scrape token, and sums across processes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from app.core import metrics
from app.core.metrics_dir import API_SUBDIR, WORKER_SUBDIR, prepare_multiprocess_dir
from tests.support import services
from workers.celery_app import PING_TASK, celery_app
from workers.tasks import ping

CLIENT_ROUTE = "/api/v1/clients/{client_id}"


def sample(body: str, name: str, **labels: str) -> float | None:
    """The value of one sample in a text exposition, or None when it is absent."""
    for line in body.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, value = line.rsplit(" ", 1)
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', head[len(name):]))
        if found == labels:
            return float(value)
    return None


def scrape(client: TestClient, **headers: str) -> str:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def test_request_is_counted_under_its_route_template_never_its_path(client) -> None:
    client_id = str(uuid.uuid4())
    before = sample(scrape(client), "advocase_http_requests_total", method="GET",
                    route=CLIENT_ROUTE, status="401") or 0
    assert client.get(f"/api/v1/clients/{client_id}?q=Fictional").status_code == 401
    unmatched_id = uuid.uuid4().hex
    assert client.get(f"/no-such-page/{unmatched_id}").status_code == 404

    body = scrape(client)
    assert client_id not in body and unmatched_id not in body and "Fictional" not in body
    assert sample(body, "advocase_http_requests_total", method="GET", route=CLIENT_ROUTE,
                  status="401") == before + 1
    assert (sample(body, "advocase_http_requests_total", method="GET",
                   route=metrics.UNMATCHED, status="404") or 0) >= 1
    assert (sample(body, "advocase_http_request_duration_seconds_count", method="GET",
                   route=CLIENT_ROUTE) or 0) >= 1
    assert sample(body, "advocase_http_request_duration_seconds_bucket", method="GET",
                  route=CLIENT_ROUTE, le="+Inf") is not None
    # Scrapes are not traffic.
    assert 'route="/metrics"' not in body


def test_a_junk_method_is_counted_as_other(client) -> None:
    client.request("BREW", "/healthz")
    body = scrape(client)
    assert "BREW" not in body
    assert (sample(body, "advocase_http_requests_total", method="OTHER", route="/healthz",
                   status="405") or 0) >= 1


@celery_app.task(name="tests.metrics.fails")
def _fails() -> None:
    raise RuntimeError("fictional failure")


@celery_app.task(name="tests.metrics.retries_once", bind=True, max_retries=1)
def _retries_once(self) -> str:
    if self.request.retries < 1:
        raise self.retry(countdown=0)
    return "done"


def test_tasks_are_counted_by_name_and_outcome(client) -> None:
    def count(task: str, outcome: str) -> float:
        return sample(scrape(client), "advocase_tasks_total", task=task, outcome=outcome) or 0

    failed, retried, succeeded = (count("tests.metrics.fails", "failed"),
                                  count("tests.metrics.retries_once", "retried"),
                                  count(PING_TASK, "succeeded"))
    assert _fails.apply(args=()).failed()
    _retries_once.apply()
    assert ping.apply().successful()

    body = scrape(client)
    assert count("tests.metrics.fails", "failed") == failed + 1
    assert count("tests.metrics.retries_once", "retried") == retried + 1
    assert count(PING_TASK, "succeeded") == succeeded + 1
    assert (sample(body, "advocase_task_duration_seconds_count", task=PING_TASK) or 0) >= 1
    assert "fictional failure" not in body


def test_queue_depth_counts_messages_no_worker_has_taken(settings) -> None:
    queue = f"metrics-{uuid.uuid4().hex[:12]}"  # no worker listens to it
    collector = metrics.QueueDepthCollector(settings, queues=[queue])
    assert collector.depths() == {queue: 0}
    try:
        for _ in range(3):
            celery_app.send_task(PING_TASK, queue=queue)
        families = {family.name: family for family in collector.collect()}
        assert families["advocase_broker_up"].samples[0].value == 1
        depth = families["advocase_queue_depth"].samples[0]
        assert depth.labels == {"queue": queue} and depth.value == 3
    finally:
        with celery_app.connection_for_write() as conn:
            conn.default_channel.queue_purge(queue)
    assert collector.depths() == {queue: 0}


def test_queue_depth_of_the_task_queue_is_in_the_scrape(client, settings) -> None:
    body = scrape(client)
    assert sample(body, "advocase_broker_up") == 1
    assert sample(body, "advocase_queue_depth", queue=settings.task_queue) is not None


def test_an_unreachable_broker_does_not_fail_the_scrape(settings) -> None:
    down = settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0",
                                       "broker_check_timeout": 0.3})
    families = {f.name: f for f in metrics.QueueDepthCollector(down).collect()}
    assert families["advocase_broker_up"].samples[0].value == 0
    assert "advocase_queue_depth" not in families


def test_a_configured_token_is_required(app, settings) -> None:
    app.state.settings = settings.model_copy(
        update={"metrics_token": SecretStr("fictional-metrics-token-0123456789")})
    with TestClient(app) as client:
        for headers in ({}, {"Authorization": "Bearer wrong-token"},
                        {"Authorization": "Basic fictional-metrics-token-0123456789"}):
            refused = client.get("/metrics", headers=headers)
            assert refused.status_code == 401
            assert refused.headers["content-type"].startswith("application/problem+json")
            assert refused.headers["www-authenticate"].startswith("Bearer")
            assert refused.json()["type"].endswith("metrics-token-required")
            assert "advocase_" not in refused.text
        body = scrape(client, Authorization="Bearer fictional-metrics-token-0123456789")
    assert "advocase_http_requests_total" in body


def test_production_refuses_scrapes_without_a_token_unless_allowed(app, settings) -> None:
    production = settings.model_copy(update={"env": "production"})
    app.state.settings = production
    with TestClient(app) as client:
        refused = client.get("/metrics")
        assert refused.status_code == 403
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert "ADVOCASE_METRICS_TOKEN" in refused.json()["detail"]
        app.state.settings = production.model_copy(
            update={"metrics_allow_unauthenticated": True})
        assert client.get("/metrics").status_code == 200


def test_metrics_are_not_in_the_openapi_document(client) -> None:
    assert "/metrics" not in client.get("/openapi.json").json()["paths"]


WRITER = textwrap.dedent("""
    import sys
    from app.core import metrics
    kind, n = sys.argv[1], int(sys.argv[2])
    for _ in range(n):
        if kind == "api":
            metrics.record_request("GET", "/api/v1/me", 200, 0.004)
        else:
            metrics.task_started("t")
            metrics.task_finished("system.ping", "t", "SUCCESS")
""")


def test_processes_sum_into_one_scrape(settings, tmp_path: Path, monkeypatch) -> None:
    local = settings.model_copy(update={"metrics_dir": tmp_path / "metrics"})
    # prepare_multiprocess_dir exports the variable; monkeypatch removes it afterwards.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    stale = tmp_path / "metrics" / API_SUBDIR / "counter_999999.db"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"from an earlier run")
    api_dir = prepare_multiprocess_dir(local, API_SUBDIR)
    assert not stale.exists(), "the parent empties its folder at start"
    worker_dir = prepare_multiprocess_dir(local, WORKER_SUBDIR)
    env = {**os.environ, "ADVOCASE_METRICS_DIR": str(tmp_path / "metrics")}
    runs = [(api_dir, "api", 3), (api_dir, "api", 4), (worker_dir, "worker", 2)]
    children = [subprocess.Popen([sys.executable, "-c", WRITER, kind, str(n)],  # noqa: S603
                                 env={**env, "PROMETHEUS_MULTIPROC_DIR": str(folder)})
                for folder, kind, n in runs]
    assert [child.wait(timeout=60) for child in children] == [0, 0, 0]
    # Each process writes files of its own (named by its pid).
    assert len({path.stem.rsplit("_", 1)[1] for path in api_dir.glob("*.db")}) == 2

    body = metrics.exposition(local).decode()
    assert sample(body, "advocase_http_requests_total", method="GET", route="/api/v1/me",
                  status="200") == 7
    assert sample(body, "advocase_http_request_duration_seconds_count", method="GET",
                  route="/api/v1/me") == 7
    assert sample(body, "advocase_tasks_total", task="system.ping", outcome="succeeded") == 2


def test_worker_metrics_listener_answers_scrapes_with_the_token(settings) -> None:
    import httpx

    from workers.observability import serve_worker_metrics

    port = services.free_port() if hasattr(services, "free_port") else _free_port()
    local = settings.model_copy(update={
        "worker_metrics_port": port, "worker_metrics_host": "127.0.0.1",
        "metrics_token": SecretStr("fictional-worker-token-0123456789")})
    server = serve_worker_metrics(local)
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        assert httpx.get(url, timeout=5).status_code == 401
        answer = httpx.get(url, timeout=5,
                           headers={"Authorization": "Bearer fictional-worker-token-0123456789"})
        assert answer.status_code == 200
        assert "advocase_broker_up" in answer.text
    finally:
        server.shutdown()
        server.server_close()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("value", ["0", "70000"])
def test_worker_metrics_port_is_validated(value: str, monkeypatch) -> None:
    from pydantic import ValidationError

    from app.settings import Settings

    monkeypatch.setenv("ADVOCASE_WORKER_METRICS_PORT", value)
    with pytest.raises(ValidationError, match="worker_metrics_port"):
        Settings()
