"""Benchmark: delivering due reminders with real Celery workers on Redis.

    .venv/bin/python -m tests.bench.reminders [--reminders 10000] [--workers 2]
        [--database-url URL] [--broker-url redis://127.0.0.1:6379/14] [--json FILE]

Target (issue text): 10,000 due reminders delivered by 2 workers on Redis in under 60 s,
with zero duplicates.

What a run does, bounded in time and on loopback only:

1. makes a throw-away var folder and a PostgreSQL database (``--database-url``, whose
   name must contain "bench": it is dropped and created again, and dropped at the end),
   migrated with ``advocase migrate``; empties the Redis database named by
   ``--broker-url`` (it must not be database 0, where the service's defaults live);
2. seeds one fictional agency with 50 advocates and ``--reminders`` reminders written by
   hand (no client, a fictional note), all due a second ago, round robin over the
   advocates: each means one in-app notification and one email;
3. starts a local SMTP server (aiosmtpd) that counts every message by its Message-ID,
   ``--workers`` workers (``advocase worker`` each, with its own default pool: one process
   per core, as ``make run``, the compose file and the Kubernetes manifests run it) and one
   ``advocase beat``, all on the Redis broker, and waits until the workers answer;
4. the clock starts when beat starts; it stops when every reminder is delivered and
   every email row is ``sent`` (polled every 0.25 s, at most ``--timeout`` seconds);
5. prints the time, the rate, the messages the SMTP server received, duplicates (a
   Message-ID seen twice) and reminders lost (no message), then stops every process and
   removes what it made.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import redis
import sqlalchemy as sa
from aiosmtpd.controller import Controller

from tests.bench.servers import ServerError, advocase_env, migrate
from tests.reminders.conftest import SmtpServer, free_port

TARGET_S = 60.0
ADVOCATES = 50
CHUNK = 2_000
DEFAULT_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:5432/advocase_bench_reminders"
DEFAULT_BROKER = "redis://127.0.0.1:6379/14"


def _use_env(env: dict[str, str]) -> None:
    for name in [k for k in os.environ if k.startswith("ADVOCASE_")]:
        del os.environ[name]
    os.environ.update({k: v for k, v in env.items() if k.startswith("ADVOCASE_")})
    from app.settings import reset_settings_cache

    reset_settings_cache()


def seed(env: dict[str, str], total: int) -> tuple[str, float]:
    """One agency, its advocates and ``total`` reminders due now; returns the org id."""
    _use_env(env)
    from app.db import get_engine, unit_of_work, utcnow
    from app.identity.models import Org, StaffUser
    from app.reminders.models import Reminder

    started = time.monotonic()
    engine = get_engine()
    with unit_of_work(engine) as db:
        org = Org(name="Fictional Bench Agency", slug=f"bench-{uuid.uuid4().hex[:8]}")
        db.add(org)
        db.flush()
        advocates = [StaffUser(org_id=org.id, email=f"advocate{i}@bench.example.test",
                               display_name=f"Fictional Advocate {i}", role="advocate")
                     for i in range(ADVOCATES)]
        db.add_all(advocates)
        db.flush()
        org_id, advocate_ids = org.id, [a.id for a in advocates]
    due = utcnow() - timedelta(seconds=1)
    for start in range(0, total, CHUNK):
        with unit_of_work(engine) as db:
            db.add_all([Reminder(org_id=org_id, assignee_id=advocate_ids[i % ADVOCATES],
                                 kind="manual", due_at=due, note="Fictional bench reminder")
                        for i in range(start, min(total, start + CHUNK))])
    engine.dispose()
    return str(org_id), time.monotonic() - started


def progress(env: dict[str, str], org_id: str) -> tuple[int, int]:
    """(reminders not yet delivered, email rows not yet sent)."""
    from app.db import get_engine
    from app.reminders.models import Reminder, ReminderDelivery

    with get_engine().connect() as conn:
        open_count = conn.scalar(sa.select(sa.func.count()).select_from(Reminder).where(
            Reminder.org_id == uuid.UUID(org_id), Reminder.state != "delivered"))
        unsent = conn.scalar(sa.select(sa.func.count()).select_from(ReminderDelivery).where(
            ReminderDelivery.org_id == uuid.UUID(org_id), ReminderDelivery.channel == "email",
            ReminderDelivery.state != "sent"))
    return int(open_count or 0), int(unsent or 0)


def email_rows(org_id: str) -> int:
    from app.db import get_engine
    from app.reminders.models import ReminderDelivery

    with get_engine().connect() as conn:
        return int(conn.scalar(sa.select(sa.func.count()).select_from(ReminderDelivery).where(
            ReminderDelivery.org_id == uuid.UUID(org_id),
            ReminderDelivery.channel == "email")) or 0)


@contextmanager
def processes(commands: list[list[str]], env: dict[str, str], folder: Path
              ) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    try:
        for i, argv in enumerate(commands):
            log = (folder / f"process-{i}.log").open("wb")
            started.append(subprocess.Popen(  # noqa: S603
                argv, env=env, cwd=folder, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True))
        yield started
    finally:
        for proc in started:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in started:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def wait_for_workers(env: dict[str, str], names: list[str], timeout: float = 90) -> None:
    """Until every worker answers a ping over the broker."""
    from app.settings import get_settings
    from workers.celery_app import create_celery

    app = create_celery(get_settings())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replies = app.control.ping(destination=names, timeout=1.0) or []
        answered = {name for reply in replies for name in reply}
        if answered >= set(names):
            return
    raise ServerError(f"workers did not answer within {timeout:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reminders", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=None,
                        help="pool size per worker (advocase worker --concurrency; default: "
                             "the worker's own, one process per core)")
    parser.add_argument("--pool", default="prefork", choices=("prefork", "threads", "solo"),
                        help="the workers' pool (advocase worker --pool)")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE)
    parser.add_argument("--broker-url", default=DEFAULT_BROKER)
    parser.add_argument("--timeout", type=int, default=600)
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if not 1 <= args.reminders <= 100_000 or not 1 <= args.workers <= 8:
        parser.error("--reminders 1..100000, --workers 1..8")
    if "bench" not in (sa.make_url(args.database_url).database or ""):
        parser.error("the database name must contain 'bench' (it is dropped)")
    broker = redis.Redis.from_url(args.broker_url)
    if int(broker.connection_pool.connection_kwargs.get("db", 0)) == 0:
        parser.error("--broker-url must name a Redis database other than 0 (it is emptied)")

    from tests.support import services

    folder = Path(tempfile.mkdtemp(prefix="advocase-bench-reminders-"))
    var_dir = folder / "var"
    var_dir.mkdir()
    smtp = SmtpServer(port=free_port())
    env = advocase_env(var_dir) | {
        "ADVOCASE_DATABASE_URL": args.database_url,
        "ADVOCASE_BROKER_URL": args.broker_url, "ADVOCASE_RESULT_BACKEND": args.broker_url,
        "ADVOCASE_SMTP_HOST": "127.0.0.1", "ADVOCASE_SMTP_PORT": str(smtp.port),
        "ADVOCASE_SMTP_STARTTLS": "false", "ADVOCASE_SMTP_FROM": "reminders@bench.example.test",
    }
    controller = Controller(smtp, hostname="127.0.0.1", port=smtp.port)
    report: dict[str, Any] = {}
    try:
        services.recreate_postgres_database(args.database_url)
        broker.flushdb()
        migrate(env, var_dir)
        print(f"seeding {args.reminders:,} due reminders…", flush=True)
        org_id, seed_s = seed(env, args.reminders)
        controller.start()
        names = [f"bench-{i}-{uuid.uuid4().hex[:6]}@localhost" for i in range(args.workers)]
        pool_size = ["--concurrency", str(args.concurrency)] if args.concurrency else []
        workers = [[sys.executable, "-m", "app.cli", "worker", *pool_size, "--pool", args.pool,
                    "--hostname", name] for name in names]
        with processes(workers, env, folder):
            wait_for_workers(env, names)
            with processes([[sys.executable, "-m", "app.cli", "beat"]], env, folder):
                started, harness_cpu = time.monotonic(), time.process_time()
                deadline = started + args.timeout
                while True:
                    remaining, unsent = progress(env, org_id)
                    if remaining == 0 and unsent == 0:
                        break
                    if time.monotonic() > deadline:
                        raise ServerError(f"not done after {args.timeout} s: {remaining} "
                                          f"reminders and {unsent} emails left")
                    time.sleep(0.25)
                elapsed = time.monotonic() - started
                harness_cpu = time.process_time() - harness_cpu
                time.sleep(2)  # anything late (a duplicate) would arrive now
        counted = smtp.message_ids()
        duplicates = sum(n - 1 for n in counted.values() if n > 1)
        rows = email_rows(org_id)
        report = {
            "reminders": args.reminders, "workers": args.workers,
            "concurrency": args.concurrency or os.cpu_count(), "pool": args.pool, "broker": "redis",
            "database": "postgresql", "seed_s": round(seed_s, 1),
            "delivery_s": round(elapsed, 1),
            "reminders_per_s": round(args.reminders / elapsed, 1),
            # This process's CPU meanwhile: the SMTP server's thread and the polling.
            "harness_cpu_s": round(harness_cpu, 1),
            "smtp_messages": len(smtp.messages), "distinct_message_ids": len(counted),
            "duplicates": duplicates, "lost": args.reminders - len(counted),
            "email_rows": rows, "target_s": TARGET_S,
            "met": elapsed < TARGET_S and duplicates == 0 and len(counted) == args.reminders,
            "load_average": os.getloadavg(),
        }
    except (ServerError, subprocess.SubprocessError, OSError, redis.RedisError) as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        for log in sorted(folder.glob("process-*.log")):
            tail = log.read_text(errors="replace").splitlines()[-15:]
            print(f"--- {log.name}\n" + "\n".join(tail), file=sys.stderr)
        return 2
    finally:
        smtp.release.set()
        with contextlib.suppress(AssertionError, RuntimeError):  # never started
            controller.stop()
        services.drop_postgres_database(args.database_url)
        with contextlib.suppress(redis.RedisError):
            broker.flushdb()
        shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
