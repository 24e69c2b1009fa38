"""Benchmark: the partner inbox (``GET /api/v1/referrals`` as a partner app).

    .venv/bin/python -m tests.bench.referrals [--referrals 20000] [--apps 4] [--database-url URL]

Target (issue text): with 2 workers, the partner inbox listing answers with p99 under
50 ms.

What a run does, bounded in time and on loopback only:

1. makes a throw-away var folder and migrates its database: the embedded SQLite by
   default, or a PostgreSQL database named by ``--database-url`` (its name must contain
   "bench": it is dropped and created again, and dropped at the end);
2. seeds one fictional agency with ``--apps`` partner apps, a listing each, one client per
   five referrals (fictional names and phone numbers, encrypted as the API stores them)
   and ``--referrals`` referrals through the referral service (create, send, the
   recipient's answer: the same rows, transitions, webhook events and audit events as
   the API writes), spread over the last 180 days and over every state; a third of the
   clients have a release of identity and risk data for the first app;
3. issues the first app a token in-process (a partner-token row and an ES256 token, as
   ``/oauth/token`` makes them), serves advocase (``advocase serve --workers 2``) and
   drives it with wrk (``-t2 -c16`` by default, 2 s warm-up, 10 s measured):
   ``/healthz`` first and last (the reference rate), then the inbox's first page, a
   status filter, a sync by ``updated_since`` (the last week), the first ten pages by
   cursor in turn (a wrk Lua script), each ``limit=50`` — held to the target — and, for
   information only, reading one referral (a consent check per category, a decryption,
   an audited disclosure), cycling over 200 referrals;
4. stops the server and removes what it made.

Every name is fictional; nothing is printed but counts and figures.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from multiprocessing import get_context
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa

from tests.bench.servers import (
    START_TIMEOUT_S,
    ServerError,
    advocase_env,
    advocase_server,
    free_port,
    http_get,
    migrate,
)
from tests.bench.wrk import WrkError, ensure_wrk, redacted, run_wrk, wrk_command, wrk_version

TARGET_P99_MS = 50.0
CHUNK = 500
SEED_TIMEOUT_S = 1_800
PAGE = 50
# (state, weight): where the seeded referrals stand.
STATES = (("draft", 5), ("sent", 20), ("accepted", 25), ("declined", 10),
          ("completed", 25), ("closed", 10), ("withdrawn", 5))
PATHS = {"sent": ["send"], "accepted": ["send", "accept"], "declined": ["send", "decline"],
         "completed": ["send", "accept", "complete"], "closed": ["send", "accept", "close"],
         "withdrawn": ["send", "withdraw"], "draft": []}
FIRST = ("Ash", "Briar", "Cedar", "Dara", "Eden", "Fern", "Gale", "Hazel", "Iris", "Juno")
LAST = ("Example", "Sample", "Fictional", "Placeholder", "Testwood")


def _use_env(env: dict[str, str]) -> None:
    import os

    for name in [k for k in os.environ if k.startswith("ADVOCASE_")]:
        del os.environ[name]
    os.environ.update(env)


def _seed_agency(apps: int) -> dict[str, Any]:
    from uuid import uuid4

    from app.db import unit_of_work, utcnow
    from app.identity import service as identity
    from app.identity import tokens
    from app.identity.models import PartnerApp, PartnerToken
    from app.resources.models import Resource

    scopes = "referrals:read referrals:write"
    with unit_of_work() as db:
        org = identity.create_org(db, name="Bench Referral Agency (fictional)",
                                  slug="bench-referrals")
        advocate = identity.create_user(
            db, None, org=org, email="bench.referrals@bench.advocase.test",
            display_name="Bench Advocate (fictional)", role="advocate").user
        made, first = [], None
        for n in range(apps):
            app = PartnerApp(org_id=org.id, name=f"Example Partner App {n} (fictional)",
                             client_id=f"pa_bench_{uuid4().hex}",
                             client_secret_digest="0" * 64, scopes=scopes)
            db.add(app)
            db.flush()
            listing = Resource(org_id=org.id, partner_app_id=app.id,
                               name=f"Example Bench Refuge {n} (fictional)",
                               categories=["shelter"])
            db.add(listing)
            db.flush()
            made.append({"app_id": str(app.id), "listing_id": str(listing.id)})
            first = first or app
        assert first is not None
        token, lifetime = tokens.issue(
            {"sub": first.client_id, "org": str(org.id), "scope": scopes},
            audience=tokens.PARTNER_AUDIENCE, lifetime_seconds=3 * 3600)
        db.add(PartnerToken(jti=tokens.decode(token).token_id, app_id=first.id,
                            scope=scopes, expires_at=utcnow() + timedelta(seconds=lifetime)))
        return {"org_id": str(org.id), "advocate_id": str(advocate.id), "apps": made,
                "token": token}


def _seed_chunk(agency: dict[str, Any], start: int, stop: int) -> list[str]:
    """``stop - start`` referrals (a client per five); returns the ids of those in the
    first app's inbox."""
    from uuid import UUID

    from app.clients import service as clients
    from app.consents import service as consents
    from app.core.access import Actor
    from app.db import unit_of_work, utcnow
    from app.referrals import service
    from app.referrals.models import Referral

    rng = random.Random(start)  # noqa: S311 - fictional data, not secrets
    org_id = UUID(agency["org_id"])
    advocate = Actor(kind="user", id=UUID(agency["advocate_id"]), org_id=org_id,
                     role="advocate")
    apps = agency["apps"]
    states = [s for s, _ in STATES]
    weights = [w for _, w in STATES]
    inbox: list[str] = []
    with unit_of_work() as db:
        client_id = None
        for i in range(start, stop):
            if client_id is None or i % 5 == 0:
                client_id = clients.create_client(db, advocate, personal={
                    "preferred_name": f"{FIRST[i % 10]} {LAST[i % 5]}",
                    "contact_details": [{"kind": "phone", "value": f"+353 1 555 {i % 10000:04d}"}],
                }).client.id
                if i % 15 == 0:
                    consents.record_release(
                        db, advocate, client_id, recipient_app_id=UUID(apps[0]["app_id"]),
                        purpose="Fictional: a place at the refuge",
                        categories=["identity", "risk_assessment"], how_given="written",
                        expires_at=utcnow() + timedelta(days=300))
            app = apps[i % len(apps)]
            state = rng.choices(states, weights)[0]
            handoff = ({"code_word": f"Example Word {i}", "call_window": None,
                        "note": "Fictional: expect a call"} if i % 3 == 0 else None)
            referral_id = service.create_referral(
                db, advocate, client_id=client_id, resource_id=UUID(app["listing_id"]),
                categories=["identity", "risk_assessment"], reason="Fictional: needs a bed",
                handoff=handoff).referral.id
            recipient = Actor(kind="partner_app", id=UUID(app["app_id"]), org_id=org_id,
                              scopes=frozenset({"referrals:read", "referrals:write"}))
            for action in PATHS[state]:
                if action == "send":
                    service.send_referral(db, advocate, referral_id, reason="Fictional")
                elif action == "withdraw":
                    service.withdraw_referral(db, advocate, referral_id, reason="Fictional")
                else:
                    service.answer_referral(db, recipient, referral_id, action,
                                            reason="Fictional")
            # Spread over half a year, as an inbox that has been in use would be.
            referral = db.get(Referral, referral_id)
            created = utcnow() - timedelta(minutes=rng.randint(60, 180 * 24 * 60))
            referral.created_at = created
            if referral.sent_at is not None:
                referral.sent_at = created + timedelta(minutes=5)
            referral.updated_at = min(utcnow(), created + timedelta(
                minutes=rng.randint(5, 30 * 24 * 60)))
            if app is apps[0] and referral.sent_at is not None:
                inbox.append(str(referral_id))
        db.flush()
    return inbox


