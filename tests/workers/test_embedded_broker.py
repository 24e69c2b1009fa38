"""The embedded broker's tables and task queue are made once, before the processes that use
them start (``workers/embedded_broker.py``).

Left to kombu, processes starting together on a new broker file race to create them: on
this machine, six processes declaring the queue at the same moment lost a third of their
number to "table kombu_queue already exists" or a duplicate queue row. A worker that loses
stops with "Unrecoverable error" (seen once in CI, killing a browser test's worker)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.settings import Settings
from tests.test_cli import PROJECT, advocase, embedded_env
from workers.embedded_broker import prepare_embedded_broker

PROCESSES = 6

# Each process imports everything, says it is ready, then waits for the word to go, so
# that all of them reach the broker in the same few milliseconds.
STARTER = """
import sys, time
from pathlib import Path
from app.settings import get_settings
from workers.embedded_broker import prepare_embedded_broker
folder, me = Path(sys.argv[1]), sys.argv[2]
settings = get_settings()
(folder / f"ready-{me}").touch()
while not (folder / "go").exists():
    time.sleep(0.001)
assert prepare_embedded_broker(settings)
"""


def queues_in(broker: Path) -> list[str]:
    with sqlite3.connect(broker) as conn:
        return [row[0] for row in conn.execute("SELECT name FROM kombu_queue ORDER BY id")]


def test_a_broker_other_than_the_embedded_one_is_left_alone(settings: Settings) -> None:
    # Nothing listens on port 1: any attempt to connect would fail.
    other = settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"})
    assert prepare_embedded_broker(other) is False


def test_the_tables_and_the_queue_are_made_once(settings: Settings, tmp_path: Path) -> None:
    broker = tmp_path / "broker.sqlite"
    embedded = settings.model_copy(update={"broker_url": f"sqla+sqlite:///{broker}",
                                           "task_queue": "fictional-queue"})
    assert prepare_embedded_broker(embedded) is True
    assert prepare_embedded_broker(embedded) is True
    assert queues_in(broker) == ["fictional-queue"]


@pytest.mark.parametrize("trial", [1, 2])
def test_processes_starting_together_on_a_new_broker_all_find_its_queue(
        tmp_path: Path, trial: int) -> None:
    env = embedded_env(tmp_path)
    processes = [
        subprocess.Popen(  # noqa: S603
            [sys.executable, "-c", STARTER, str(tmp_path), str(n)], cwd=PROJECT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for n in range(PROCESSES)
    ]
    try:
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob("ready-*"))) < PROCESSES:
            assert time.monotonic() < deadline, "the processes did not start in 60 s"
            assert all(p.poll() is None for p in processes), "a process ended early"
            time.sleep(0.05)
        (tmp_path / "go").touch()
        results = [(p.wait(timeout=60), p.communicate()[1]) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    assert [code for code, _ in results] == [0] * PROCESSES, [err for _, err in results]
    assert queues_in(tmp_path / "var" / "broker.sqlite") == ["advocase"]


def test_migrate_prepares_the_broker_before_the_processes_that_follow(tmp_path: Path) -> None:
    env = embedded_env(tmp_path)
    migrated = advocase("migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    assert queues_in(tmp_path / "var" / "broker.sqlite") == ["advocase"]
