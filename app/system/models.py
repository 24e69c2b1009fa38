"""Operational state the service keeps about itself (no client data)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from app.db import UTCDateTime


class WorkerHeartbeat(SQLModel, table=True):
    """The last time each Celery worker ran the periodic heartbeat task."""

    __tablename__ = "worker_heartbeat"

    worker: str = Field(primary_key=True, max_length=255)
    last_seen_at: datetime = Field(sa_type=UTCDateTime)
    beats: int = Field(default=0)
