"""A real Celery worker process, on the embedded broker and on Redis.

Nothing here runs tasks eagerly: messages cross the broker, a separate worker
process executes them, and results come back through the result backend.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from celery import Celery
from sqlalchemy.engine import Engine

from app.core import deferred
from app.db import create_db_engine, unit_of_work
from app.system.models import WorkerHeartbeat
from tests.support import services
from workers.celery_app import HEARTBEAT_TASK, PING_TASK, create_celery
from workers.embedded_broker import prepare_embedded_broker
from workers.tasks import purge_delivered_messages

PROJECT = Path(__file__).resolve().parents[2]


class RunningWorker:
    def __init__(self, app: Celery, process: subprocess.Popen[bytes], hostname: str,
                 broker_url: str) -> None:
        self.app = app
        self.process = process
        self.hostname = hostname
        self.broker_url = broker_url

    def ping(self, timeout: float = 30) -> dict:
        return self.app.send_task(PING_TASK).get(timeout=timeout, interval=0.05)


@pytest.fixture(scope="module", params=["embedded", "redis"])
def worker(request, engine: Engine, settings, tmp_path_factory) -> Iterator[RunningWorker]:
    folder = tmp_path_factory.mktemp(f"worker-{request.param}")
    queue = f"{settings.task_queue}-{request.param}"
    if request.param == "embedded":
        broker = f"sqla+sqlite:///{folder / 'broker.sqlite'}"
        backend = f"db+sqlite:///{folder / 'results.sqlite'}"
    else:
        services.require_redis()
        broker = backend = services.REDIS_URL
    overrides = {"broker_url": broker, "result_backend": backend, "task_queue": queue}
    worker_settings = settings.model_copy(update=overrides)
    app = create_celery(worker_settings)
    # Made here, so this process and the worker never race to create it.
    prepare_embedded_broker(worker_settings)
    hostname = f"test-{request.param}-{uuid.uuid4().hex[:8]}@localhost"
    env = os.environ | {
        "ADVOCASE_BROKER_URL": broker,
        "ADVOCASE_RESULT_BACKEND": backend,
        "ADVOCASE_TASK_QUEUE": queue,
        "ADVOCASE_DATABASE_URL": str(settings.database_url),
        "ADVOCASE_LOG_LEVEL": "WARNING",
    }
    # Its log goes to a file in the test's folder, read after a failure: a pipe that
    # nobody reads would stop the worker once its warnings filled the pipe's buffer.
    with (folder / "worker.log").open("wb") as log_file:
        process = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "app.cli", "worker", "--concurrency", "1",
             "--hostname", hostname],
            cwd=PROJECT, env=env, stdout=subprocess.DEVNULL, stderr=log_file,
        )
    running = RunningWorker(app, process, hostname, broker)
    try:
        running.ping(timeout=60)
        # The worker announces itself with a heartbeat once ready; wait for it so later
        # counts of heartbeats are the tests' own.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with unit_of_work(engine) as db:
                if db.get(WorkerHeartbeat, hostname) is not None:
                    break
            time.sleep(0.1)
        else:
            raise AssertionError("the worker never recorded its first heartbeat")
        yield running
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        with unit_of_work(engine) as db:
            db.execute(sa.delete(WorkerHeartbeat).where(WorkerHeartbeat.worker == hostname))


def test_task_result_comes_back_from_the_worker_process(worker: RunningWorker) -> None:
    result = worker.ping()
    assert result["pong"] is True
    assert result["worker"] == worker.hostname
    assert worker.process.poll() is None


def test_a_task_starts_within_a_second(worker: RunningWorker) -> None:
    delays = []
    for _ in range(5):
        sent = time.time()
        started = datetime.fromisoformat(worker.ping()["at"]).timestamp()
        delays.append(started - sent)
    assert max(delays) < 1.0, delays


def test_task_sent_after_commit_runs_in_the_worker(worker: RunningWorker, engine: Engine) -> None:
    def beats() -> int:
        with unit_of_work(engine) as db:
            row = db.get(WorkerHeartbeat, worker.hostname)
            return row.beats if row else 0

    deferred.set_sender(lambda name, args, options: worker.app.send_task(name, args=args,
                                                                         **options))
    try:
        before = beats()
        with pytest.raises(RuntimeError), unit_of_work(engine) as db:
            deferred.enqueue_after_commit(db, HEARTBEAT_TASK)
            raise RuntimeError("rolled back")
        with unit_of_work(engine) as db:
            deferred.enqueue_after_commit(db, HEARTBEAT_TASK)
        deadline = time.monotonic() + 15
        while beats() < before + 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        worker.ping()  # the queue is FIFO: once this returns, nothing else is pending
        assert beats() == before + 1
    finally:
        deferred.set_sender(None)


def test_embedded_broker_deletes_delivered_messages(worker: RunningWorker) -> None:
    if not worker.broker_url.startswith("sqla+"):
        assert purge_delivered_messages(worker.broker_url) == 0
        return
    for _ in range(3):
        worker.ping()
    # A message nobody consumes yet must survive the clean-up.
    worker.app.send_task(PING_TASK, queue="nobody-listens")
    engine = create_db_engine(worker.broker_url[len("sqla+"):])
    try:
        def count(visible: bool) -> int:
            with engine.connect() as conn:
                return conn.execute(
                    sa.text("SELECT count(*) FROM kombu_message WHERE visible = :v"),
                    {"v": visible},
                ).scalar_one()

        assert count(False) >= 3
        pending = count(True)
        assert pending >= 1
        assert purge_delivered_messages(worker.broker_url) >= 3
        assert count(False) == 0
        assert count(True) == pending
    finally:
        engine.dispose()
