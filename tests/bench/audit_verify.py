"""Benchmark: `advocase audit verify` over a large audit log.

Writes N chained audit events (spread over several org chains, as a coalition
host would have) straight into a fresh, migrated database with the same digest
function the application uses, then times the real command in a subprocess.

    .venv/bin/python -m tests.bench.audit_verify --events 1000000 [--database-url URL]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import sqlalchemy as sa

PROJECT = Path(__file__).resolve().parents[2]
BATCH = 20_000


def populate(url: str, events: int, chains: int, env: dict[str, str]) -> float:
    os.environ.update(env)
    from alembic import command

    from app.cli import alembic_config
    from app.core.audit import GENESIS, AuditChainHead, AuditEvent, compute_digest
    from app.db import create_db_engine

    command.upgrade(alembic_config(url), "head")
    engine = create_db_engine(url)
    table = AuditEvent.__table__
    start = time.perf_counter()
    chain_ids = [uuid4() for _ in range(chains)]
    per_chain = events // chains
    at0 = datetime(2026, 1, 1, tzinfo=UTC)
    with engine.begin() as conn:
        for chain_id in chain_ids:
            prev = GENESIS
            batch: list[dict] = []
            for seq in range(1, per_chain + 1):
                fields = {
                    "chain_id": chain_id, "seq": seq, "at": at0 + timedelta(seconds=seq),
                    "org_id": chain_id, "actor_type": "user", "actor_id": str(UUID(int=seq)),
                    "action": "client.read", "object_type": "client",
                    "object_id": str(UUID(int=seq * 7)), "outcome": "success",
                    "request_id": f"{seq:032x}", "details": None,
                }
                digest = compute_digest(prev, fields)
                batch.append({**fields, "id": uuid4(), "prev_digest": prev, "digest": digest})
                prev = digest
                if len(batch) >= BATCH:
                    conn.execute(table.insert(), batch)
                    batch = []
            if batch:
                conn.execute(table.insert(), batch)
            conn.execute(AuditChainHead.__table__.insert(),
                         {"chain_id": chain_id, "seq": per_chain, "digest": prev})
    engine.dispose()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--chains", type=int, default=10)
    parser.add_argument("--database-url", default=None,
                        help="an empty database to fill (default: a temporary SQLite file)")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="advocase-bench-audit-"))
    try:
        url = args.database_url or f"sqlite:///{folder / 'audit.sqlite'}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ADVOCASE_")}
        env |= {"ADVOCASE_VAR_DIR": str(folder / "var"), "ADVOCASE_DATABASE_URL": url,
                "ADVOCASE_LOG_LEVEL": "WARNING"}
        print(f"writing {args.events:,} audit events in {args.chains} chains …", flush=True)
        written = populate(url, args.events, args.chains, env)
        print(f"  written in {written:.1f} s", flush=True)
        start = time.perf_counter()
        result = subprocess.run(  # noqa: S603
            [sys.executable, "-m", "app.cli", "audit", "verify", "--json"],
            cwd=folder, env=env, capture_output=True, text=True, timeout=900)
        wall = time.perf_counter() - start
        report = json.loads(result.stdout)
        backend = sa.make_url(url).get_backend_name()
        print(json.dumps({"database": backend, "events": report["events"],
                          "chains": report["chains"], "ok": report["ok"],
                          "verify_seconds": report["seconds"],
                          "command_wall_seconds": round(wall, 2),
                          "events_per_second": round(report["events"] / report["seconds"])},
                         indent=2))
        return 0 if result.returncode == 0 and report["events"] >= args.events else 1
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
