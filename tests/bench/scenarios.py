"""What is measured: one ``Scenario`` per endpoint, registered in ``SCENARIOS``.

A scenario names the server it targets, the path it GETs, fixed headers, and an
optional setup hook that runs once, after the servers are up and before wrk
starts. The hook gets a ``Context`` (base URL, the isolated environment and var
folder) and returns extra headers, which is how an authenticated scenario will
get its token without the harness knowing anything about authentication::

    def bearer_token(ctx: Context) -> dict[str, str]:
        token = ...  # e.g. create a user and log in against ctx.base_url
        return {"Authorization": f"Bearer {token}"}

    Scenario("me", ADVOCASE, "/api/v1/me", setup=bearer_token,
             description="authenticated GET: token check, one user row")

Credential header values are masked whenever a wrk command is printed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
BENCH_PASSWORD = "a fictional benchmark passphrase"

BASELINE = "baseline"
ADVOCASE = "advocase"


@dataclass(frozen=True)
class Context:
    """What a setup hook may use: the target server and the benchmark's own data folder."""

    base_url: str
    env: Mapping[str, str]
    var_dir: Path


SetupHook = Callable[[Context], Mapping[str, str]]


@dataclass(frozen=True)
class Scenario:
    name: str
    server: str  # BASELINE or ADVOCASE
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)
    setup: SetupHook | None = None
    expect_status: int = 200
    description: str = ""

    def prepare(self, ctx: Context) -> dict[str, str]:
        """The headers to send: the fixed ones plus whatever the setup hook returns."""
        headers = dict(self.headers)
        if self.setup is not None:
            headers.update(self.setup(ctx))
        return headers


def advocate_token(ctx: Context) -> dict[str, str]:
    """An advocate (no MFA needed) of a fictional agency signs in through the API."""

    def cli(*args: str, stdin: str | None = None) -> None:
        subprocess.run([sys.executable, "-m", "app.cli", *args], input=stdin, text=True,  # noqa: S603
                       env=dict(ctx.env), cwd=ctx.var_dir, check=True,
                       capture_output=True, timeout=60)

    cli("create-org", "--name", "Bench Agency (fictional)", "--slug", "bench")
    cli("create-user", "--org", "bench", "--email", "bench.advocate@example.test",
        "--role", "advocate", stdin=BENCH_PASSWORD + "\n")
    request = urllib.request.Request(
        ctx.base_url + "/api/v1/auth/login",
        data=json.dumps({"email": "bench.advocate@example.test",
                         "password": BENCH_PASSWORD}).encode(),
        headers={"content-type": "application/json"}, method="POST")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=30) as response:  # noqa: S310 - loopback only
        token = json.load(response)["access_token"]
    return {"Authorization": f"Bearer {token}"}


BASELINE_SCENARIO = Scenario(
    BASELINE, BASELINE, "/", description="minimal Starlette app, GET / -> {\"status\":\"ok\"}"
)

# The baseline runs first and last in every run; these run in between, in this order.
SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "healthz", ADVOCASE, "/healthz",
        description="liveness: FastAPI routing, middleware, response model; touches nothing",
    ),
    Scenario(
        "readyz", ADVOCASE, "/readyz",
        description="readiness: SELECT 1 on the database and on the embedded broker, "
        "plus the worker-heartbeat query, in the thread pool",
    ),
    Scenario(
        "me", ADVOCASE, "/api/v1/me", setup=advocate_token,
        description="authenticated GET: ES256 token check, session + user lookup, org row",
    ),
)

ALL_NAMES: tuple[str, ...] = (BASELINE, *(s.name for s in SCENARIOS))


def select(names: list[str] | None) -> list[Scenario]:
    """The scenarios to run between the two baseline runs, in registry order."""
    if not names:
        return list(SCENARIOS)
    unknown = sorted(set(names) - set(ALL_NAMES))
    if unknown:
        raise ValueError(
            f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(ALL_NAMES)}"
        )
    return [s for s in SCENARIOS if s.name in names]
