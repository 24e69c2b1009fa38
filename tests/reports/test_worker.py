"""Reports through real worker processes on the embedded broker: progress moves from 0 to 100,
and a worker killed mid-build leaves a report that is taken again and finished — never one
marked done half-written.

The workers use a database of their own (committed data: evidence rows cannot be deleted
afterwards) and the test run's storage folder. To hold a build at a known point, one
exhibit's stored file is replaced by a named pipe: the worker blocks reading it until the
test writes the real ciphertext into it (or kills the worker).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa
from celery import Celery
from sqlalchemy.engine import Engine

from app.core import deferred
from app.core.storage import Storage, get_storage
from app.db import create_db_engine, unit_of_work, utcnow
from app.evidence.models import Evidence
from app.reports import service, verification
from app.reports.models import Report
from app.reports.schemas import CourtSummaryCreate
from tests.reports.conftest import Case, seed_case
from tests.support import services
from workers.celery_app import PING_TASK, REPORT_BUILD_TASK, create_celery
from workers.embedded_broker import declare_queue

PROJECT = Path(__file__).resolve().parents[2]


@dataclass
class Workers:
    engine: Engine
    app: Celery
    env: dict[str, str]
    storage: Storage

    def start(self, queue: str, name: str, *, env: dict[str, str] | None = None,
              log: Any = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
        """A worker process in a process group of its own (kill -9 takes its pool too)."""
        # The queue is made here, so this process and the worker never race to create it.
        declare_queue(self.env["ADVOCASE_BROKER_URL"], queue)
        process = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "app.cli", "worker", "--concurrency", "1",
             "--hostname", f"{name}-{uuid.uuid4().hex[:8]}@localhost"],
            cwd=PROJECT, env=self.env | {"ADVOCASE_TASK_QUEUE": queue} | (env or {}),
            stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        self.app.send_task(PING_TASK, queue=queue).get(timeout=90, interval=0.05)
        return process

    @contextmanager
    def unit(self) -> Iterator[Any]:
        with unit_of_work(self.engine) as db:
            yield db


def _stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        os.killpg(process.pid, sig)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def workers(settings, tmp_path_factory) -> Iterator[Workers]:
    folder = tmp_path_factory.mktemp("report-workers")
    kind = "postgresql" if services.TEST_DATABASE_URL else "sqlite"
    with services.own_database(kind, folder, "reports_worker") as url:
        broker = f"sqla+sqlite:///{folder / 'broker.sqlite'}"
        backend = f"db+sqlite:///{folder / 'results.sqlite'}"
        queue = f"{settings.task_queue}-reports"
        app = create_celery(settings.model_copy(update={
            "broker_url": broker, "result_backend": backend, "task_queue": queue}))
        env = os.environ | {"ADVOCASE_BROKER_URL": broker, "ADVOCASE_RESULT_BACKEND": backend,
                            "ADVOCASE_DATABASE_URL": url, "ADVOCASE_LOG_LEVEL": "WARNING"}
        engine = create_db_engine(url)
        made = Workers(engine, app, env, get_storage(settings))
        survivor = made.start(queue, "reports")
        try:
            yield made
        finally:
            _stop(survivor)
            engine.dispose()


def seeded(workers: Workers) -> tuple[Case, UUID]:
    """A committed case and a committed request for its court summary (not yet sent)."""
    with workers.unit() as db:
        case = seed_case(db, workers.storage)
    sent: list[tuple[str, list[Any]]] = []
    deferred.set_sender(lambda name, args, options: sent.append((name, args)))
    try:
        with workers.unit() as db:
            report = service.request_court_summary(
                db, case.actor(), CourtSummaryCreate.model_validate(case.body()))
    finally:
        deferred.set_sender(None)
    assert sent == [(REPORT_BUILD_TASK, [str(report.id)])]
    return case, report.id


class HeldExhibit:
    """An exhibit's stored file swapped for a named pipe: a build blocks reading it."""

    def __init__(self, workers: Workers, evidence_id: UUID) -> None:
        with workers.unit() as db:
            evidence = db.get(Evidence, evidence_id)
            assert evidence is not None
            key = evidence.storage_key
        self.path = Path(workers.storage.root) / key  # type: ignore[attr-defined]
        self.content = self.path.read_bytes()
        self.path.unlink()
        os.mkfifo(self.path, 0o600)

    def release(self) -> None:
        """Feed the real file through the pipe to the blocked reader."""
        def feed() -> None:
            with self.path.open("wb") as pipe:
                pipe.write(self.content)

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        feeder.join(timeout=30)
        assert not feeder.is_alive(), "nobody read the held exhibit"

    def restore(self) -> None:
        """Put the stored file back as it was."""
        if self.path.is_fifo():
            self.path.unlink()
            self.path.write_bytes(self.content)
            os.chmod(self.path, 0o600)


def status_of(workers: Workers, report_id: UUID) -> Report:
    with workers.unit() as db:
        report = db.get(Report, report_id)
        assert report is not None
        db.expunge(report)
        return report


def wait_for(workers: Workers, report_id: UUID, done: Callable[[Report], bool],
             seen: list[tuple[str, int, str]], timeout: float = 90) -> Report:
    deadline = time.monotonic() + timeout
    while True:
        report = status_of(workers, report_id)
        point = (report.status, report.percent, report.step)
        if not seen or seen[-1] != point:
            seen.append(point)
        if done(report):
            return report
        if time.monotonic() > deadline:
            raise AssertionError(f"the report never got there; seen {seen}")
        time.sleep(0.05)


