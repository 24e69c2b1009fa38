"""Service functions for the service's own operational state."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session

from app.db import utcnow
from app.system.models import WorkerHeartbeat


def record_heartbeat(db: Session, worker: str, at: datetime | None = None) -> WorkerHeartbeat:
    """Note that ``worker`` is alive now (one row per worker, updated in place)."""
    at = at or utcnow()
    beat = db.get(WorkerHeartbeat, worker)
    if beat is None:
        beat = WorkerHeartbeat(worker=worker, last_seen_at=at, beats=1)
        db.add(beat)
    else:
        beat.last_seen_at = at
        beat.beats += 1
    db.flush()
    return beat


def forget_silent_workers(db: Session, older_than: timedelta) -> int:
    """Drop heartbeat rows of workers silent for ``older_than`` (renamed or retired hosts)."""
    cutoff = utcnow() - older_than
    result = db.execute(
        sa.delete(WorkerHeartbeat).where(WorkerHeartbeat.last_seen_at < cutoff)  # type: ignore[arg-type]
    )
    db.flush()
    return int(result.rowcount or 0)
