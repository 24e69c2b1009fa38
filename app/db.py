"""Engine, sessions and the table metadata shared by API, dashboard, CLI and workers.

One request, one task or one command is one unit of work: it gets one session,
commits once at the edge on success and rolls back on any error. Services only
``flush``.
"""

from __future__ import annotations

import collections
import functools
import re
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import Depends, Request
from fastapi.routing import APIRoute
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, SQLModel
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from app.settings import Settings, get_settings, sqlite_path

# Named constraints make SQLite batch migrations work and keep names stable across databases.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
SQLModel.metadata.naming_convention = NAMING_CONVENTION


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timestamp stored in UTC and always returned timezone-aware.

    SQLite keeps no offset, so values are normalised to UTC on the way in and
    marked UTC on the way out; naive datetimes are refused rather than guessed.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: timestamps must carry an offset")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    """WAL, foreign keys and a busy timeout on every SQLite connection of the process.

    Registered on the Engine class so the Celery broker and result-backend engines
    (created by kombu and Celery) get the same treatment as ours.
    """
    module = type(dbapi_connection).__module__
    if "sqlite" not in module:
        return
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA busy_timeout = 10000")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


_WRITES = re.compile(r"^\s*(INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)


def _use_explicit_sqlite_transactions(engine: Engine) -> None:
    """Let SQLAlchemy, not pysqlite, decide where transactions begin.

    pysqlite's own handling defers BEGIN and breaks SAVEPOINT; this is the recipe
    from SQLAlchemy's SQLite documentation.
    """

    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection: Any, connection_record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _explicit_begin(connection: sa.Connection) -> None:
        # IMMEDIATE takes the write lock up front, as Rails does for SQLite: a
        # transaction that read first and wrote later would otherwise fail with
        # SQLITE_BUSY when another process wrote in between, instead of waiting.
        # LAZY (mostly-reading requests): reads run without a transaction, and the
        # first write opens an IMMEDIATE one (below), so it waits for the lock
        # instead of failing on a snapshot another writer has moved past.
        mode = connection.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        if mode != "LAZY":
            connection.exec_driver_sql(f"BEGIN {mode}")

    event.listen(engine, "before_cursor_execute", _begin_before_first_write)


def _begin_before_first_write(connection: sa.Connection, cursor: Any, statement: str,
                              parameters: Any, context: Any, executemany: bool) -> None:
    if connection.get_execution_options().get("sqlite_begin") != "LAZY":
        return
    dbapi = connection.connection.dbapi_connection
    if dbapi is not None and not dbapi.in_transaction and _WRITES.match(statement):
        cursor.execute("BEGIN IMMEDIATE")


# How many statement listeners each engine made here has of advocase's own.
_own_cursor_listeners: weakref.WeakKeyDictionary[Engine, int] = weakref.WeakKeyDictionary()


def _cursor_listeners(target: Engine | sa.Connection) -> int:
    dispatch = target.dispatch
    return len(dispatch.before_cursor_execute) + len(dispatch.after_cursor_execute)


def _untapped(connection: sa.Connection) -> bool:
    """True when nothing but advocase's own listeners watch the connection's statements
    (no tracing, no statement counting in a test, on the engine or on the connection),
    on an engine made by create_db_engine."""
    return _own_cursor_listeners.get(connection.engine, -1) == _cursor_listeners(connection)


class DriverQuery:
    """A Core SELECT of one row for the hottest path, each request's token check: compiled
    once per dialect and run straight on the request connection's DB-API cursor, with
    SQLAlchemy's own bind and result processing of each column's type.

    Through ``Connection.execute`` (execution context, result object, events) the token
    check cost an authenticated ``GET /api/v1/me`` about a quarter of its CPU: 290 µs
    in-process against 220 µs this way (docs/benchmarks.md). The statement runs on the
    same connection and in the same transaction as it would there; its errors are raised
    as SQLAlchemy's, a lost connection is invalidated as SQLAlchemy would, and while
    anything else listens to the engine's statements (tracing, a test counting them) it
    simply goes through ``Connection.execute``, so it is seen like any other."""

    def __init__(self, statement: sa.Select[Any]) -> None:
        self.statement = statement
        self.row_type = collections.namedtuple(  # type: ignore[misc]
            "DriverRow", [column.key for column in statement.selected_columns])
        self._plans: dict[str, tuple[str, bool, list[tuple[str, Any]], list[Any]]] = {}

    def _plan(self, dialect: sa.Dialect) -> tuple[str, bool, list[tuple[str, Any]], list[Any]]:
        plan = self._plans.get(dialect.name)
        if plan is None:
            compiled = self.statement.compile(dialect=dialect)
            names = list(compiled.positiontup or ()) if compiled.positional \
                else list(compiled.binds)
            binders = [(name, compiled.binds[name].type.dialect_impl(dialect)
                        .bind_processor(dialect)) for name in names]
            readers = [column.type.dialect_impl(dialect).result_processor(dialect, None)
                       for column in self.statement.selected_columns]
            plan = self._plans[dialect.name] = (compiled.string, compiled.positional,
                                                binders, readers)
        return plan

    def first(self, connection: sa.Connection, params: dict[str, Any]) -> Any:
        """The first row (a named tuple of the selected columns) or None."""
        if not _untapped(connection):
            row = connection.execute(self.statement, params).first()
            return None if row is None else self.row_type(*row)
        dialect = connection.dialect
        sql, positional, binders, readers = self._plan(dialect)
        values = [bind(params[name]) if bind else params[name] for name, bind in binders]
        arguments: Any = tuple(values) if positional else dict(
            zip((name for name, _ in binders), values, strict=True))
        pooled = connection.connection
        cursor = None
        try:
            cursor = pooled.cursor()
            try:
                cursor.execute(sql, arguments)
                raw = cursor.fetchone()
            finally:
                cursor.close()
        except dialect.loaded_dbapi.Error as exc:
            lost = dialect.is_disconnect(exc, pooled.dbapi_connection, cursor)
            if lost:
                connection.invalidate(exc)
            raise sa.exc.DBAPIError.instance(
                sql, None, exc, dialect.loaded_dbapi.Error, hide_parameters=True,
                connection_invalidated=lost, dialect=dialect) from exc
        if raw is None:
            return None
        return self.row_type(*[read(value) if read else value
                               for read, value in zip(readers, raw, strict=True)])


def create_db_engine(url: str, settings: Settings | None = None) -> Engine:
    """An engine for ``url``: SQLite tuned for several processes, PostgreSQL with a bounded pool."""
    settings = settings or get_settings()
    # Parameters may hold personal data (encrypted or not): keep them out of error messages.
    common: dict[str, Any] = {"hide_parameters": True, "future": True}
    if url.startswith("sqlite"):
        path = sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 10},
            # One connection per thread-pool worker (40 by default): a request must not
            # wait for a connection while holding its place in the thread pool.
            pool_size=40,
            max_overflow=10,
            **common,
        )
        _use_explicit_sqlite_transactions(engine)
        _own_cursor_listeners[engine] = _cursor_listeners(engine)
        return engine
    engine = sa.create_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=True,
        pool_recycle=1800,
        pool_timeout=10,
        connect_args={
            "connect_timeout": settings.db_connect_timeout,
            "application_name": "advocase",
        },
        **common,
    )
    _own_cursor_listeners[engine] = _cursor_listeners(engine)
    return engine


_engine_lock = threading.Lock()
_engines: dict[str, Engine] = {}


def get_engine(settings: Settings | None = None) -> Engine:
    """The process-wide engine for the configured database (created once)."""
    settings = settings or get_settings()
    url = str(settings.database_url)
    engine = _engines.get(url)
    if engine is None:
        with _engine_lock:
            engine = _engines.get(url)
            if engine is None:
                settings.ensure_dirs()
                engine = create_db_engine(url, settings)
                _engines[url] = engine
    return engine


def dispose_engines(url: str | None = None) -> None:
    """Close the pooled connections of the engine made for ``url`` and forget it, or of
    every engine when no URL is given."""
    with _engine_lock:
        urls = list(_engines) if url is None else [url] if url in _engines else []
        for name in urls:
            _engines.pop(name).dispose()


def read_only(engine: Engine) -> sa.Connection:
    """A connection for work that mostly reads: on SQLite, reads take no lock and the
    first write (if any) opens a transaction that waits for the write lock."""
    return engine.connect().execution_options(sqlite_begin="LAZY")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, class_=Session, expire_on_commit=False, autoflush=True)


@contextmanager
def committing(session: Session) -> Iterator[Session]:
    """Commit on success, roll back on error — unless a refusal asks to keep its changes."""
    from app.core.errors import DomainError

    try:
        yield session
        session.commit()
    except DomainError as exc:
        if exc.keep_changes:
            session.commit()
        else:
            session.rollback()
        raise
    except BaseException:
        session.rollback()
        raise


# What opens a unit of work: ``unit_of_work`` itself, or a test's stand-in bound to its own
# transaction (tasks and builds take one so tests can run them inside the test's session).
Work = Callable[..., AbstractContextManager[Session]]


@contextmanager
def unit_of_work(engine: Engine | None = None, *, reading: bool = False) -> Iterator[Session]:
    """One unit of work for a task or a command: commit on success, roll back on error.

    ``reading`` marks work that mostly reads: on SQLite its transaction starts
    without the write lock, so readers do not queue behind one another.
    """
    engine = engine or get_engine()
    if reading:
        with read_only(engine) as connection, \
                Session(bind=connection, expire_on_commit=False) as session, \
                committing(session):
            yield session
        return
    with session_factory(engine)() as session, committing(session):
        yield session


def request_engine(request: Request) -> Engine:
    """The engine of the app serving ``request``: its own (``state.engine``, which tests
    point at a database of their own) or the process's."""
    return getattr(request.app.state, "engine", None) or get_engine()


