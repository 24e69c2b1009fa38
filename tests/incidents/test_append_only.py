"""Nothing recorded about an incident is ever changed or removed: no code path does it, and
the database refuses it (triggers on PostgreSQL, and on SQLite too)."""

from __future__ import annotations

import ast
from pathlib import Path
from uuid import UUID

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from app.core.access import Actor
from app.db import session_factory
from app.incidents import schemas, service
from app.incidents.models import Incident, IncidentRevision, IncidentRevisionCategory
from tests.consents.factories import make_client
from tests.incidents.conftest import incident_body
from tests.support import services
from tests.support.identity import make_org, make_user

TABLES = ("incident", "incident_revision", "incident_revision_category")
CHANGES = {
    "incident": "UPDATE incident SET created_at = created_at",
    "incident_revision": "UPDATE incident_revision SET retracted = NOT retracted",
    "incident_revision_category": "UPDATE incident_revision_category SET category = 'sexual'",
}


def _record(db: Session) -> service.RevisionRecord:
    org = make_org(db)
    advocate = make_user(db, org, "advocate")
    client_id = UUID(make_client(db, org, advocate))
    actor = Actor(kind="user", id=advocate.id, org_id=org.id, role="advocate")
    record = service.record_incident(db, actor, client_id,
                                     schemas.IncidentCreate.model_validate(incident_body()))
    service.retract_incident(db, actor, record.incident.id, reason="Fictional: test")
    return record


def _refused(db: Session, statement: str) -> None:
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), db.begin_nested():
        db.execute(sa.text(statement))


@pytest.mark.parametrize("table", TABLES)
def test_the_database_refuses_update_and_delete(db: Session, table: str) -> None:
    """On the suite's database (SQLite by default, PostgreSQL with its URL set)."""
    _record(db)
    _refused(db, CHANGES[table])
    _refused(db, f"DELETE FROM {table}")
    assert db.scalar(sa.select(sa.func.count()).select_from(IncidentRevision)) == 2


def test_postgres_refuses_update_delete_and_truncate(tmp_path: Path) -> None:
    """Always on PostgreSQL, whatever the suite runs on (skipped locally without a server,
    a failure on CI)."""
    with services.own_engine("postgresql", tmp_path, "incidents_guard") as engine:
        with session_factory(engine)() as db:
            record = _record(db)
            db.commit()
        for table in TABLES:
            for statement in (CHANGES[table], f"DELETE FROM {table}",
                              f"TRUNCATE {table} CASCADE"):
                with pytest.raises(sa.exc.DBAPIError, match="append-only"), \
                        engine.begin() as conn:
                    conn.execute(sa.text(statement))
        with engine.connect() as conn:
            revisions = conn.execute(sa.select(IncidentRevision.__table__)).all()
            assert [r.revision for r in sorted(revisions, key=lambda r: r.revision)] == [1, 2]
            assert conn.scalar(sa.select(sa.func.count()).select_from(
                IncidentRevisionCategory)) == 4
            assert conn.scalar(sa.select(Incident.__table__.c.id)) == record.incident.id


def test_no_code_path_updates_or_deletes_incident_rows() -> None:
    """The incident package issues no UPDATE or DELETE and never assigns to a saved row's
    columns outside sealing a new revision."""
    package = Path(service.__file__).parent
    for source in package.glob("*.py"):
        tree = ast.parse(source.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ("update", "delete"):
                raise AssertionError(f"{source.name}:{node.lineno} calls .{node.attr}")
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "execute":
                for arg in node.args:
                    text = ast.unparse(arg).upper()
                    assert "UPDATE " not in text and "DELETE " not in text, source.name
