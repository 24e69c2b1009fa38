"""The advocase command, including `dev`: one supervised group of API, worker and beat."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

PROJECT = Path(__file__).resolve().parents[1]


def embedded_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADVOCASE_")}
    env |= {"ADVOCASE_VAR_DIR": str(tmp_path / "var"), "ADVOCASE_LOG_LEVEL": "WARNING"}
    return env


def advocase(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603
        [sys.executable, "-m", "app.cli", *args], cwd=PROJECT, env=env,
        capture_output=True, text=True, timeout=120,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_version_json(tmp_path: Path) -> None:
    result = advocase("version", "--json", env=embedded_env(tmp_path))
    assert result.returncode == 0
    assert json.loads(result.stdout) == {"name": "advocase", "version": "0.1.0"}


def test_migrate_is_idempotent_and_prints_json(tmp_path: Path) -> None:
    env = embedded_env(tmp_path)
    first = advocase("migrate", "--json", env=env)
    second = advocase("migrate", "--json", env=env)
    assert first.returncode == 0 and second.returncode == 0, first.stderr
    assert json.loads(first.stdout)["revision"] == json.loads(second.stdout)["revision"]
    assert (tmp_path / "var" / "advocase.sqlite").exists()


def test_bad_configuration_is_a_clear_message_not_a_traceback(tmp_path: Path) -> None:
    env = embedded_env(tmp_path) | {"ADVOCASE_MAX_BODY_BYTES": "tiny"}
    result = advocase("migrate", env=env)
    assert result.returncode == 2
    assert "ADVOCASE_MAX_BODY_BYTES" in result.stderr
    assert "Traceback" not in result.stderr
    assert "tiny" not in result.stderr  # values are never echoed: they may be secrets


def start_dev(tmp_path: Path) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "app.cli", "dev", "--port", str(port)], cwd=PROJECT,
        env=embedded_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    return process, port


def wait_ready_with_worker(port: int, process: subprocess.Popen[str], timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
            last = response.json()
            if response.status_code == 200 and last["checks"]["worker"]["status"] == "ok":
                return last
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"not ready with a worker heartbeat in {timeout}s: {last}")


def child_pids(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)],  # noqa: S607
                         capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat")
    return state.exists() and state.read_text().split()[2] != "Z"


def test_dev_runs_everything_and_ctrl_c_stops_all_cleanly(tmp_path: Path) -> None:
    process, port = start_dev(tmp_path)
    try:
        ready = wait_ready_with_worker(port, process)
        assert ready["checks"]["database"]["status"] == "ok"
        assert ready["checks"]["broker"]["status"] == "ok"
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        children = child_pids(process.pid)
        assert len(children) == 3
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=40)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    assert "http://127.0.0.1:" in output and "data kept in" in output
    assert not [pid for pid in children if alive(pid)]


def test_dev_stops_everything_when_one_child_dies(tmp_path: Path) -> None:
    process, port = start_dev(tmp_path)
    try:
        wait_ready_with_worker(port, process)
        children = child_pids(process.pid)
        api = next(pid for pid in children
                   if b"serve" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"))
        os.kill(api, signal.SIGKILL)
        output, _ = process.communicate(timeout=40)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode != 0
    assert "the api process exited" in output
    assert not [pid for pid in children if alive(pid)]


@pytest.mark.parametrize("command", ["serve", "worker", "beat", "dev", "migrate"])
def test_each_command_has_help(tmp_path: Path, command: str) -> None:
    result = advocase(command, "--help", env=embedded_env(tmp_path))
    assert result.returncode == 0
    assert "Usage" in result.stdout