def app_unit_of_work(request: Request) -> Callable[..., Any]:
    """``unit_of_work`` for work apart from the request's own (a refusal's audit event),
    or the app's own ``state.unit_of_work`` (tests bind it to their transaction)."""
    factory = getattr(request.app.state, "unit_of_work", None)
    return factory or functools.partial(unit_of_work, request_engine(request))


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_REQUEST_WORK = "advocase.unit_of_work"


class RequestWork:
    """A request's unit of work, opened on first use and finished by the route.

    It wraps ``unit_of_work`` (or the app's own ``state.unit_of_work``, which tests bind
    to their transaction), so a request commits and rolls back exactly like a task or a
    command. ``finish`` is called by :class:`UnitOfWorkRoute` after the endpoint has
    produced its response and before anything is sent: a client never sees success for
    a write that then failed to commit, and a refusal's own audit write (made after
    the handler) never waits behind this request's lock.

    A reading request on SQLite starts with a pooled connection only: the token check
    runs one Core statement on it, and the ORM session is made on the same connection
    when the handler first asks for one (most do; ``GET /api/v1/me`` does not, and making
    and committing a session costs about as much as that whole statement). SQLite reads
    of such a request run outside any database transaction (``read_only``), so ending the
    token check's statement before the session starts changes nothing the database
    sees. On PostgreSQL the session is made at once: the token check and the handler's
    reads share one transaction, and a session joining a transaction already begun would
    run its after-commit hooks (tasks sent after commit) before the real COMMIT.
    """

    __slots__ = ("_context", "session", "_connection", "finished")

    def __init__(self, request: Request, *, reading: bool) -> None:
        factory = getattr(request.app.state, "unit_of_work", None)
        self.finished = False
        self._connection: sa.Connection | None = None
        self.session: Session | None = None
        self._context: Any = None
        if factory is None:
            engine = request_engine(request)
            if reading and engine.dialect.name == "sqlite":
                self._connection = read_only(engine)
                return
            factory = functools.partial(unit_of_work, engine)
        self._context = factory(reading=reading)
        self.session = self._context.__enter__()
        if not reading:
            # Take the connection (and, on SQLite, the write lock) now, in this thread.
            self.session.connection()

    def connection(self) -> sa.Connection:
        """The request's connection for Core statements, without making an ORM session."""
        if self.session is None and self._connection is not None:
            return self._connection
        return self.orm_session().connection()

    def orm_session(self) -> Session:
        """The request's session, made on the request's connection on first use."""
        if self.session is None:
            connection = self._connection
            assert connection is not None and not self.finished
            if connection.in_transaction():
                # Only the token check's SELECT ran: on SQLite's lazy reads, no database
                # transaction is open, so this ends SQLAlchemy's bookkeeping only and the
                # session begins (and owns) the connection's next transaction.
                connection.commit()
            self._context = _session_on(connection)
            self.session = self._context.__enter__()
        return self.session

    def finish(self, error: BaseException | None = None) -> None:
        """Commit (no error, or a refusal that keeps its changes) or roll back; once."""
        if self.finished:
            return
        self.finished = True
        try:
            if self._context is not None:
                if error is None:
                    self._context.__exit__(None, None, None)
                else:
                    self._context.__exit__(type(error), error, error.__traceback__)
            elif self._connection is not None:
                if error is None:
                    self._connection.commit()
                else:
                    self._connection.rollback()
        finally:
            self.session = None
            if self._connection is not None:
                self._connection.close()


