"""The unit of work on SQLite: concurrent writers wait for each other instead of failing."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command

from app.cli import alembic_config
from app.db import create_db_engine, unit_of_work
from app.system.models import WorkerHeartbeat
from app.system.service import record_heartbeat


@pytest.fixture
def sqlite_engine(tmp_path):
    url = f"sqlite:///{tmp_path / 'uow.sqlite'}"
    command.upgrade(alembic_config(url), "head")
    engine = create_db_engine(url)
    yield engine
    engine.dispose()


def deferred_unit(engine):
    """The control: a plain deferred transaction, what pysqlite would do."""
    from contextlib import contextmanager

    from sqlmodel import Session

    from app.db import committing

    @contextmanager
    def unit():
        with engine.connect().execution_options(sqlite_begin="DEFERRED") as conn, \
                Session(bind=conn) as session, committing(session):
            yield session

    return unit()


@pytest.mark.parametrize("mode", ["reading", "deferred-control"])
def test_read_then_write_survives_a_concurrent_writer(sqlite_engine, mode) -> None:
    """A GET reads, another process commits a write, then the GET writes (an audit event).

    In a plain deferred transaction that write fails with SQLITE_BUSY (its snapshot
    is stale) — the control shows it; the reading unit of work must succeed."""
    with unit_of_work(sqlite_engine) as db:
        record_heartbeat(db, "seed", datetime.now(UTC))
    read_done, other_done = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def request() -> None:
        try:
            unit = (unit_of_work(sqlite_engine, reading=True) if mode == "reading"
                    else deferred_unit(sqlite_engine))
            with unit as db:
                db.scalar(sa.select(sa.func.count()).select_from(WorkerHeartbeat))
                read_done.set()
                other_done.wait(timeout=5)
                record_heartbeat(db, "from-request", datetime.now(UTC))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            read_done.set()

    def other_writer() -> None:
        read_done.wait(timeout=5)
        try:
            with unit_of_work(sqlite_engine) as db:
                record_heartbeat(db, "other", datetime.now(UTC))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            other_done.set()

    threads = [threading.Thread(target=request), threading.Thread(target=other_writer)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    if mode == "deferred-control":
        assert len(errors) == 1 and "locked" in str(errors[0])
        return
    assert not errors, errors
    with unit_of_work(sqlite_engine, reading=True) as db:
        names = set(db.scalars(sa.select(WorkerHeartbeat.worker)))
    assert names == {"seed", "from-request", "other"}
