"""Benchmark: client records, caseload pages and exact-name search with 100,000 clients on
PostgreSQL.

    .venv/bin/python -m tests.bench.clients [--clients 100000] [--database-url URL]
    .venv/bin/python -m tests.bench.clients --inprocess --clients 10000

Targets (issue text): with 2 workers, ``GET /api/v1/clients/{id}`` (decrypting, auditing)
and a caseload page of 50 answer with p99 under 50 ms and at least 25 % of the
``/healthz`` rate measured in the same run; exact-name search answers with p99 under
50 ms.

What a run does, bounded in time and on loopback only:

1. drops and creates its own PostgreSQL database (default ``advocase_bench_clients`` on
   127.0.0.1:5432; the name must contain "bench", so nothing else can be dropped) and
   migrates it;
2. seeds one fictional agency: a supervisor, one advocate per ``--caseload`` clients
   (125 by default: 800 advocates for 100,000 clients) and the clients, each in one
   advocate's caseload, in two processes with one transaction per 1,000 clients. The
   seeding takes a bulk path, because 100,000 trips through ``create_client`` (17
   statements each) take about 15 minutes here: it still gives every client its own
   Tink data key and real ciphertexts and blind indexes through ``app.core.keys``, with
   the clients service's own table, columns and index kind, and records one
   ``client.created`` audit event per client; only the inserts are batched. Before
   measuring, the run checks through the API that what it wrote decrypts and is found;
3. serves advocase (``advocase serve --workers 2``) on that database from a temporary
   var folder, and drives it with wrk (``-t2 -c32`` by default, 2 s warm-up, 10 s
   measured): ``/healthz`` first and last (their mean is the reference for the
   ratios), then client reads cycling over the advocate's caseload, caseload pages
   (``GET /api/v1/clients?limit=50``) as the advocate and as the supervisor (the whole
   agency), and exact-name searches (``POST /api/v1/clients/search``, the name in the
   body) as both. Reads and searches cycle through many clients and names with a wrk
   Lua script, so no single row stays hot;
4. stops the server and drops the database (``--keep-database`` keeps it).

Each worker's database pool is sized to the wrk connections (``--db-pool-size``,
default ``--connections``, plus a quarter as overflow), wrk waits up to 30 s for an
answer, and after every wrk run the harness waits until the database shows no request
of the server still running: with the default pool (10 + 10) the server stalls under
this load, for the reason given in ``POOL_NOTE`` below.

``--inprocess`` replaces steps 3 and 4 by counts in one process, without a server or wrk
(for a machine that cannot be given to a load test; a smaller ``--clients`` is enough):
each scenario's requests go one at a time through the ASGI app, and each is counted —
SQL statements, fields decrypted, wall and CPU time, and how long the agency's audit chain
head row stayed locked — and the first caseload page's query is run under ``EXPLAIN
ANALYZE`` as the advocate and as the supervisor.

The staff tokens are issued in-process (a real session row and an ES256 token, as a
sign-in makes them): supervisors must use MFA, which the benchmark does not automate.
Every name is fictional ("Bench Client Aster 000123"); nothing is printed but counts,
ids of nobody and figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shlex
import shutil
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from tests.bench.servers import (
    HOST,
    START_TIMEOUT_S,
    Server,
    ServerError,
    advocase_env,
    advocase_server,
    bounded,
    free_port,
    migrate,
    require_postgres_or_stop,
    run_guarded,
)
from tests.bench.wrk import (
    WrkResult,
    ensure_wrk,
    redacted,
    run_wrk,
    wrk_command,
    wrk_version,
)

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/advocase_bench_clients"
CHUNK = 1_000
SEED_TIMEOUT_S = 3_600
TARGET_P99_MS = 50.0
TARGET_RATIO = 0.25
SEARCH_SAMPLE = 200
WRK_TIMEOUT_S = 30
POOL_NOTE = """\
Why the benchmark sizes the database pool and waits for the server to drain: the request's
session is opened (a pool checkout) and committed in the async `get_db` dependency, on the
event loop, and every audited read holds the org's audit chain head row lock from its
audit event until that commit. When a worker's pool (ADVOCASE_DB_POOL_SIZE +
ADVOCASE_DB_MAX_OVERFLOW, 10 + 10 by default) is empty, the checkout blocks the worker's
event loop for up to 10 s; a transaction of that worker holding the chain lock then cannot
commit, and every other audited request of the agency, in both workers, waits on the lock
while holding its own connection. Seen with py-spy on this machine: one worker's event
loop in QueuePool checkout, 56 threads of both workers in audit._lock_head, one
connection idle in transaction; no request answered until the server was killed. 32 wrk
connections, unevenly spread over 2 workers plus requests still running from the previous
wrk run, are enough to empty a 20-connection pool."""
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# --- seeding (runs in worker processes started with "spawn": app is imported there) --------


def _use_env(env: dict[str, str]) -> None:
    for name in [k for k in os.environ if k.startswith("ADVOCASE_")]:
        del os.environ[name]
    os.environ.update(env)


def _names(i: int) -> tuple[str, str]:
    """The (preferred, legal) names of client number ``i``: fictional and unique."""
    from app import demo

    first = demo.CLIENT_NAMES[i % len(demo.CLIENT_NAMES)]
    family = demo.FAMILY_NAMES[(i // len(demo.CLIENT_NAMES)) % len(demo.FAMILY_NAMES)]
    return f"Bench Client {first} {i:06d}", f"{first} {family} {i:06d}"


def _seed_agency(advocates: int) -> dict[str, Any]:
    """The agency, its supervisor and advocates, and its org keyset; returns their ids."""
    from app.core import keys
    from app.db import unit_of_work
    from app.identity import service as identity

    with unit_of_work() as db:
        org = identity.create_org(db, name="Bench Agency (fictional)", slug="bench")
        supervisor = identity.create_user(
            db, None, org=org, email="bench.supervisor@bench.advocase.test",
            display_name="Bench Supervisor (fictional)", role="supervisor").user
        advocate_ids = [str(identity.create_user(
            db, None, org=org, email=f"bench.advocate.{n:04d}@bench.advocase.test",
            display_name=f"Bench Advocate {n:04d} (fictional)", role="advocate").user.id)
            for n in range(advocates)]
        keys.blind_index(db, org_id=org.id, kind="client-name", value="warm up")  # org keys
        return {"org_id": str(org.id), "supervisor_id": str(supervisor.id),
                "advocate_ids": advocate_ids}


def _seed_chunk(org_id: str, supervisor_id: str, advocate_ids: list[str], start: int,
                stop: int, year: int) -> int:
    """Clients ``start``..``stop-1`` in one transaction: a data key each, every personal
    field encrypted and both names indexed through app.core.keys, batched inserts."""
    from datetime import timedelta
    from uuid import UUID, uuid4

    from app import demo
    from app.clients import service as clients
    from app.clients.models import Client, ClientAssignment
    from app.core import audit, keys
    from app.db import unit_of_work, utcnow

    org = UUID(org_id)
    rng = random.Random(start)  # noqa: S311 - fictional data, not secrets
    now = utcnow()
    rows: list[dict[str, Any]] = []
    assignments: list[dict[str, Any]] = []
    with unit_of_work() as db:
        for i in range(start, stop):
            client_id = uuid4()
            preferred, legal = _names(i)
            personal = demo.fictional_personal(rng, demo.CLIENT_NAMES[i % len(demo.CLIENT_NAMES)])
            personal |= {"preferred_name": preferred, "legal_name": legal,
                         "household": demo.fictional_household(rng)}
            status = rng.choices(["intake", "active", "closed"], weights=[15, 70, 15])[0]
            created = now - timedelta(minutes=5 * (stop - i) + rng.randrange(5))
            row: dict[str, Any] = {
                "id": client_id, "org_id": org, "case_number": f"{year}-{i + 1:06d}",
                "status": status, "urgent": rng.random() < 0.05,
                "closing_reason": "goals_met" if status == "closed" else None,
                "closed_at": now if status == "closed" else None,
                "created_at": created, "updated_at": created,
                "created_by": UUID(supervisor_id), "purged_at": None,
            }
            for column in clients.PERSONAL_FIELDS:
                value = personal.get(column)
                # As the service stores them: nothing for an empty value.
                if value in (None, "", []) or value == {"children": [], "pets": []}:
                    row[column] = None
                    continue
                place = {"org_id": org, "client_id": client_id, "table": clients.TABLE,
                         "column": column, "row_id": str(client_id)}
                row[column] = (keys.encrypt_json(db, value=value, **place)
                               if column in clients.JSON_FIELDS
                               else keys.encrypt_field(db, plaintext=str(value), **place))
            row["name_index"] = keys.blind_index(db, org_id=org, kind="client-name",
                                                 value=legal)
            row["preferred_name_index"] = keys.blind_index(db, org_id=org,
                                                           kind="client-name", value=preferred)
            rows.append(row)
            assignments.append({"client_id": client_id, "org_id": org, "assigned_at": created,
                                "user_id": UUID(advocate_ids[i % len(advocate_ids)]),
                                "assigned_by": UUID(supervisor_id)})
        db.execute(sa.insert(Client.__table__), rows)
        db.execute(sa.insert(ClientAssignment.__table__), assignments)
        audit.append_many(db, action="client.created", org_id=org, actor_type="user",
                          actor_id=supervisor_id, object_type="client",
                          object_ids=[row["id"] for row in rows])
    return stop - start


def _finish(org_id: str, supervisor_id: str, advocate_id: str, clients_total: int,
            year: int) -> dict[str, Any]:
    """Case-number counter, statistics, tokens, and the samples the scenarios cycle over
    (decrypted by the clients service, which also proves the bulk path's ciphertexts)."""
    from datetime import timedelta
    from uuid import UUID

    from app.clients import service as clients
    from app.clients.models import CaseNumberCounter, Client, ClientAssignment
    from app.core.access import Actor
    from app.db import get_engine, unit_of_work, utcnow
    from app.identity import tokens
    from app.identity.models import AuthSession, StaffUser

    org = UUID(org_id)
    with unit_of_work() as db:
        db.execute(sa.insert(CaseNumberCounter.__table__).values(org_id=org, year=year,
                                                                 last=clients_total))
    with get_engine().connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE"))
    out: dict[str, Any] = {"tokens": {}, "staff": {"advocate": advocate_id,
                                                   "supervisor": supervisor_id,
                                                   "org": org_id}}
    with unit_of_work() as db:
        for label, user_id in (("advocate", advocate_id), ("supervisor", supervisor_id)):
            user = db.get(StaffUser, UUID(user_id))
            assert user is not None
            session = AuthSession(org_id=org, user_id=user.id, kind="api",
                                  expires_at=utcnow() + timedelta(hours=3))
            db.add(session)
            db.flush()
            out["tokens"][label] = tokens.issue_staff_token(
                user_id=user.id, org_id=org, role=user.role, session_id=session.id)[0]
        supervisor = Actor(kind="user", id=UUID(supervisor_id), org_id=org, role="supervisor")
        caseload = set(db.scalars(sa.select(ClientAssignment.client_id).where(
            ClientAssignment.user_id == UUID(advocate_id))))
        everyone = list(db.scalars(sa.select(Client.id).where(Client.org_id == org)
                                   .order_by(Client.id)))
        rng = random.Random(7)  # noqa: S311 - picks a sample, not a secret
        sample = rng.sample(everyone, min(SEARCH_SAMPLE, len(everyone)))

        def opened(ids: list[UUID]) -> list[clients.ClientRecord]:
            rows = db.scalars(clients.readable_clients(supervisor).where(Client.id.in_(ids))
                              .order_by(Client.created_at.desc(), Client.id))
            return [clients.decrypt_record(db, supervisor, row) for row in rows]

        out["caseload"] = [{"id": str(r.client.id), "preferred_name": r.fields["preferred_name"],
                            "legal_name": r.fields["legal_name"]} for r in opened(list(caseload))]
        by_id = {r.client.id: r for r in opened(sample)}
        out["agency_sample"] = [{"id": str(i), "legal_name": by_id[i].fields["legal_name"]}
                                for i in sample]
    return out


@dataclass
class Seeded:
    clients: int
    advocates: int
    caseload: list[dict[str, str]]
    agency_sample: list[dict[str, str]]
    tokens: dict[str, str]
    seconds: float
    processes: int
    staff: dict[str, str]


def seed(env: dict[str, str], clients_total: int, caseload: int, processes: int) -> Seeded:
    """Fill the (migrated, empty) bench database; progress is printed per 10 %."""
    start = time.perf_counter()
    advocates = max(1, clients_total // caseload)
    year = datetime.now(UTC).year
    context = get_context("spawn")
    with ProcessPoolExecutor(max_workers=processes, mp_context=context,
                             initializer=_use_env, initargs=(env,)) as pool:
        agency = pool.submit(_seed_agency, advocates).result(timeout=600)
        print(f"  agency, supervisor and {advocates:,} advocates: "
              f"{time.perf_counter() - start:.1f} s", flush=True)
        futures = [pool.submit(_seed_chunk, agency["org_id"], agency["supervisor_id"],
                               agency["advocate_ids"], lo, min(lo + CHUNK, clients_total),
                               year) for lo in range(0, clients_total, CHUNK)]
        done, step = 0, max(clients_total // 10, 1)
        deadline = time.monotonic() + SEED_TIMEOUT_S
        try:
            for future in as_completed(futures, timeout=SEED_TIMEOUT_S):
                before = done
                done += future.result(timeout=max(1.0, deadline - time.monotonic()))
                if done // step != before // step or done == clients_total:
                    elapsed = time.perf_counter() - start
                    print(f"  {done:,} clients seeded, {elapsed:.0f} s "
                          f"({done / elapsed:,.0f} clients/s)", flush=True)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # no chunk left queued
            raise
        finished = pool.submit(_finish, agency["org_id"], agency["supervisor_id"],
                               agency["advocate_ids"][0], clients_total,
                               year).result(timeout=600)
    return Seeded(clients_total, advocates, finished["caseload"], finished["agency_sample"],
                  finished["tokens"], time.perf_counter() - start, processes,
                  finished["staff"])


# --- scenarios -----------------------------------------------------------------------------


def _lua_string(text: str) -> str:
    assert text.isascii(), "names in the Lua script are ASCII"
    return json.dumps(text)  # an ASCII JSON string is also a valid Lua string literal


def cycling_script(folder: Path, name: str, method: str, paths: list[str],
                   bodies: list[str] | None = None) -> str:
    """A wrk Lua script sending ``method`` to each path (with each body) in turn; the two
    wrk threads start at different places in the list."""
    items = bodies if bodies is not None else paths
    lines = [
        f"local items = {{{', '.join(_lua_string(item) for item in items)}}}",
        f"local path = {_lua_string(paths[0])}",
        "local i = 0",
        "local counter = 0",
        "function setup(thread)",
        "  counter = counter + 1",
        "  thread:set('offset', counter * 7919)",
        "end",
        "function init(args)",
        "  i = tonumber(wrk.thread:get('offset')) or 0",
        "end",
        "request = function()",
        "  i = i + 1",
        "  local item = items[(i % #items) + 1]",
    ]
    if bodies is None:
        lines.append(f"  return wrk.format({_lua_string(method)}, item)")
    else:
        lines.append(f"  return wrk.format({_lua_string(method)}, path, nil, item)")
    lines.append("end")
    script = folder / f"{name}.lua"
    script.write_text("\n".join(lines) + "\n")
    return str(script)


Check = Callable[[int, Any], str | None]


@dataclass
class Load:
    """One measured load: what wrk sends, as whom, and how one answer is checked."""

    name: str
    description: str
    method: str = "GET"
    path: str = "/healthz"
    who: str | None = None  # "advocate" | "supervisor" | None
    script: str | None = None
    probe_body: dict[str, Any] | None = None
    check: Check | None = None
    target: str = ""  # "read" (p99 and ratio) | "search" (p99) | ""


def _expect(condition: bool, problem: str) -> str | None:
    return None if condition else problem


def loads(seeded: Seeded, folder: Path) -> list[Load]:
    caseload = seeded.caseload
    first = caseload[0]
    read_paths = [f"/api/v1/clients/{c['id']}" for c in caseload]
    own_names = [json.dumps({"name": c["legal_name"]}) for c in caseload]
    agency_names = [json.dumps({"name": c["legal_name"]}) for c in seeded.agency_sample]
    search = "/api/v1/clients/search"
    return [
        Load("healthz (first)", "liveness, touches nothing: the reference rate"),
        Load("client read (advocate)",
             f"GET /api/v1/clients/{{id}} cycling over the {len(caseload)} clients of the "
             "advocate's caseload: reach check, 10 fields decrypted, one audit event",
             path=read_paths[0], who="advocate",
             script=cycling_script(folder, "read", "GET", read_paths),
             check=lambda status, body: _expect(
                 status == 200 and body["preferred_name"] == first["preferred_name"],
                 "the record did not decrypt to the seeded name"),
             target="read"),
        Load("caseload page (advocate)",
             f"GET /api/v1/clients?limit=50, an advocate with {len(caseload)} clients: "
             "50 decrypted, one audit event each",
             path="/api/v1/clients?limit=50", who="advocate",
             check=lambda status, body: _expect(
                 status == 200 and len(body["items"]) == min(50, len(caseload))
                 and (body["next_cursor"] is not None or len(caseload) <= 50),
                 "not a full page of the advocate's clients"),
             target="read"),
        Load("caseload page (supervisor)",
             f"GET /api/v1/clients?limit=50, a supervisor: the whole agency "
             f"({seeded.clients:,} clients)",
             path="/api/v1/clients?limit=50", who="supervisor",
             check=lambda status, body: _expect(
                 status == 200 and len(body["items"]) == 50, "not a full page"),
             target="read"),
        Load("name search (advocate)",
             f"POST {search}, exact legal name of one of the advocate's clients "
             f"(cycling over {len(own_names)})",
             method="POST", path=search, who="advocate",
             script=cycling_script(folder, "search-own", "POST", [search], own_names),
             probe_body={"name": first["legal_name"]},
             check=lambda status, body: _expect(
                 status == 200 and [c["id"] for c in body["items"]] == [first["id"]],
                 "the exact name did not find exactly its client"),
             target="search"),
        Load("name search (supervisor)",
             f"POST {search}, exact legal name anywhere in the agency (cycling over "
             f"{len(agency_names)})",
             method="POST", path=search, who="supervisor",
             script=cycling_script(folder, "search-agency", "POST", [search], agency_names),
             probe_body={"name": seeded.agency_sample[0]["legal_name"]},
             check=lambda status, body: _expect(
                 status == 200 and [c["id"] for c in body["items"]]
                 == [seeded.agency_sample[0]["id"]],
                 "the exact name did not find exactly its client"),
             target="search"),
        Load("healthz (last)", "liveness again: the machine's drift during the run"),
    ]


# --- measuring -----------------------------------------------------------------------------


def probe(url: str, method: str, headers: dict[str, str],
          body: dict[str, Any] | None) -> tuple[int, Any]:
    assert url.startswith(f"http://{HOST}:"), url
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with _DIRECT.open(request, timeout=30) as response:  # noqa: S310 - loopback only
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, None


@dataclass
class Row:
    load: Load
    result: WrkResult
    ratio: float = 0.0
    verdict: str = ""

    def as_dict(self) -> dict[str, Any]:
        r = self.result
        return {"scenario": self.load.name, "description": self.load.description,
                "method": self.load.method, "path": self.load.path, "as": self.load.who,
                "requests_per_second": r.requests_per_second, "p50_ms": r.p50_ms,
                "p99_ms": r.p99_ms, "non_2xx": r.non_2xx,
                "socket_errors": r.socket_errors, "ratio_to_healthz": round(self.ratio, 3),
                "target": self.verdict}


def wait_drained(url: str, timeout_s: float = 120) -> float:
    """Wait until no connection of the server is inside a statement or a transaction (the
    requests wrk left behind have finished); returns the seconds waited."""
    start = time.monotonic()
    engine = sa.create_engine(sa.make_url(url), poolclass=sa.pool.NullPool)
    name = sa.make_url(url).database
    try:
        while True:
            with engine.connect() as conn:
                busy = conn.scalar(sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = :name "
                    "AND pid <> pg_backend_pid() AND state <> 'idle'"), {"name": name})
            if not busy:
                return time.monotonic() - start
            if time.monotonic() - start > timeout_s:
                raise ServerError(f"{busy} requests still running {timeout_s:.0f} s after wrk "
                                  f"stopped: the server is stalled.\n{POOL_NOTE}")
            time.sleep(0.2)
    finally:
        engine.dispose()


def measure(load: Load, server: Server, seeded: Seeded, args: argparse.Namespace,
            wrk: str) -> Row:
    headers = {}
    if load.who:
        headers["Authorization"] = f"Bearer {seeded.tokens[load.who]}"
    if load.method == "POST":
        headers["Content-Type"] = "application/json"
    url = server.base_url + load.path
    if load.check is not None:
        status, body = probe(url, load.method, headers, load.probe_body)
        problem = load.check(status, body)
        if problem:
            raise ServerError(f"{load.name}: {problem} (HTTP {status}); not measuring")
    # A generous wrk timeout: a request wrk gives up on is cancelled mid-flight on the
    # server, which can stall it (POOL_NOTE); that is a different test from a slow answer.
    common = {"threads": args.threads, "connections": args.connections, "headers": headers,
              "script": load.script, "timeout_s": WRK_TIMEOUT_S}
    if args.warmup:
        run_wrk(wrk_command(wrk, url, seconds=args.warmup, **common),
                args.warmup + WRK_TIMEOUT_S)
        wait_drained(args.database_url)
    argv = wrk_command(wrk, url, seconds=args.duration, **common)
    print(f"  {load.name}: {shlex.join(redacted([Path(argv[0]).name, *argv[1:]]))}",
          flush=True)
    result = run_wrk(argv, args.duration + WRK_TIMEOUT_S)
    if result.requests == 0:
        raise ServerError(f"{load.name}: no request answered in {args.duration} s; the server "
                          f"is stalled.\n{POOL_NOTE}")
    print(f"    {result.requests_per_second:,.0f} req/s, p50 {result.p50_ms:.2f} ms, "
          f"p99 {result.p99_ms:.2f} ms, non-2xx {result.non_2xx}, "
          f"socket errors {result.errors}", flush=True)
    return Row(load, result)


def judge(rows: list[Row]) -> float:
    """Ratios to the mean /healthz rate of the run, and each target met or missed."""
    reference = statistics.fmean(r.result.requests_per_second for r in rows
                                 if r.load.name.startswith("healthz"))
    for row in rows:
        row.ratio = row.result.requests_per_second / reference if reference else 0.0
        misses = []
        if row.load.target in ("read", "search") and row.result.p99_ms >= TARGET_P99_MS:
            misses.append(f"p99 ≥ {TARGET_P99_MS:.0f} ms")
        if row.load.target == "read" and row.ratio < TARGET_RATIO:
            misses.append(f"rate < {TARGET_RATIO:.0%} of healthz")
        if row.result.non_2xx or row.result.errors:
            misses.append("errors")
        if row.load.target:
            row.verdict = "met" if not misses else "missed: " + ", ".join(misses)
    return reference


def table(rows: list[Row]) -> str:
    lines = ["| scenario | requests/s | p50 ms | p99 ms | non-2xx | ratio to healthz | target |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for row in rows:
        r = row.result
        lines.append(f"| {row.load.name} | {r.requests_per_second:,.0f} | {r.p50_ms:.2f} | "
                     f"{r.p99_ms:.2f} | {r.non_2xx} | {row.ratio:.2f} | {row.verdict} |")
    return "\n".join(lines)


# --- in-process counts (--inprocess) -----------------------------------------------------

INPROCESS_ROUNDS = 20
_CHAIN_LOCK = re.compile(r"advocase_audit_append|audit_chain_head\b.*\b(FOR UPDATE|DO UPDATE)\b",
                         re.DOTALL)


def _inprocess_scenarios(seeded: Seeded) -> list[dict[str, Any]]:
    """What the wrk scenarios send, as (name, who, method, paths, bodies) to cycle over."""
    own = seeded.caseload
    search = "/api/v1/clients/search"
    return [
        {"name": "client read (advocate)", "who": "advocate", "method": "GET",
         "paths": [f"/api/v1/clients/{c['id']}" for c in own], "bodies": None},
        {"name": "caseload page of 50 (advocate)", "who": "advocate", "method": "GET",
         "paths": ["/api/v1/clients?limit=50"], "bodies": None},
        {"name": "caseload page of 50 (supervisor)", "who": "supervisor", "method": "GET",
         "paths": ["/api/v1/clients?limit=50"], "bodies": None},
        {"name": "name search, one hit (advocate)", "who": "advocate", "method": "POST",
         "paths": [search], "bodies": [{"name": c["legal_name"]} for c in own]},
        {"name": "name search, one hit (supervisor)", "who": "supervisor", "method": "POST",
         "paths": [search], "bodies": [{"name": c["legal_name"]}
                                       for c in seeded.agency_sample]},
    ]


def _count_requests(scenarios: list[dict[str, Any]], tokens: dict[str, str],
                    rounds: int) -> list[dict[str, Any]]:
    """Runs in a spawned process with the bench environment: every scenario's requests one
    at a time through the ASGI app (no HTTP, no server), each counted: SQL statements,
    fields decrypted, wall and CPU time, and how long the org's audit chain head row stayed
    locked (from the statement that locks it to the commit). Medians of ``rounds``
    requests after one unrecorded warm-up request."""
    from fastapi.testclient import TestClient
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    from app.core import keys
    from app.core.logging import configure_logging
    from app.db import get_engine
    from app.main import create_app
    from app.settings import get_settings

    configure_logging(get_settings(), "api")  # WARNING, as the served benchmark runs
    tally: dict[str, Any] = {"statements": 0, "decrypted": 0, "locked_at": None,
                             "locked_s": 0.0}

    def statement(conn: Any, cursor: Any, text: str, parameters: Any, context: Any,
                  executemany: bool) -> None:
        tally["statements"] += 1
        if tally["locked_at"] is None and _CHAIN_LOCK.search(text):
            tally["locked_at"] = time.perf_counter()

    def released(session: Any, *_: Any) -> None:
        if tally["locked_at"] is not None:
            tally["locked_s"] += time.perf_counter() - tally["locked_at"]
            tally["locked_at"] = None

    opening = keys.decrypt_field

    def counted_decrypt(*args: Any, **kwargs: Any) -> Any:
        tally["decrypted"] += 1
        return opening(*args, **kwargs)

    keys.decrypt_field = counted_decrypt  # decrypt_json opens through it too
    event.listen(get_engine(), "before_cursor_execute", statement)
    event.listen(Session, "after_commit", released)
    event.listen(Session, "after_rollback", released)
    results = []
    with TestClient(create_app(), raise_server_exceptions=True) as web:
        for scenario in scenarios:
            headers = {"Authorization": f"Bearer {tokens[scenario['who']]}"}
            samples: dict[str, list[float]] = {"statements": [], "decrypted": [],
                                               "wall_ms": [], "cpu_ms": [], "locked_ms": []}
            for i in range(rounds + 1):
                path = scenario["paths"][i % len(scenario["paths"])]
                bodies = scenario["bodies"]
                body = bodies[i % len(bodies)] if bodies else None
                tally.update(statements=0, decrypted=0, locked_at=None, locked_s=0.0)
                wall, cpu = time.perf_counter(), time.process_time()
                response = web.request(scenario["method"], path, headers=headers, json=body)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                if response.status_code != 200 or (
                        "items" in response.json() and not response.json()["items"]):
                    raise ServerError(f"{scenario['name']}: HTTP {response.status_code}, "
                                      "or nothing found; not counting")
                if i == 0:
                    continue  # the warm-up: the process's key caches fill here
                samples["statements"].append(tally["statements"])
                samples["decrypted"].append(tally["decrypted"])
                samples["wall_ms"].append(wall * 1000)
                samples["cpu_ms"].append(cpu * 1000)
                samples["locked_ms"].append(tally["locked_s"] * 1000)
            results.append({"scenario": scenario["name"]} | {
                name: statistics.median(values) for name, values in samples.items()})
    return results


def _explain_first_pages(staff: dict[str, str], repeats: int = 5) -> list[dict[str, Any]]:
    """EXPLAIN ANALYZE of the first caseload page's query as the API builds it, for the
    advocate and the supervisor: the plan's first lines and the best execution time."""
    from uuid import UUID

    from app.clients import service as clients
    from app.clients.models import Client
    from app.core.access import Actor
    from app.db import get_engine, unit_of_work

    dialect = get_engine().dialect
    out = []
    with unit_of_work(reading=True) as db:
        for who in ("advocate", "supervisor"):
            actor = Actor(kind="user", id=UUID(staff[who]), org_id=UUID(staff["org"]),
                          role=who)
            query = clients.search_clients(actor, db=db).order_by(
                Client.urgent.desc(), Client.created_at.desc(), Client.id).limit(51)
            compiled = query.compile(dialect=dialect)
            best, plan = float("inf"), []
            for _ in range(repeats):
                lines = list(db.connection().exec_driver_sql(
                    "EXPLAIN (ANALYZE, COSTS OFF) " + str(compiled),
                    compiled.params).scalars())
                took = float(re.search(r"Execution Time: ([\d.]+) ms", lines[-1]).group(1))
                if took < best:
                    best, plan = took, lines
            out.append({"who": who, "execution_ms": best,
                        "plan": [line for line in plan if not line.startswith(
                            ("Planning Time", "Execution Time"))][:8]})
    return out


def inprocess_table(results: list[dict[str, Any]]) -> str:
    lines = ["| request | SQL statements | fields decrypted | wall ms | CPU ms (app) | "
             "chain head locked ms |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        lines.append(f"| {r['scenario']} | {r['statements']:.0f} | {r['decrypted']:.0f} | "
                     f"{r['wall_ms']:.1f} | {r['cpu_ms']:.1f} | {r['locked_ms']:.1f} |")
    return "\n".join(lines)


def run_inprocess(args: argparse.Namespace, argv: list[str]) -> int:
    """Seed as the wrk run does, then count per request in-process instead of serving."""
    from tests.support import services

    url = args.database_url
    require_postgres_or_stop(url)
    command = shlex.join([".venv/bin/python", "-m", "tests.bench.clients", *argv])
    print(f"machine: {len(os.sched_getaffinity(0))} cores; load average "
          f"{os.getloadavg()[0]:.1f}")
    print(f"command: {command}")
    print(f"settings: {args.clients:,} clients, {args.caseload} per advocate; in-process, "
          f"{INPROCESS_ROUNDS} requests per scenario after one warm-up", flush=True)
    var_dir = Path(tempfile.mkdtemp(prefix="advocase-bench-clients-"))
    try:
        env = advocase_env(var_dir) | {"ADVOCASE_DATABASE_URL": url}
        services.recreate_postgres_database(url)
        print(f"migrate: {migrate(env, var_dir)}", flush=True)
        print(f"seeding {args.clients:,} clients in {args.seed_processes} processes, "
              f"{CHUNK:,} per transaction …", flush=True)
        seeded = seed(env, args.clients, args.caseload, args.seed_processes)
        print(f"  seeded in {seeded.seconds:.0f} s", flush=True)
        with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"),
                                 initializer=_use_env, initargs=(env,)) as pool:
            results = pool.submit(_count_requests, _inprocess_scenarios(seeded),
                                  seeded.tokens, INPROCESS_ROUNDS).result(timeout=1800)
            plans = pool.submit(_explain_first_pages, seeded.staff).result(timeout=600)
    finally:
        if not args.keep_database:
            services.drop_postgres_database(url)
        shutil.rmtree(var_dir, ignore_errors=True)
    print()
    print(inprocess_table(results))
    for plan in plans:
        print()
        print(f"first caseload page ({plan['who']}), EXPLAIN ANALYZE best of 5: "
              f"{plan['execution_ms']:.2f} ms")
        for line in plan["plan"]:
            print(f"    {line}")
    if args.json:
        document = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
                    "command": command, "clients": args.clients, "caseload": args.caseload,
                    "results": results, "explain": plans}
        text = json.dumps(document, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
            print(f"JSON written to {args.json}")
    return 0


# --- command line --------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.clients",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=bounded(100, 1_000_000), default=100_000)
    parser.add_argument("--caseload", type=bounded(10, 1_000), default=125,
                        help="clients per advocate (default 125)")
    parser.add_argument("--database-url", default=DEFAULT_URL,
                        help="a PostgreSQL database to drop, create and fill; its name must "
                        "contain 'bench' (default: %(default)s)")
    parser.add_argument("--seed-processes", type=bounded(1, 8), default=2)
    parser.add_argument("--duration", type=bounded(1, 600), default=10,
                        help="measured seconds per scenario (default 10)")
    parser.add_argument("--warmup", type=bounded(0, 600), default=2)
    parser.add_argument("--connections", type=bounded(1, 1024), default=32)
    parser.add_argument("--threads", type=bounded(1, 16), default=2)
    parser.add_argument("--workers", type=bounded(1, 16), default=2)
    parser.add_argument("--db-pool-size", type=bounded(1, 100), default=None,
                        help="ADVOCASE_DB_POOL_SIZE of each worker (default: --connections; "
                        "overflow: a quarter of --connections; see POOL_NOTE)")
    parser.add_argument("--keep-database", action="store_true",
                        help="leave the filled database for inspection")
    parser.add_argument("--json", nargs="?", const="-", metavar="FILE",
                        help="also print the results as JSON (to FILE if given)")
    parser.add_argument("--inprocess", action="store_true",
                        help="no server and no wrk: seed, then count each scenario's SQL "
                        "statements, decryptions, time and audit chain lock per request "
                        "in-process, and EXPLAIN ANALYZE the first caseload pages")
    args = parser.parse_args(argv)
    url = sa.make_url(args.database_url)
    if url.get_backend_name() != "postgresql":
        parser.error("--database-url must be a PostgreSQL URL")
    if not (url.database and re.fullmatch(r"[a-z0-9_]*bench[a-z0-9_]*", url.database)):
        parser.error("the database name must be lower-case letters, digits and _ and contain "
                     "'bench' (it is dropped and created)")
    if url.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the benchmark database must be on this machine (127.0.0.1)")
    if args.connections < args.threads:
        parser.error("--connections must be at least --threads (wrk's rule)")
    if args.db_pool_size is None:
        args.db_pool_size = args.connections
    return args


def run(args: argparse.Namespace, argv: list[str], wrk: str) -> int:
    from tests.support import services

    url = args.database_url
    require_postgres_or_stop(url)
    command = shlex.join([".venv/bin/python", "-m", "tests.bench.clients", *argv])
    print(f"machine: {len(os.sched_getaffinity(0))} cores, {wrk_version(wrk)}")
    print(f"command: {command}")
    print(f"settings: {args.clients:,} clients, {args.caseload} per advocate; "
          f"{args.workers} uvicorn workers; wrk -t{args.threads} -c{args.connections}, "
          f"{args.warmup} s warm-up + {args.duration} s per scenario", flush=True)
    var_dir = Path(tempfile.mkdtemp(prefix="advocase-bench-clients-"))
    server: Server | None = None
    rows: list[Row] = []
    try:
        env = advocase_env(var_dir) | {
            "ADVOCASE_DATABASE_URL": url, "ADVOCASE_ACCESS_TOKEN_MINUTES": "60",
            # See POOL_NOTE: a connection for every request one worker may have in flight.
            "ADVOCASE_DB_POOL_SIZE": str(args.db_pool_size),
            "ADVOCASE_DB_MAX_OVERFLOW": str(args.connections // 4)}
        services.recreate_postgres_database(url)
        print(f"migrate: {migrate(env, var_dir)}", flush=True)
        print(f"seeding {args.clients:,} clients in {args.seed_processes} processes, "
              f"{CHUNK:,} per transaction …", flush=True)
        seeded = seed(env, args.clients, args.caseload, args.seed_processes)
        print(f"  seeded in {seeded.seconds:.0f} s ({args.clients / seeded.seconds:,.0f} "
              "clients/s, VACUUM ANALYZE included)", flush=True)
        server = advocase_server(free_port(), args.workers, env, var_dir, var_dir)
        server.start()
        deadline = server.started_at + START_TIMEOUT_S
        server.wait_for("/healthz", "healthz", deadline)
        server.wait_for("/readyz", "ready", deadline)
        plan = loads(seeded, var_dir)
        print(f"running {len(plan)} measurements:", flush=True)
        for load in plan:
            rows.append(measure(load, server, seeded, args, wrk))
            wait_drained(url)
            time.sleep(1)
        exit_code = server.stop()
        server_log = server.output()
        server = None
    finally:
        if server is not None:
            server.stop()
        if not args.keep_database:
            services.drop_postgres_database(url)
        shutil.rmtree(var_dir, ignore_errors=True)

    reference = judge(rows)
    healthz = [r.result.requests_per_second for r in rows if r.load.name.startswith("healthz")]
    spread = (max(healthz) - min(healthz)) / reference * 100 if reference else 0.0
    notable = [line for line in server_log.splitlines()
               if re.search(r"error|exception|traceback|critical", line, re.IGNORECASE)]
    print()
    print(table(rows))
    print()
    print(f"reference: /healthz mean {reference:,.0f} req/s (first {healthz[0]:,.0f}, last "
          f"{healthz[-1]:,.0f}; spread {spread:.1f} %)")
    print(f"seeding: {seeded.clients:,} clients, {seeded.advocates:,} advocates, "
          f"{seeded.seconds:.0f} s in {seeded.processes} processes")
    print(f"server: exit code {exit_code}, {len(notable)} error lines in its output")
    for line in notable[:10]:
        print(f"    {line}")
    if args.json:
        document = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"), "command": command,
            "machine": {"nproc": len(os.sched_getaffinity(0)), "wrk": wrk_version(wrk)},
            "settings": {k: getattr(args, k) for k in ("clients", "caseload", "duration",
                                                       "warmup", "connections", "threads",
                                                       "workers", "seed_processes")},
            "seeding_seconds": round(seeded.seconds, 1),
            "healthz_mean_rps": round(reference, 1), "healthz_spread_percent": round(spread, 1),
            "results": [row.as_dict() for row in rows],
        }
        text = json.dumps(document, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
            print(f"JSON written to {args.json}")
    # Targets missed are reported, not an error; failed requests are.
    return 1 if any(r.result.non_2xx or r.result.errors for r in rows) else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.inprocess:
        return run_guarded(lambda: run_inprocess(args, argv), "database dropped")
    return run_guarded(lambda: run(args, argv, ensure_wrk()), "server stopped, database dropped")


if __name__ == "__main__":
    sys.exit(main())
