"""The embedded broker's tables and task queue, made once before the processes that use it
start.

kombu's SQLAlchemy transport creates its tables, and a queue's row, the first time a process
uses them. It guards that against the other threads of its own process only. Two processes
starting together on a new broker file can both find no row and both insert one: an API
publishing its first task while a worker starts, or the API, worker and beat that
``advocase dev`` starts at once. The loser's IntegrityError is not caught, and a worker
stops with "Unrecoverable error". This is a known kombu race.

So every command that starts a process using the broker prepares it first: ``migrate``
(which ``dev`` runs before its children), ``serve``, ``worker`` and ``beat``. A process that
loses the race here tries again and finds what the winner made. Once the row exists, kombu
only reads it.
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from kombu import Connection, Exchange, Queue
from sqlalchemy.exc import IntegrityError, OperationalError

from app.db import create_db_engine
from app.settings import Settings

ATTEMPTS = 6
QUEUE_TABLE = "kombu_queue"  # the transport's default queue table name


def prepare_embedded_broker(settings: Settings) -> bool:
    """Create the embedded broker's tables and the task queue's row if they are missing.
    Returns False (and does nothing) for any other broker."""
    url = str(settings.broker_url)
    if not url.startswith("sqla+"):
        return False
    settings.ensure_dirs()
    declare_queue(url, settings.task_queue, settings)
    return True


def declare_queue(url: str, name: str, settings: Settings | None = None) -> None:
    """Create the tables of the embedded broker at ``url`` and the row of queue ``name``,
    whichever process gets there first."""
    engine = create_db_engine(url[len("sqla+"):], settings)
    try:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                with Connection(url) as connection:
                    Queue(name, Exchange(name, type="direct"), routing_key=name)(
                        connection.default_channel).declare()
                # kombu swallows an OperationalError on the insert's commit (a locked
                # file), so the row is looked for rather than assumed.
                if _queue_exists(engine, name):
                    return
            except (IntegrityError, OperationalError):
                if attempt == ATTEMPTS:
                    raise
            time.sleep(0.05 * attempt)
        raise RuntimeError(f"the embedded broker's queue {name!r} could not be created")
    finally:
        engine.dispose()


def _queue_exists(engine: sa.Engine, name: str) -> bool:
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table(QUEUE_TABLE):
            return False
        found = conn.execute(sa.text(f"SELECT 1 FROM {QUEUE_TABLE} WHERE name = :name"),  # noqa: S608
                             {"name": name}).first()
        return found is not None
