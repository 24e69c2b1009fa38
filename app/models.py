"""Every table of the service, imported in one place for Alembic and the schema test."""

from sqlmodel import SQLModel

from app.system.models import WorkerHeartbeat

metadata = SQLModel.metadata

__all__ = ["WorkerHeartbeat", "metadata"]
