"""The real app, and the code's units of work, bound to a test's session."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from fastapi import FastAPI
from sqlmodel import Session

from app.db import committing


def bound_unit_of_work(db: Session) -> Callable[..., AbstractContextManager[Session]]:
    """A stand-in for ``app.db.unit_of_work`` (and a request's unit of work) that works
    inside the test's transaction: its commits go into the savepoint the test rolls back.

    In production every unit of work opens a new session, so it reads rows as they are
    now. Here they all share the test's one session, whose identity map would hand back
    an object as an earlier unit loaded it, although a later one changed its row with a
    plain UPDATE (a build's progress, a claim, a lease). Whether that stale object is
    still there depends on when Python's cycle collector last ran, so a test could pass or
    fail by chance. Each unit therefore starts as a new session would: what the test left
    pending is flushed, then everything loaded is expired and read again when used."""

    @contextmanager
    def work(engine: Any = None, *, reading: bool = False) -> Iterator[Session]:
        del engine, reading
        db.flush()
        db.expire_all()
        with committing(db):
            yield db

    return work


def bind_to_session(app: FastAPI, db: Session) -> FastAPI:
    """Every request of ``app`` (and every denial audit) works in the test's session:
    commits go into its savepoint, which the test rolls back at its end."""
    app.state.unit_of_work = bound_unit_of_work(db)
    return app