def _analyse() -> None:
    from app.db import get_engine

    engine = get_engine()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE" if engine.dialect.name == "postgresql"
                             else "ANALYZE"))


def seed(env: dict[str, str], total: int, apps: int) -> tuple[dict[str, Any], list[str], float]:
    """Fill the migrated database; returns the agency, the first app's inbox and seconds."""
    started = time.perf_counter()
    inbox: list[str] = []
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"),
                             initializer=_use_env, initargs=(env,)) as pool:
        agency = pool.submit(_seed_agency, apps).result(timeout=120)
        done = 0
        for lo in range(0, total, CHUNK):
            hi = min(lo + CHUNK, total)
            inbox += pool.submit(_seed_chunk, agency, lo, hi).result(timeout=SEED_TIMEOUT_S)
            done = hi
            if done % (total // 5 or 1) < CHUNK or done == total:
                print(f"  {done:,} referrals seeded, {time.perf_counter() - started:.0f} s",
                      flush=True)
        pool.submit(_analyse).result(timeout=300)
    return agency, inbox, time.perf_counter() - started


def _cycling_script(folder: Path, name: str, paths: list[str]) -> str:
    """A wrk Lua script that GETs each path in turn; the threads start at different places."""
    items = ", ".join(json.dumps(path) for path in paths)  # ASCII JSON is a Lua literal
    script = folder / f"{name}.lua"
    script.write_text("\n".join([
        f"local items = {{{items}}}",
        "local i = 0",
        "local counter = 0",
        "function setup(thread)",
        "  counter = counter + 1",
        "  thread:set('offset', counter * 31)",
        "end",
        "function init(args)",
        "  i = tonumber(wrk.thread:get('offset')) or 0",
        "end",
        "request = function()",
        "  i = i + 1",
        "  return wrk.format('GET', items[(i % #items) + 1])",
        "end",
    ]) + "\n")
    return str(script)


@dataclass
class Load:
    name: str
    paths: list[str]
    target: bool  # held to the p99 target
    authenticated: bool = True


def _cursor_pages(base_url: str, headers: dict[str, str], pages: int) -> list[str]:
    """The first ``pages`` pages of the inbox, followed by cursor before the run."""
    paths = [f"/api/v1/referrals?limit={PAGE}"]
    while len(paths) < pages:
        status, body = http_get(base_url + paths[-1], headers, timeout=30)
        if status != 200:
            raise ServerError(f"inbox page answered {status}")
        cursor = json.loads(body)["next_cursor"]
        if cursor is None:
            break
        paths.append(f"/api/v1/referrals?limit={PAGE}&cursor={quote(cursor)}")
    return paths


def loads(pages: list[str], inbox: list[str]) -> list[Load]:
    base = f"/api/v1/referrals?limit={PAGE}"
    week_ago = quote((time_now() - timedelta(days=7)).isoformat())
    rng = random.Random(7)  # noqa: S311 - picks referrals to read, not secrets
    sample = rng.sample(inbox, min(200, len(inbox)))
    return [
        Load("healthz (first)", ["/healthz"], False, authenticated=False),
        Load("inbox: first page", [base], True),
        Load("inbox: status=accepted", [f"{base}&status=accepted"], True),
        Load("inbox: updated_since a week ago", [f"{base}&updated_since={week_ago}"], True),
        Load(f"inbox: pages 1-{len(pages)} by cursor", pages, True),
        Load("read one referral (consent check, audit)",
             [f"/api/v1/referrals/{r}" for r in sample], False),
        Load("healthz (last)", ["/healthz"], False, authenticated=False),
    ]


def time_now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--referrals", type=int, default=20_000)
    parser.add_argument("--apps", type=int, default=4)
    parser.add_argument("--database-url", default=None,
                        help="a PostgreSQL database whose name contains 'bench' (dropped and "
                        "created again); default: the embedded SQLite")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if not 1 <= args.referrals <= 500_000 or not 1 <= args.apps <= 50 \
            or not 1 <= args.duration <= 120:
        parser.error("--referrals 1..500000, --apps 1..50, --duration 1..120")
    wrk = ensure_wrk()
    folder = Path(tempfile.mkdtemp(prefix="advocase-bench-referrals-"))
    var_dir = folder / "var"
    var_dir.mkdir()
    env = advocase_env(var_dir)
    if args.database_url:
        from tests.support import services

        name = sa.make_url(args.database_url).database or ""
        if "bench" not in name:
            parser.error("the database name must contain 'bench' (it is dropped)")
        services.recreate_postgres_database(args.database_url)
        env["ADVOCASE_DATABASE_URL"] = args.database_url
    server = None
    rows: list[dict[str, Any]] = []
    try:
        migrate(env, var_dir)
        print(f"seeding {args.referrals:,} referrals for {args.apps} partner apps…", flush=True)
        agency, inbox, seed_s = seed(env, args.referrals, args.apps)
        server = advocase_server(free_port(), args.workers, env, var_dir, folder)
        server.start()
        server.wait_for("/healthz", "healthz", time.monotonic() + START_TIMEOUT_S)
        headers = {"Authorization": f"Bearer {agency['token']}"}
        pages = _cursor_pages(server.base_url, headers, 10)
        for load in loads(pages, inbox):
            url = server.base_url + load.paths[0]
            sent = headers if load.authenticated else {}
            status, body = http_get(url, sent, timeout=30)
            if status != 200:
                raise ServerError(f"{load.name}: probe answered {status}: {body[:300]!r}")
            script = _cycling_script(folder, f"load{len(rows)}", load.paths)
            command = wrk_command(wrk, url, threads=args.threads,
                                  connections=args.connections, seconds=args.warmup or 1,
                                  headers=sent, script=script)
            if args.warmup:
                run_wrk(command, args.warmup)
            command[3] = f"-d{args.duration}s"
            result = run_wrk(command, args.duration)
            rows.append({"load": load.name, "rps": round(result.requests_per_second, 1),
                         "p50_ms": round(result.p50_ms, 2), "p99_ms": round(result.p99_ms, 2),
                         "non_2xx": result.non_2xx, "socket_errors": result.errors,
                         "target": load.target,
                         "command": " ".join(redacted(command)).replace(str(folder), "…")})
            print(f"  {load.name:<44} {result.requests_per_second:>8.1f} req/s  "
                  f"p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms  "
                  f"non-2xx {result.non_2xx}", flush=True)
    except (ServerError, WrkError) as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 2
    finally:
        if server is not None:
            server.stop()
        if args.database_url:
            from tests.support import services

            services.drop_postgres_database(args.database_url)
        shutil.rmtree(folder, ignore_errors=True)
    reference = statistics.mean(r["rps"] for r in rows if r["load"].startswith("healthz"))
    failed = [r["load"] for r in rows
              if r["target"] and (r["p99_ms"] >= TARGET_P99_MS or r["non_2xx"])]
    report = {
        "referrals": args.referrals, "partner_apps": args.apps,
        "inbox_of_the_measured_app": len(inbox), "seed_seconds": round(seed_s, 1),
        "database": "postgresql" if args.database_url else "sqlite",
        "workers": args.workers, "connections": args.connections, "threads": args.threads,
        "duration_s": args.duration, "wrk": wrk_version(wrk),
        "target_p99_ms": TARGET_P99_MS,
        "loads": [r | {"ratio_to_healthz": round(r["rps"] / reference, 3)} for r in rows],
        "met": not failed,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    if failed:
        print(f"p99 target of {TARGET_P99_MS:.0f} ms missed by: {', '.join(failed)}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
