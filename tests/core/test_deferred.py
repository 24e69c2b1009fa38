"""Tasks leave only after the transaction that asked for them has committed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import pytest
from sqlalchemy.engine import Engine

from app.core import deferred
from app.db import unit_of_work


@pytest.fixture
def sent() -> Iterator[list[tuple[str, list[Any]]]]:
    log: list[tuple[str, list[Any]]] = []
    deferred.set_sender(lambda name, args, options: log.append((name, args)))
    yield log
    deferred.set_sender(None)


def test_nothing_is_sent_when_the_transaction_rolls_back(engine: Engine, sent) -> None:
    with pytest.raises(RuntimeError), unit_of_work(engine) as db:
        deferred.enqueue_after_commit(db, "system.ping")
        raise RuntimeError("the request failed")
    assert sent == []


def test_nothing_is_sent_before_commit_and_everything_after(engine: Engine, sent) -> None:
    record = uuid4()
    with unit_of_work(engine) as db:
        deferred.enqueue_after_commit(db, "reports.build", record, 3)
        deferred.enqueue_after_commit(db, "system.ping")
        db.flush()
        assert sent == []
    assert sent == [("reports.build", [str(record), 3]), ("system.ping", [])]


def test_a_second_commit_does_not_send_again(engine: Engine, sent) -> None:
    with unit_of_work(engine) as db:
        deferred.enqueue_after_commit(db, "system.ping")
        db.commit()
        assert len(sent) == 1
    assert len(sent) == 1


@pytest.mark.parametrize(
    "bad",
    ["Jane Fictional", "someone@example.org", {"name": "x"}, ["a"], 1.5, "x" * 65],
)
def test_personal_data_cannot_be_a_task_argument(engine: Engine, sent, bad: Any) -> None:
    with unit_of_work(engine) as db, pytest.raises(TypeError):
        deferred.enqueue_after_commit(db, "system.ping", bad)
    assert sent == []