@contextmanager
def _session_on(connection: sa.Connection) -> Iterator[Session]:
    with Session(bind=connection, expire_on_commit=False) as session, committing(session):
        yield session


def _idle_connection_ready(request: Request) -> bool:
    """True when the pool has an idle connection, so taking one does not wait."""
    if getattr(request.app.state, "unit_of_work", None) is not None:
        return True  # bound to a test's session: no shared pool wait
    checkedin = getattr(request_engine(request).pool, "checkedin", None)
    return bool(checkedin is not None and checkedin() > 0)


async def request_work(request: Request) -> RequestWork:
    """The request's unit of work, opened on first use.

    The event loop never waits for the database here. Safe methods read without
    SQLite's write lock and take an idle pooled connection on the loop; when none is
    idle, and for every other method (which takes SQLite's write lock up front, so a
    request that reads then writes never fails on a concurrent writer), the work is
    opened in the thread pool. A loop blocked on a full pool or a held write lock would
    stall the very requests whose commits (run on the loop) would free them.
    """
    scope = request.scope
    work: RequestWork | None = scope.get(_REQUEST_WORK)
    if work is None or work.finished:
        reading = request.method in SAFE_METHODS
        if reading and _idle_connection_ready(request):
            work = RequestWork(request, reading=True)
        else:
            work = await run_in_threadpool(functools.partial(RequestWork, request,
                                                             reading=reading))
        scope[_REQUEST_WORK] = work
    return work


