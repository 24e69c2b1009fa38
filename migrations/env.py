"""Alembic environment: the URL comes from advocase settings; SQLite uses batch mode."""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy.engine import Connection

import app.models  # noqa: F401 - registers every table on the metadata
from app.db import UTCDateTime, create_db_engine
from app.models import metadata
from app.settings import get_settings

config = context.config


def render_item(type_: str, obj: Any, autogen_context: Any) -> Any:
    # Our UTCDateTime is a plain timezone-aware DateTime in the schema.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        compare_server_default=True,
        render_item=render_item,
    )


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.attributes.get("database_url") or str(get_settings().database_url)
    engine = create_db_engine(url)
    try:
        with engine.connect() as connection:
            _configure(connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


def run_migrations_offline() -> None:
    url = config.attributes.get("database_url") or str(get_settings().database_url)
    context.configure(url=url, target_metadata=metadata, literal_binds=True,
                      render_as_batch=url.startswith("sqlite"), render_item=render_item)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
