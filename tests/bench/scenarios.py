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

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

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
