"""Migrations build exactly the models' schema, and go down and up again, on both databases."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

import app.models  # noqa: F401
from app.cli import alembic_config
from app.db import create_db_engine
from app.models import metadata
from tests.support import services


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request, tmp_path) -> Iterator[str]:
    with services.own_database(request.param, tmp_path, "migrations", migrate=False) as url:
        yield url


def modelled(obj, name, type_, reflected, compare_to) -> bool:
    """Search structures built by hand in migrations are not models: the resource
    directory's SQLite FTS5 table (and its shadow tables) and PostgreSQL GIN index."""
    return not (reflected and (name or "").startswith(("resource_fts", "ix_resource_fts")))


def schema_diff(url: str) -> list:
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": True,
                            "include_object": modelled}
            )
            return compare_metadata(context, metadata)
    finally:
        engine.dispose()


def tables(url: str) -> set[str]:
    engine = create_db_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_head_matches_models_and_round_trips(empty_database: str) -> None:
    config = alembic_config(empty_database)

    command.upgrade(config, "head")
    assert schema_diff(empty_database) == []
    assert set(metadata.tables) <= tables(empty_database)

    command.downgrade(config, "base")
    assert tables(empty_database) <= {"alembic_version"}

    command.upgrade(config, "head")
    assert schema_diff(empty_database) == []


def test_a_single_head() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert len(script.get_heads()) == 1
