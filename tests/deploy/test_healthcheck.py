"""deploy/healthcheck.py: the container health checks of the API and beat."""

from __future__ import annotations

import importlib.util
import os
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("healthcheck", ROOT / "deploy/healthcheck.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


healthcheck = _load()


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200 if self.path == "/healthz" else 503)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_api_is_unhealthy_when_nothing_listens(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:  # a loopback port that was free a moment ago
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = healthcheck.main(["api", "--url", f"http://127.0.0.1:{port}/healthz",
                             "--timeout", "1"])
    assert code == 1
    assert "no answer" in capsys.readouterr().err


def test_api_is_unhealthy_on_an_error_status(server: str) -> None:
    assert healthcheck.check_api(f"{server}/broken", 2) == f"{server}/broken answered 503"


def test_api_only_asks_a_local_address() -> None:
    assert healthcheck.check_api("http://example.org/healthz", 1) is not None


def test_api_is_healthy_when_healthz_answers_200(server: str) -> None:
    assert healthcheck.main(["api", "--url", f"{server}/healthz"]) == 0


def test_beat_is_unhealthy_without_a_schedule_file_or_with_a_stale_one(tmp_path: Path) -> None:
    assert "no celerybeat-schedule" in healthcheck.check_beat(tmp_path, 600)
    schedule = tmp_path / "celerybeat-schedule"
    schedule.write_bytes(b"x")
    old = time.time() - 900
    os.utime(schedule, (old, old))
    assert "not written for 9" in healthcheck.check_beat(tmp_path, 600)


def test_beat_is_healthy_with_a_fresh_schedule_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "celerybeat-schedule.db").write_bytes(b"x")  # dbm backends add suffixes
    assert healthcheck.check_beat(tmp_path, 600) is None
    monkeypatch.setenv("ADVOCASE_VAR_DIR", str(tmp_path))
    from app.settings import reset_settings_cache

    suite_settings = reset_settings_cache()
    try:
        assert healthcheck.main(["beat"]) == 0
    finally:
        reset_settings_cache(to=suite_settings)  # the very object other fixtures hold


def test_worker_is_unhealthy_when_no_worker_of_this_host_answers(tmp_path: Path) -> None:
    """Over a real Redis broker (a database no worker listens on); a worker that answers was
    seen passing by hand (README, Deploying)."""
    import subprocess
    import sys

    from tests.support import services

    url = services.REDIS_URL.rsplit("/", 1)[0] + "/14"
    services.require_redis(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADVOCASE_")}
    env |= {"ADVOCASE_BROKER_URL": url, "ADVOCASE_VAR_DIR": str(tmp_path)}
    result = subprocess.run(  # noqa: S603
        [sys.executable, str(ROOT / "deploy/healthcheck.py"), "worker", "--timeout", "0.5"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert f"celery@{socket.gethostname()} did not answer a ping" in result.stderr
