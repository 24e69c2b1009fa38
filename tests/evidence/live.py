"""A real advocase server in a subprocess, on a free loopback port with a throw-away var
folder, set up with one fictional advocate, client and incident — for the large-upload
test and the evidence benchmark. Memory is read from /proc (Linux)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import httpx
import sqlalchemy as sa
from sqlmodel import Session

HOST = "127.0.0.1"
PASSWORD = "correct horse battery staple (fictional)"
MIB = 1024 * 1024


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def rss_bytes(pid: int) -> int:
    return _status_kib(pid, "VmRSS") * 1024


def peak_rss_bytes(pid: int) -> int:
    return _status_kib(pid, "VmHWM") * 1024


def reset_peak_rss(pid: int) -> bool:
    """Start the process's peak-RSS (VmHWM) count afresh; False where the kernel refuses."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class RssSampler:
    """The highest RSS seen while sampling every 20 ms (also where VmHWM cannot be reset)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, rss_bytes(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_bytes(self.pid))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes(self.pid))


@dataclass
class Live:
    base_url: str
    pid: int
    token: str
    incident_id: UUID
    client: httpx.Client

    def evidence_url(self) -> str:
        return f"{self.base_url}/api/v1/incidents/{self.incident_id}/evidence"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def _env(var_dir: Path, evidence_max_bytes: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADVOCASE_")}
    env.update(ADVOCASE_VAR_DIR=str(var_dir), ADVOCASE_ENV="test",
               ADVOCASE_LOG_LEVEL="WARNING", ADVOCASE_EVIDENCE_MAX_BYTES=str(evidence_max_bytes),
               PYTHONUNBUFFERED="1")
    return env


def _cli(env: dict[str, str], cwd: Path, *args: str, stdin: str | None = None) -> dict:
    done = subprocess.run([sys.executable, "-m", "app.cli", *args], env=env, cwd=cwd,  # noqa: S603
                          input=stdin, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"advocase {args[0]} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]) if "--json" in args else {}


@contextmanager
def live_server(folder: Path, *, evidence_max_bytes: int = 512 * MIB) -> Iterator[Live]:
    var_dir = folder / "var"
    var_dir.mkdir(parents=True)
    env = _env(var_dir, evidence_max_bytes)
    _cli(env, var_dir, "migrate")
    org = _cli(env, var_dir, "create-org", "--name", "Fictional Evidence Agency", "--json")
    email = "advocate@fictional-evidence.example"
    user = _cli(env, var_dir, "create-user", "--org", org["slug"], "--email", email, "--role",
                "advocate", "--json", stdin=PASSWORD + "\n")
    port = free_port()
    log = (folder / "server.log").open("wb")
    server = subprocess.Popen(  # noqa: S603 - fixed argv, loopback only
        [sys.executable, "-m", "app.cli", "serve", "--host", HOST, "--port", str(port)],
        env=env, cwd=var_dir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    base = f"http://{HOST}:{port}"
    http = httpx.Client(timeout=300, trust_env=False)
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                raise RuntimeError("the server exited: "
                                   + (folder / "server.log").read_text()[-2000:])
            try:
                if http.get(base + "/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not answer /healthz within 60 s")
            time.sleep(0.05)
        login = http.post(base + "/api/v1/auth/login", json={"email": email,
                                                             "password": PASSWORD})
        login.raise_for_status()
        token = login.json()["access_token"]
        made = http.post(base + "/api/v1/clients", headers={"Authorization": f"Bearer {token}"},
                         json={"preferred_name": "Fictional Evidence Client"})
        made.raise_for_status()
        incident_id = _incident(var_dir / "advocase.sqlite", org["id"], made.json()["id"],
                                user["id"])
        yield Live(base, server.pid, token, incident_id, http)
    finally:
        http.close()
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        log.close()


def _incident(database: Path, org_id: str, client_id: str, user_id: str) -> UUID:
    """An incident head row written straight into the server's database (evidence needs
    only that the incident exists)."""
    import app.models  # noqa: F401 - every table, so foreign keys resolve
    from app.incidents.models import Incident

    engine = sa.create_engine(f"sqlite:///{database}")
    try:
        with Session(engine) as db:
            incident = Incident(org_id=UUID(org_id), client_id=UUID(client_id),
                                created_by=UUID(user_id))
            db.add(incident)
            db.commit()
            return incident.id
    finally:
        engine.dispose()


def multipart_stream(size: int, boundary: str, *, seed: int = 0,
                     chunk: int = MIB) -> tuple[Iterator[bytes], dict[str, object]]:
    """A multipart body with a ``size``-byte MP4-looking file, generated as it is sent (the
    caller never holds the file). The returned dict gets the file's SHA-256 once sent."""
    import hashlib

    block = bytearray(os.urandom(chunk))
    result: dict[str, object] = {}

    def body() -> Iterator[bytes]:
        digest = hashlib.sha256()
        yield (f'--{boundary}\r\nContent-Disposition: form-data; name="description"\r\n\r\n'
               "Fictional long recording\r\n"
               f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
               f'filename="fictional-recording.mp4"\r\nContent-Type: video/mp4\r\n\r\n').encode()
        head = (32).to_bytes(4, "big") + b"ftypisom\x00\x00\x02\x00isomiso2avc1mp41"
        sent = 0
        number = seed
        while sent < size:
            number += 1
            block[:8] = number.to_bytes(8, "big")
            piece = bytes(block[: min(chunk, size - sent)])
            if sent == 0:
                piece = head + piece[len(head):]
            digest.update(piece)
            sent += len(piece)
            yield piece
        result["sha256"] = digest.hexdigest()
        yield f"\r\n--{boundary}--\r\n".encode()

    return body(), result
