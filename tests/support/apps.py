"""The real app bound to a test's session."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import FastAPI
from sqlmodel import Session

from app.db import committing


def bind_to_session(app: FastAPI, db: Session) -> FastAPI:
    """Every request of ``app`` (and every denial audit) works in the test's session:
    commits go into its savepoint, which the test rolls back at its end."""

    @contextmanager
    def test_unit_of_work(*, reading: bool = False) -> Iterator[Session]:
        del reading
        with committing(db):
            yield db

    app.state.unit_of_work = test_unit_of_work
    return app