def verify_result(workers: Workers, case: Case, report_id: UUID) -> verification.Result:
    import io

    with workers.unit() as db:
        found = service.open_download(db, case.actor(), report_id, "bundle",
                                      storage=workers.storage)
        bundle = b"".join(found.chunks)
        return verification.verify_file(db, io.BytesIO(bundle), storage=workers.storage,
                                        org_id=case.org.id)


def test_progress_moves_from_0_to_100_through_a_real_worker(workers: Workers) -> None:
    case, report_id = seeded(workers)
    held = HeldExhibit(workers, case.evidence["photo"])
    seen: list[tuple[str, int, str]] = []
    try:
        wait_for(workers, report_id, lambda r: r.status == "queued", seen)
        workers.app.send_task(REPORT_BUILD_TASK, args=[str(report_id)])
        paused = wait_for(workers, report_id, lambda r: r.step == "checking_exhibits", seen)
        assert paused.status == "building" and 0 < paused.percent < 100
        held.release()
        done = wait_for(workers, report_id, lambda r: r.status in ("done", "failed"), seen)
    finally:
        held.restore()
    assert done.status == "done", done.failure_detail
    percents = [percent for _, percent, _ in seen]
    assert percents[0] == 0 and percents[-1] == 100
    assert percents == sorted(percents), seen
    assert done.attempts == 1 and done.step == "done" and done.expires_at is not None
    result = verify_result(workers, case, report_id)
    assert result.ok, result.as_dict()


def test_a_worker_killed_mid_build_leaves_the_report_retryable(workers: Workers,
                                                               monkeypatch) -> None:
    from workers import tasks

    case, report_id = seeded(workers)
    held = HeldExhibit(workers, case.evidence["photo"])
    victim_queue = f"{workers.app.conf.task_default_queue}-victim"
    victim = workers.start(victim_queue, "victim")
    try:
        workers.app.send_task(REPORT_BUILD_TASK, args=[str(report_id)], queue=victim_queue)
        held_at = wait_for(workers, report_id, lambda r: r.step == "checking_exhibits", [])
        assert held_at.status == "building" and held_at.attempts == 1
        _stop(victim, signal.SIGKILL)
    finally:
        _stop(victim, signal.SIGKILL)
        held.restore()

    # Killed mid-build: not done, nothing stored, nothing half-written presented as a result.
    left = status_of(workers, report_id)
    assert (left.status, left.pdf_key, left.bundle_key, left.manifest) == \
        ("building", None, None, None)
    assert left.percent < 100

    # The sweep runs against the workers' database and sends to the surviving worker.
    monkeypatch.setattr(tasks, "unit_of_work",
                        lambda *args, reading=False: unit_of_work(workers.engine,
                                                                  reading=reading))
    deferred.set_sender(lambda name, args, options: workers.app.send_task(
        name, args=args, **options))
    try:
        # While the dead worker's lease lasts nobody takes the report...
        with workers.unit() as db:
            assert report_id not in service.due_report_ids(db)
        # ...once it has run out (LEASE after the last renewal; moved here, not waited
        # for), the sweep finds it and the survivor builds it again.
        with workers.unit() as db:
            db.execute(sa.update(Report.__table__).where(Report.__table__.c.id == report_id)
                       .values(lease_expires_at=utcnow() - timedelta(seconds=1)))
        assert tasks.enqueue_due_reports() >= 1
        done = wait_for(workers, report_id, lambda r: r.status in ("done", "failed"), [])
    finally:
        deferred.set_sender(None)
    assert done.status == "done", done.failure_detail
    assert done.attempts == 2 and done.percent == 100
    assert done.bundle_key is not None and "attempt-2" in done.bundle_key
    result = verify_result(workers, case, report_id)
    assert result.ok, result.as_dict()
    # A duplicate message afterwards changes nothing.
    workers.app.send_task(REPORT_BUILD_TASK, args=[str(report_id)])
    workers.app.send_task(PING_TASK).get(timeout=30, interval=0.05)  # FIFO: handled by now
    after = status_of(workers, report_id)
    assert (after.status, after.attempts, after.bundle_key) == ("done", 2, done.bundle_key)



def test_a_real_worker_renders_a_long_summary_in_two_processes(workers: Workers,
                                                                tmp_path: Path) -> None:
    """Every summary counts as long for this worker: its build starts the second part's
    process, and the joined PDF is numbered across both parts and verifies."""
    import io
    import re

    from pypdf import PdfReader

    case, report_id = seeded(workers)
    queue = f"{workers.app.conf.task_default_queue}-parts"
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        worker = workers.start(queue, "parts", log=log, env={
            "ADVOCASE_REPORT_SPLIT_FROM_PAGES": "0", "ADVOCASE_LOG_LEVEL": "INFO"})
    try:
        workers.app.send_task(REPORT_BUILD_TASK, args=[str(report_id)], queue=queue)
        done = wait_for(workers, report_id, lambda r: r.status in ("done", "failed"), [])
    finally:
        _stop(worker)
    assert done.status == "done", done.failure_detail
    logged = log_path.read_text()
    assert "report_rendered_in_parts" in logged and "report_rendered_whole" not in logged
    assert verify_result(workers, case, report_id).ok
    with workers.unit() as db:
        found = service.open_download(db, case.actor(), report_id, "pdf",
                                      storage=workers.storage)
        pdf = b"".join(found.chunks)
    pages = PdfReader(io.BytesIO(pdf)).pages
    numbers = [re.search(r"Page (\d+) of (\d+)", page.extract_text() or "").groups()
               for page in pages]
    assert numbers == [(str(n), str(len(pages))) for n in range(1, len(pages) + 1)]
