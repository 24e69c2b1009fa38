"""CPU cost of one request inside the app, without HTTP: `/healthz` against an
authenticated `GET /api/v1/me`, driving the ASGI app directly on one event loop.

CPU time (not wall time) per request, best of ``--rounds``: steadier than wrk on a
machine shared with other work, and it isolates the app's own cost from the server's.

    .venv/bin/python -m tests.bench.inprocess [--requests 3000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from typing import Any


def _prepare(var_dir: str) -> tuple[Any, str]:
    os.environ["ADVOCASE_VAR_DIR"] = var_dir
    os.environ["ADVOCASE_LOG_LEVEL"] = "WARNING"
    for name in ("DATABASE_URL", "BROKER_URL", "RESULT_BACKEND", "STORAGE_DIR"):
        os.environ.pop(f"ADVOCASE_{name}", None)
    from app.cli import run_migrations
    from app.core.logging import configure_logging
    from app.db import unit_of_work
    from app.main import create_app
    from app.settings import get_settings
    from tests.support.identity import make_org, make_user, staff_token

    configure_logging(get_settings(), "api")
    run_migrations()
    with unit_of_work() as db:
        org = make_org(db)
        token = staff_token(db, make_user(db, org, "advocate"))
    return create_app(), token


async def _call(app: Any, path: str, headers: list[tuple[bytes, bytes]]) -> int:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "headers": headers,
             "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000), "state": {}}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return int(sent[0]["status"])


async def _measure(app: Any, token: str, requests: int, rounds: int) -> dict[str, float]:
    plain = [(b"host", b"127.0.0.1")]
    paths = {"/healthz": plain,
             "/api/v1/me": plain + [(b"authorization", f"Bearer {token}".encode())]}
    best: dict[str, float] = {}
    async with app.router.lifespan_context(app):
        for path, headers in paths.items():
            assert await _call(app, path, headers) == 200, path
            for _ in range(200):
                await _call(app, path, headers)
        for _ in range(rounds):
            for path, headers in paths.items():
                started = time.process_time()
                for _ in range(requests):
                    await _call(app, path, headers)
                cost = (time.process_time() - started) / requests * 1e6
                best[path] = min(best.get(path, cost), cost)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="advocase-inprocess-") as var_dir:
        app, token = _prepare(var_dir)
        best = asyncio.run(_measure(app, token, args.requests, args.rounds))
    healthz, me = best["/healthz"], best["/api/v1/me"]
    print(f"in-process CPU per request (best of {args.rounds} x {args.requests}):")
    print(f"  /healthz     {healthz:8.1f} µs")
    print(f"  /api/v1/me   {me:8.1f} µs   ({me / healthz:.2f} x /healthz)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