async def get_db(request: Request) -> Session:
    """FastAPI dependency: the request's session (one per request, made on first use).

    Not a ``yield`` dependency on purpose: FastAPI's generator machinery costs a
    measurable share of a small request; the route class below finishes the work.
    """
    return (await request_work(request)).orm_session()


def finish_request_work(scope: Any, error: BaseException | None = None) -> bool:
    """Finish the request's unit of work if one is open; True if there was one."""
    work: RequestWork | None = scope.get(_REQUEST_WORK)
    if work is None or work.finished:
        return False
    work.finish(error)
    return True


COMMIT_MAY_WAIT = "advocase.commit_may_wait"
"""``Session.info`` key set by work whose commit may wait for another transaction: the
events of an audit chain are appended right before COMMIT, under the chain head's lock."""


async def end_request_work(scope: Any, error: BaseException | None = None) -> bool:
    """:func:`finish_request_work` for a route handler: on the event loop (no thread hop)
    unless the commit may wait for a lock, which is then waited for in the thread pool."""
    work: RequestWork | None = scope.get(_REQUEST_WORK)
    if work is None or work.finished:
        return False
    if work.session is not None and work.session.info.get(COMMIT_MAY_WAIT):
        await run_in_threadpool(work.finish, error)
    else:
        work.finish(error)
    return True


class UnitOfWorkRoute(APIRoute):
    """Every API and dashboard route: the request's unit of work ends with the handler.

    Success commits; an exception rolls back (a ``DomainError(keep_changes=True)``
    commits first) and goes on to the exception handlers with the session closed."""

    def get_route_handler(self) -> Callable[[Request], Any]:
        handler = super().get_route_handler()

        async def unit_of_work_handler(request: Request) -> Response:
            try:
                response: Response = await handler(request)
            except BaseException as exc:
                await end_request_work(request.scope, exc)
                raise
            await end_request_work(request.scope)
            return response

        return unit_of_work_handler


SessionDep = Annotated[Session, Depends(get_db)]
