"""The supervisor's caseload (the whole agency, urgent first, newest first) is read from
the partial index ``ix_client_caseload`` in its own order: the first page reads a page of
rows instead of sorting the agency."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import timedelta
from uuid import UUID, uuid4

import pytest
import sqlalchemy as sa

from app.clients import service as clients
from app.clients.models import Client
from app.core.access import Actor
from app.db import create_db_engine, session_factory, utcnow
from tests.support import services
from tests.support.identity import make_org, make_user

AGENCY_CLIENTS = 3_000
INDEX = "ix_client_caseload"


@pytest.fixture(params=["sqlite", "postgresql"])
def caseload_db(request, tmp_path) -> Iterator[str]:
    """A migrated database of its own, filled and analysed (plans depend on statistics)."""
    with services.own_database(request.param, tmp_path, "caseload_index") as url:
        yield url


def fill(url: str) -> Actor:
    """Two fictional agencies of 3,000 clients each (5 % urgent, some purged); returns the
    first one's supervisor."""
    engine = create_db_engine(url)
    rng = random.Random(5)  # noqa: S311 - fictional data
    try:
        with session_factory(engine)() as db:
            orgs = [make_org(db), make_org(db)]
            supervisor = make_user(db, orgs[0], "supervisor")
            now = utcnow()
            rows = [{"id": uuid4(), "org_id": org.id, "case_number": f"2026-{n:06d}",
                     "status": "active", "urgent": rng.random() < 0.05,
                     "created_at": now - timedelta(minutes=n),
                     "updated_at": now - timedelta(minutes=n),
                     "purged_at": now if n % 50 == 0 else None}
                    for org in orgs for n in range(AGENCY_CLIENTS)]
            db.execute(sa.insert(Client.__table__), rows)
            db.commit()
            actor = Actor(kind="user", id=supervisor.id, org_id=orgs[0].id, role="supervisor")
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE")
        return actor
    finally:
        engine.dispose()


def first_page(actor: Actor) -> sa.Select:
    """The query the API's caseload runs for its first page of 50 (one more, for the cursor)."""
    return clients.readable_clients(actor).order_by(
        Client.urgent.desc(), Client.created_at.desc(), Client.id).limit(51)


def plan(url: str, query: sa.Select) -> str:
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                compiled = query.compile(dialect=engine.dialect)
                lines = conn.exec_driver_sql("EXPLAIN (ANALYZE, COSTS OFF) " + str(compiled),
                                             compiled.params).scalars()
            else:
                literal = query.compile(dialect=engine.dialect,
                                        compile_kwargs={"literal_binds": True})
                lines = (row[-1] for row in conn.exec_driver_sql(
                    "EXPLAIN QUERY PLAN " + str(literal)))
            return "\n".join(lines)
    finally:
        engine.dispose()


def test_the_supervisors_first_page_walks_the_caseload_index(caseload_db: str) -> None:
    supervisor = fill(caseload_db)
    explained = plan(caseload_db, first_page(supervisor))
    assert INDEX in explained, explained
    # No sort of the agency: the index is already in the page's order.
    if caseload_db.startswith("postgresql"):
        assert "Sort" not in explained, explained
        assert "rows=51 loops=1" in explained, explained
    else:
        assert "TEMP B-TREE" not in explained, explained
    # And the page is the right one: urgent first, newest first, no purged client.
    engine = create_db_engine(caseload_db)
    try:
        with session_factory(engine)() as db:
            page = list(db.scalars(first_page(supervisor)))
            expected = sorted(
                db.scalars(sa.select(Client).where(Client.org_id == supervisor.org_id,
                                                   Client.purged_at.is_(None))),
                key=lambda c: (not c.urgent, -c.created_at.timestamp(), str(c.id)))[:51]
            assert [c.id for c in page] == [c.id for c in expected]
            assert all(isinstance(c.id, UUID) and c.purged_at is None for c in page)
    finally:
        engine.dispose()
