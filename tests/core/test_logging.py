"""Logs are one JSON object a line in production, carry the request id, and no personal data."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from app.core.logging import REDACTED, redact_sensitive
from tests.test_cli import PROJECT, embedded_env, free_port

MARKER = "Fictional-Survivor-Name"


def test_server_logs_are_json_lines_without_bodies_or_query_strings(tmp_path: Path) -> None:
    env = embedded_env(tmp_path) | {"ADVOCASE_ENV": "production", "ADVOCASE_LOG_LEVEL": "INFO",
                                   "ADVOCASE_SECRET_KEY": "fictional-test-secret-key-value",
                                   "ADVOCASE_MASTER_KEY": "fictional-test-master-key-value"}
    assert subprocess.run([sys.executable, "-m", "app.cli", "migrate"], cwd=PROJECT,  # noqa: S603
                          env=env, capture_output=True, timeout=60).returncode == 0
    port = free_port()
    server = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port)], cwd=PROJECT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        ids = []
        for response in (
            httpx.get(f"{base}/readyz", params={"name": MARKER}),
            httpx.post(f"{base}/api/v1/anything", json={"name": MARKER},
                       headers={"authorization": f"Bearer {MARKER}"}),
            httpx.get(f"{base}/api/v1/clients/{MARKER}"),
        ):
            ids.append(response.headers["x-request-id"])
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=30)

    lines = [line for line in output.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert MARKER not in output
    requests = [r for r in records if r.get("event") == "request"]
    assert {r["request_id"] for r in requests} >= set(ids)
    assert {r["route"] for r in requests} >= {"/readyz", "<unmatched>"}
    assert all(r["process"] == "api" and "timestamp" in r for r in records)


def test_secret_looking_keys_are_masked() -> None:
    event = {"event": "login", "password": "x", "access_token": "y", "Authorization": "z",
             "client_secret": "w", "totp_code": "123456", "user_id": "kept"}
    cleaned = redact_sensitive(None, "info", dict(event))
    assert cleaned["user_id"] == "kept"
    assert all(cleaned[k] == REDACTED for k in event if k not in ("event", "user_id"))
