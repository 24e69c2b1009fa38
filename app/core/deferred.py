"""Send Celery tasks only after the surrounding transaction has committed.

A rolled-back request sends nothing, and a worker never looks for a row that is
not there yet. Tasks are named by string (no import of ``workers`` from domain
code) and their arguments must be identifiers: brokers and result backends keep
arguments in clear, so personal data must never be one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from uuid import UUID

import structlog
from sqlalchemy import event
from sqlalchemy.orm import Session

log = structlog.get_logger("app.deferred")

_PENDING_KEY = "advocase.pending_tasks"
# Identifiers: uuids, integers, or short machine words (a kind, a state) — never free text.
_ID_TEXT = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")

Sender = Callable[[str, list[Any], dict[str, Any]], None]


def _default_sender(name: str, args: list[Any], options: dict[str, Any]) -> None:
    from workers.celery_app import celery_app

    celery_app.send_task(name, args=args, **options)


_sender: Sender = _default_sender


def set_sender(sender: Sender | None) -> None:
    """Replace how tasks are sent (tests record them); None restores Celery."""
    global _sender
    _sender = sender or _default_sender


def _check_arg(value: Any) -> Any:
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _ID_TEXT.match(value):
        return value
    raise TypeError(
        "task arguments must be ids (UUID, int or a short identifier), "
        f"not {type(value).__name__}"
    )


def enqueue_after_commit(db: Session, task_name: str, *args: Any, **options: Any) -> None:
    """Queue ``task_name(*args)`` to be sent when ``db`` commits; dropped if it rolls back."""
    checked = [_check_arg(a) for a in args]
    db.info.setdefault(_PENDING_KEY, []).append((task_name, checked, options))


def pending_tasks(db: Session) -> list[tuple[str, list[Any], dict[str, Any]]]:
    return list(db.info.get(_PENDING_KEY, []))


@event.listens_for(Session, "after_commit")
def _send_pending(session: Session) -> None:
    pending = session.info.pop(_PENDING_KEY, [])
    for name, args, options in pending:
        try:
            _sender(name, args, options)
        except Exception:  # noqa: BLE001 - the commit stands; state in the database drives retries
            log.error("task_send_failed", task=name, exc_info=True)


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    session.info.pop(_PENDING_KEY, None)
