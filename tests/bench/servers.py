"""The servers under test: started on 127.0.0.1 only, with a throw-away var folder, always stopped.

Safety rules, because a developer runs this on the machine that holds their data:

- every advocase process gets ``ADVOCASE_VAR_DIR`` set to a fresh temporary folder,
  every other inherited ``ADVOCASE_*`` variable removed, and runs with that folder
  as its working directory so a ``.env`` file in the repository is not read either:
  the benchmark can never reach a developer's database, broker or storage;
- servers listen on loopback only, and the readiness polls here bypass any HTTP
  proxy configured in the environment;
- each server is its own process group; stopping sends SIGTERM to the server (uvicorn
  stops its workers), waits up to 10 s, then SIGKILLs whatever is left of that group.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, NoReturn

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
START_TIMEOUT_S = 30.0
STOP_GRACE_S = 10.0

# A direct opener: http_proxy/HTTP_PROXY must not send loopback polls anywhere else.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ServerError(RuntimeError):
    """A server did not start, or did not become healthy in time."""


def free_port() -> int:
    """A port free on loopback right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def http_get(
    url: str, headers: Mapping[str, str] | None = None, timeout: float = 2.0
) -> tuple[int, bytes]:
    """GET ``url`` directly (no proxy); returns status and body, or raises OSError."""
    assert url.startswith(f"http://{HOST}:"), url
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with _DIRECT.open(request, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def advocase_env(var_dir: Path) -> dict[str, str]:
    """The environment of every advocase process: isolated data, quiet logs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADVOCASE_")}
    env.update(
        ADVOCASE_VAR_DIR=str(var_dir),
        # One INFO line per request would measure the terminal, not the service.
        ADVOCASE_LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    return env


def migrate(env: dict[str, str], cwd: Path) -> str:
    """``advocase migrate`` into the temporary var folder; returns its output."""
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli", "migrate"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        raise ServerError(f"advocase migrate failed (exit {proc.returncode}):\n{proc.stderr}")
    return proc.stdout.strip()


@dataclass
class Server:
    """One server process (uvicorn master plus its workers) and what it printed."""

    name: str
    argv: list[str]
    port: int
    env: dict[str, str]
    cwd: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    startup_s: dict[str, float] = field(default_factory=dict)
    _log: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        self._log = self.log_path.open("wb")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            self.argv,
            env=self.env,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_for(self, path: str, label: str, deadline: float) -> float:
        """Poll ``path`` until it answers 200; record and return seconds since start."""
        assert self.proc is not None
        last = "no answer"
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                raise ServerError(
                    f"{self.name} exited with code {code} before {path} answered 200; "
                    f"its output:\n{self.output_tail()}"
                )
            try:
                status, _ = http_get(self.base_url + path, timeout=1.0)
            except OSError as exc:
                last = type(exc).__name__
            else:
                if status == 200:
                    elapsed = time.monotonic() - self.started_at
                    self.startup_s[label] = elapsed
                    return elapsed
                last = f"HTTP {status}"
            time.sleep(0.02)
        raise ServerError(
            f"{self.name}: GET {path} did not answer 200 within {START_TIMEOUT_S:.0f} s "
            f"(last: {last}); its output:\n{self.output_tail()}"
        )

    def stop(self) -> int | None:
        """SIGTERM, up to 10 s grace, then SIGKILL the process group; returns the exit code."""
        code: int | None = None
        if self.proc is not None:
            pgid = self.proc.pid  # start_new_session: the group id is the server's pid
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                print(f"  {self.name} alive after {STOP_GRACE_S:.0f} s: SIGKILL", flush=True)
                self.proc.kill()
                code = self.proc.wait()
            # Workers that outlived their master (they should not) go too.
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def output_tail(self, lines: int = 30) -> str:
        return "\n".join(self.output().splitlines()[-lines:])


# Several API processes must share their rate limits (``advocase serve`` refuses to start
# otherwise): a benchmark on the embedded defaults counts them in this Redis database.
BENCH_RATE_LIMIT_URL = "redis://127.0.0.1:6379/13"


def advocase_server(
    port: int, workers: int, env: dict[str, str], var_dir: Path, log_dir: Path
) -> Server:
    shared = env.get("ADVOCASE_RATE_LIMIT_URL") or env.get("ADVOCASE_BROKER_URL", "")
    if workers > 1 and not shared.startswith(("redis://", "rediss://")):
        env = env | {"ADVOCASE_RATE_LIMIT_URL": BENCH_RATE_LIMIT_URL}
    return Server(
        name="advocase",
        argv=[
            sys.executable, "-m", "app.cli", "serve",
            "--host", HOST, "--port", str(port), "--workers", str(workers),
        ],
        port=port,
        env=env,
        cwd=var_dir,  # no repository .env is read
        log_path=log_dir / "advocase-server.log",
    )


def baseline_server(port: int, workers: int, env: dict[str, str], log_dir: Path) -> Server:
    return Server(
        name="baseline",
        argv=[
            sys.executable, "-m", "uvicorn", "tests.bench.baseline:app",
            "--host", HOST, "--port", str(port), "--workers", str(workers),
            "--log-level", "warning", "--no-access-log",
        ],
        port=port,
        env=env,
        cwd=REPO_ROOT,  # so ``tests.bench.baseline`` is importable
        log_path=log_dir / "baseline-server.log",
    )


# --- what every benchmark's command line shares ---------------------------------------------


class Terminated(SystemExit):
    """SIGTERM, turned into an exception so the ``finally`` blocks clean up."""


def on_sigterm(signum: int, _: object) -> NoReturn:
    raise Terminated(128 + signum)


def require_postgres_or_stop(url: str) -> None:
    """PostgreSQL must answer at ``url``; otherwise the benchmark stops with a plain reason
    (``tests.support.services.require_postgres`` skips or fails a test instead, and that is
    an exception of pytest's outside pytest)."""
    import sqlalchemy as sa

    from tests.support import services

    try:
        services.require_postgres(url)
    except BaseException as exc:
        raise ServerError(f"PostgreSQL is not reachable at {sa.make_url(url).host}: start it "
                          "or pass --database-url") from exc


def run_guarded(body: Callable[[], int], cleaned: str) -> int:
    """Run a benchmark's body with the exit codes every benchmark shares: 2 when wrk, a
    server or a setting failed (the reason printed, nothing else), 130 on Ctrl-C, 143 on
    SIGTERM. ``cleaned`` says what the body's own ``finally`` left clean."""
    from tests.bench.wrk import WrkError

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        return body()
    except (WrkError, ServerError, ValueError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"bench: interrupted; {cleaned}", file=sys.stderr)
        return 130
    except Terminated as exc:
        print(f"bench: terminated; {cleaned}", file=sys.stderr)
        return int(exc.code or 143)


def bounded(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer from ``low`` to ``high``."""
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}")
        return value

    return parse
