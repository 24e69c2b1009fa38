"""A worker killed mid-delivery does not lose the event, and the event still succeeds once.

Real worker processes on the embedded broker and on Redis (the project's worker fixture,
tests/workers/test_real_worker.py), a receiver that hangs on the first request, kill -9.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from app.core import deferred
from app.db import unit_of_work
from app.system.models import WorkerHeartbeat
from app.webhooks import service
from app.webhooks.models import DeliveryState
from tests.webhooks.conftest import (
    attempts_of,
    delivery_row,
    emit_committed,
    make_due,
    subscribe,
    verify_standard_webhook,
)
from tests.workers.test_real_worker import PROJECT, RunningWorker, worker  # noqa: F401
from workers import tasks
from workers.celery_app import PING_TASK
from workers.embedded_broker import declare_queue

# The worker processes deliver to the loopback receiver over http.
RELAXED = {"ADVOCASE_WEBHOOK_ALLOW_HTTP": "true", "ADVOCASE_WEBHOOK_ALLOW_PRIVATE_TARGETS": "true"}


@pytest.fixture(scope="module", autouse=True)
def workers_may_reach_the_receiver() -> Iterator[None]:
    # Module scope and autouse: set before the module's worker fixture starts its process.
    before = {name: os.environ.get(name) for name in RELAXED}
    os.environ.update(RELAXED)
    yield
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


class Victim:
    """A second worker on the same broker, on a queue of its own, started in a process
    group of its own so kill -9 takes its pool process too (as a killed container)."""

    def __init__(self, survivor: RunningWorker, settings) -> None:
        self.queue = f"{survivor.app.conf.task_default_queue}-victim"
        self.hostname = f"victim-{uuid.uuid4().hex[:8]}@localhost"
        env = os.environ | RELAXED | {
            "ADVOCASE_BROKER_URL": str(survivor.app.conf.broker_url),
            "ADVOCASE_RESULT_BACKEND": str(survivor.app.conf.result_backend),
            "ADVOCASE_TASK_QUEUE": self.queue,
            "ADVOCASE_DATABASE_URL": str(settings.database_url),
            "ADVOCASE_LOG_LEVEL": "WARNING",
        }
        broker = str(survivor.app.conf.broker_url)
        if broker.startswith("sqla+"):
            # Made here, so this process and the worker never race to create it.
            declare_queue(broker, self.queue)
        self.process = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "app.cli", "worker", "--concurrency", "1",
             "--hostname", self.hostname],
            cwd=PROJECT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        survivor.app.send_task(PING_TASK, queue=self.queue).get(timeout=60, interval=0.05)

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=20)


@pytest.fixture
def victim(worker: RunningWorker, settings, engine: Engine) -> Iterator[Victim]:  # noqa: F811
    made = Victim(worker, settings)
    try:
        yield made
    finally:
        if made.process.poll() is None:
            made.kill()
        with unit_of_work(engine) as db:
            db.execute(sa.delete(WorkerHeartbeat)
                       .where(WorkerHeartbeat.worker == made.hostname))


def wait_for_state(engine: Engine, delivery_id, state: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while delivery_row(engine, delivery_id).state != state:
        if time.monotonic() > deadline:
            raise AssertionError(f"the delivery never became {state}")
        time.sleep(0.05)


def test_a_worker_killed_mid_delivery_does_not_lose_the_event(
        worker: RunningWorker, victim: Victim, engine: Engine,  # noqa: F811
        local_targets, receiver, committed) -> None:
    receiver.script = ["hang"]  # the first request never gets its answer
    made = subscribe(engine, receiver.url)
    committed.append(made.org_id)

    # The event's first attempt goes to the victim (its queue), which hangs on it.
    deferred.set_sender(lambda name, args, options: worker.app.send_task(
        name, args=args, queue=victim.queue, **options))
    try:
        [delivery_id] = emit_committed(engine, made)
    finally:
        deferred.set_sender(None)
    receiver.wait_for(1)
    held = delivery_row(engine, delivery_id)
    assert held.state == DeliveryState.sending and held.claim_token is not None

    victim.kill()

    # Everything else goes to the surviving worker.
    deferred.set_sender(lambda name, args, options: worker.app.send_task(
        name, args=args, **options))
    try:
        # While the dead worker's lease lasts, nobody else sends the delivery...
        assert tasks.enqueue_due_webhook_deliveries() == 0
        # ...and once it has run out, the sweep finds the delivery and a worker sends it.
        make_due(engine, delivery_id)
        assert tasks.enqueue_due_webhook_deliveries() == 1
        wait_for_state(engine, delivery_id, DeliveryState.succeeded)

        # A duplicate message, a later sweep: nothing more is sent.
        worker.app.send_task(service.DELIVER_TASK, args=[str(delivery_id)])
        assert tasks.enqueue_due_webhook_deliveries() == 0
        worker.ping()  # the queue is FIFO: the duplicate has been handled
    finally:
        deferred.set_sender(None)

    assert len(receiver.requests) == 2
    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == str(held.event_id)
    assert verify_standard_webhook(made.secret, second.headers, second.body)
    attempts = attempts_of(engine, delivery_id)
    assert [(a.number, a.error, a.succeeded) for a in attempts] == \
        [(1, "WorkerLost", False), (2, None, True)]
    assert attempts[0].duration_ms is None and attempts[1].status_code == 200
    assert sum(a.succeeded for a in attempts) == 1
