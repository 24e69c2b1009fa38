"""The floor app: the least the fixed stack (FastAPI, SQLModel sessions, psycopg on
PostgreSQL) can do for a request that reads one row, or makes one durable write.

An audited read of advocase (``GET /api/v1/clients/{id}``) authenticates, reads the client,
its data key and its assignments, decrypts nine fields and appends an audit event that is
committed before the answer leaves. Whatever advocase does, it cannot answer such a read
faster than this app answers a request that does only the last of those steps: one INSERT
and its COMMIT. ``tests/bench/floor.py`` serves this app beside advocase and reports both
as ratios to advocase's own ``/healthz``.

Served by uvicorn (``tests.bench.floor_app:app``); ``FLOOR_DATABASE_URL`` names the
database (``postgresql+psycopg://…``) whose ``floor_event`` table ``create_schema`` made.
Nothing here is personal data: rows hold fixed filler text.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID, uuid4

import anyio.to_thread
import psycopg
import sqlalchemy as sa
from fastapi import FastAPI
from sqlmodel import Field, Session, SQLModel

READ_ID = UUID("00000000-0000-4000-8000-000000000001")
FILLER = "fictional filler of about the size of an audit event's canonical text " * 4
# Per worker: 24 + 8 connections for the sessions, 12 for the event loop; two workers stay
# under PostgreSQL's default 100 connections.
POOL_SIZE = 24
ASYNC_CONNECTIONS = 12
PAGE = 50


class FloorEvent(SQLModel, table=True):
    __tablename__ = "floor_event"
    id: UUID = Field(primary_key=True)
    body: str


def engine_for(url: str) -> sa.Engine:
    # No pre-ping: the floor is the least work, and nothing here outlives a restart.
    return sa.create_engine(url, pool_size=POOL_SIZE, max_overflow=8,
                            hide_parameters=True)


def create_schema(url: str) -> None:
    """The table and the one row ``/read`` reads (run once, before serving)."""
    engine = engine_for(url)
    try:
        SQLModel.metadata.create_all(engine, tables=[FloorEvent.__table__])  # type: ignore[list-item]
        with Session(engine) as session:
            session.add(FloorEvent(id=READ_ID, body=FILLER))
            session.add_all(FloorEvent(id=uuid4(), body=FILLER) for _ in range(PAGE))
            session.commit()
    finally:
        engine.dispose()


class _State:
    engine: sa.Engine | None = None
    connections: asyncio.Queue[psycopg.AsyncConnection[Any]] | None = None


state = _State()


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    url = os.environ["FLOOR_DATABASE_URL"]
    # The sync endpoints' thread pool (anyio's default, as advocase's, is 40).
    anyio.to_thread.current_default_thread_limiter().total_tokens = int(
        os.environ.get("FLOOR_THREADS", "40"))
    state.engine = engine_for(url)
    queue: asyncio.Queue[psycopg.AsyncConnection[Any]] = asyncio.Queue()
    dsn = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    for _ in range(ASYNC_CONNECTIONS):
        queue.put_nowait(await psycopg.AsyncConnection.connect(dsn, autocommit=True))
    state.connections = queue
    try:
        yield
    finally:
        while not queue.empty():
            await queue.get_nowait().close()
        state.engine.dispose()


app = FastAPI(lifespan=lifespan, openapi_url=None)


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/read")
def read() -> dict[str, int]:
    """One row by primary key through a SQLModel session (a sync endpoint, as advocase's)."""
    with Session(state.engine) as session:
        row = session.get(FloorEvent, READ_ID)
        return {"length": len(row.body) if row else 0}


@app.get("/write")
def write() -> dict[str, bool]:
    """One row inserted and committed through a SQLModel session: the least an audited read
    must do before it answers."""
    with Session(state.engine) as session:
        session.add(FloorEvent(id=uuid4(), body=FILLER))
        session.commit()
    return {"written": True}


@app.get("/read-shape")
def read_shape() -> dict[str, int]:
    """The statements of advocase's client read and nothing else: four rows read by primary
    key (the token's session, the client, its data key, its assignments) and one row
    inserted (the audit event), in one session transaction, committed."""
    with Session(state.engine) as session:
        found = sum(session.get(FloorEvent, READ_ID, populate_existing=True) is not None
                    for _ in range(4))
        session.add(FloorEvent(id=uuid4(), body=FILLER))
        session.commit()
    return {"found": found}


_PAGE_ROWS = sa.select(FloorEvent.id, FloorEvent.body).limit(PAGE)
_PAGE_IDS = sa.select(FloorEvent.id).where(FloorEvent.id.in_(  # type: ignore[attr-defined]
    sa.bindparam("ids", expanding=True)))


@app.get("/page-shape")
def page_shape() -> dict[str, int]:
    """The statements of advocase's incident list page and nothing else: two rows read by
    primary key (the token's session, the client), a page of 50 rows, a look-up of 50 ids
    (the page's categories), and 50 rows inserted in one statement (one audit event per
    listed incident), in one session transaction, committed."""
    with Session(state.engine) as session:
        session.get(FloorEvent, READ_ID, populate_existing=True)
        session.get(FloorEvent, READ_ID, populate_existing=True)
        page = session.execute(_PAGE_ROWS).all()
        session.execute(_PAGE_IDS, {"ids": [row.id for row in page]}).all()
        session.execute(_INSERT, [{"id": uuid4(), "body": FILLER} for _ in page])
        session.commit()
    return {"listed": len(page)}


_INSERT = sa.insert(FloorEvent.__table__)  # type: ignore[arg-type]


@app.get("/core-write")
def core_write() -> dict[str, bool]:
    """The same insert and commit through SQLAlchemy Core on a pooled connection: no
    session, no ORM object."""
    assert state.engine is not None
    with state.engine.begin() as connection:
        connection.execute(_INSERT, {"id": uuid4(), "body": FILLER})
    return {"written": True}


@app.get("/async-write")
async def async_write() -> dict[str, bool]:
    """The same insert on the event loop, psycopg's async connection, no ORM, no thread."""
    assert state.connections is not None
    connection = await state.connections.get()
    try:
        await connection.execute("INSERT INTO floor_event (id, body) VALUES (%s, %s)",
                                 (uuid4(), FILLER))
    finally:
        state.connections.put_nowait(connection)
    return {"written": True}
