"""Two API processes that share nothing but the database, Redis and storage (issue 10, part 5).

Two real ``advocase serve`` processes on two ports, each with its own memory, talk to the
run's database (SQLite in the first CI run, PostgreSQL in the second) and to Redis for rate
limits. Whatever one process learns, the other must act on at once: a session ended or a
refresh-token family revoked on one is refused by the other, login failures counted on both
add up to one throttle, and a client purged elsewhere (the purge here runs in the test
process, as a CLI command or a worker would) is not readable from a process that read it a
moment before and still holds its key in memory.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from uuid import UUID, uuid4

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import Session

from app.settings import Settings
from tests.support import services
from tests.support.identity import PASSWORD, make_org, make_user
from tests.test_cli import PROJECT, embedded_env, free_port


@dataclass
class TwoApis:
    a: str
    b: str
    engine: sa.Engine
    org_id: UUID


def _wait_healthy(base: str, process: subprocess.Popen[bytes], timeout: float = 45) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the API process on {base} exited"
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{base} did not answer /healthz within {timeout} s")


@pytest.fixture(scope="module")
def apis(tmp_path_factory, settings: Settings) -> Iterator[TwoApis]:
    services.require_redis()
    folder = tmp_path_factory.mktemp("two-apis")
    kind = "postgresql" if services.TEST_DATABASE_URL else "sqlite"
    with services.own_database(kind, folder, "two_apis") as url:
        engine = sa.create_engine(url)
        with Session(engine) as db:
            org = make_org(db, slug=f"two-apis-{uuid4().hex[:8]}")
            db.commit()
            org_id = org.id
        # The keys are the test process's own, so that it can act as a third process
        # (the purge below) on the same data.
        env = embedded_env(folder) | {
            "ADVOCASE_DATABASE_URL": url,
            "ADVOCASE_RATE_LIMIT_URL": services.REDIS_URL,
            "ADVOCASE_STORAGE_DIR": str(folder / "storage"),
            "ADVOCASE_MASTER_KEY": settings.master_key_value(),
            "ADVOCASE_SECRET_KEY": settings.secret_key_value(),
        }
        processes, bases = [], []
        try:
            for _ in range(2):
                port = free_port()
                processes.append(subprocess.Popen(  # noqa: S603
                    [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
                    cwd=PROJECT, env=env, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL))
                bases.append(f"http://127.0.0.1:{port}")
            for base, process in zip(bases, processes, strict=True):
                _wait_healthy(base, process)
            yield TwoApis(bases[0], bases[1], engine, org_id)
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
            engine.dispose()


def _advocate(apis: TwoApis) -> str:
    """A new advocate of the org; returns the email (password: the usual test one)."""
    from app.identity.models import Org

    with Session(apis.engine) as db:
        org = db.get(Org, apis.org_id)
        assert org is not None
        user = make_user(db, org, "advocate",
                         email=f"adv-{uuid4().hex[:10]}@two-apis.example.test")
        db.commit()
        return user.email


def _login(base: str, email: str, password: str = PASSWORD) -> httpx.Response:
    return httpx.post(f"{base}/api/v1/auth/login", json={"email": email, "password": password},
                      timeout=30)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_spent_refresh_token_used_on_the_other_process_revokes_the_family(apis) -> None:
    email = _advocate(apis)
    first = _login(apis.a, email)
    assert first.status_code == 200, first.text
    tokens = first.json()
    # A token issued by A is accepted by B (the signing key is shared, not per process).
    assert httpx.get(f"{apis.b}/api/v1/me", headers=_bearer(tokens["access_token"])
                     ).json()["email"] == email

    rotated = httpx.post(f"{apis.b}/api/v1/auth/refresh",
                         json={"refresh_token": tokens["refresh_token"]})
    assert rotated.status_code == 200, rotated.text
    fresh = rotated.json()
    # The spent token replayed on A: refused, and the whole family with it, on both.
    replay = httpx.post(f"{apis.a}/api/v1/auth/refresh",
                        json={"refresh_token": tokens["refresh_token"]})
    assert replay.status_code == 401
    assert replay.headers["content-type"].startswith("application/problem+json")
    assert httpx.post(f"{apis.a}/api/v1/auth/refresh",
                      json={"refresh_token": fresh["refresh_token"]}).status_code == 401
    for base in (apis.a, apis.b):
        assert httpx.get(f"{base}/api/v1/me",
                         headers=_bearer(fresh["access_token"])).status_code == 401


def test_a_logout_on_one_process_ends_the_session_on_the_other(apis) -> None:
    email = _advocate(apis)
    tokens = _login(apis.b, email).json()
    assert httpx.get(f"{apis.a}/api/v1/me",
                     headers=_bearer(tokens["access_token"])).status_code == 200
    assert httpx.post(f"{apis.b}/api/v1/auth/logout",
                      headers=_bearer(tokens["access_token"])).status_code == 204
    # Still well within its 15 minutes, the access token is refused at once by A.
    refused = httpx.get(f"{apis.a}/api/v1/me", headers=_bearer(tokens["access_token"]))
    assert refused.status_code == 401
    assert httpx.post(f"{apis.a}/api/v1/auth/refresh",
                      json={"refresh_token": tokens["refresh_token"]}).status_code == 401


def test_login_failures_on_both_processes_add_up_to_one_throttle(apis) -> None:
    from app.core import ratelimit

    email = _advocate(apis)
    # The free failures, alternating between the processes: each sees only half of them,
    # so a throttle kept in each process's memory would never start.
    for attempt in range(ratelimit.PAIR_FREE_FAILURES):
        base = (apis.a, apis.b)[attempt % 2]
        assert _login(base, email, "a wrong fictional passphrase").status_code == 401
    for base in (apis.a, apis.b):
        throttled = _login(base, email)  # even the right password waits its turn
        assert throttled.status_code == 429, (base, throttled.text)
        assert throttled.headers["content-type"].startswith("application/problem+json")
        assert int(throttled.headers["Retry-After"]) >= 1


def test_a_client_purged_elsewhere_is_unreadable_on_a_process_that_held_its_key(apis) -> None:
    from app.clients import service as clients
    from app.core.access import Actor
    from app.identity.models import Org

    email = _advocate(apis)
    token = _login(apis.a, email).json()["access_token"]
    legal_name = f"Fictional Purgee {uuid4().hex[:6]}"
    created = httpx.post(f"{apis.a}/api/v1/clients", headers=_bearer(token),
                         json={"preferred_name": "Fictional P.", "legal_name": legal_name})
    assert created.status_code == 201, created.text
    client_id = created.json()["id"]
    incident = httpx.post(
        f"{apis.a}/api/v1/clients/{client_id}/incidents", headers=_bearer(token),
        json={"occurred": {"precision": "date", "start": "2026-01-05", "time_zone": "UTC"},
              "categories": ["threats"], "place": "Fictional Car Park 7",
              "client_account": "A fictional account."})
    assert incident.status_code == 201, incident.text
    incident_id = incident.json()["id"]
    # B reads both, so B now holds the client's key in its memory.
    assert legal_name in httpx.get(f"{apis.b}/api/v1/clients/{client_id}",
                                   headers=_bearer(token)).text
    assert "Fictional Car Park 7" in httpx.get(f"{apis.b}/api/v1/incidents/{incident_id}",
                                               headers=_bearer(token)).text

    with Session(apis.engine) as db:
        org = db.get(Org, apis.org_id)
        assert org is not None
        supervisor = make_user(db, org, "supervisor")
        actor = Actor(kind="user", id=supervisor.id, org_id=org.id, role="supervisor")
        clients.purge_client(db, actor, UUID(client_id))
        db.commit()

    for path in (f"/api/v1/clients/{client_id}", f"/api/v1/incidents/{incident_id}"):
        answer = httpx.get(f"{apis.b}{path}", headers=_bearer(token))
        assert answer.status_code in (404, 410), (path, answer.status_code)
        assert legal_name not in answer.text and "Fictional Car Park 7" not in answer.text


def test_several_processes_without_a_shared_rate_limit_store_are_refused(tmp_path) -> None:
    """On the embedded set-up (no Redis) each process would count failures on its own."""
    from tests.test_cli import advocase

    refused = advocase("serve", "--workers", "2", "--port", str(free_port()),
                       env=embedded_env(tmp_path))
    assert refused.returncode == 2
    assert "ADVOCASE_RATE_LIMIT_URL" in refused.stderr and "Traceback" not in refused.stderr
