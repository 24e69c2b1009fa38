"""The hash-chained audit log: tampering of any kind is found and named."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from app.cli import alembic_config
from app.core import audit
from app.db import create_db_engine, session_factory, unit_of_work
from tests.conftest import WORKER
from tests.support import services
from tests.support.identity import bearer, make_org, make_user, staff_token

PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["sqlite", "postgresql"])
def audit_db(request, tmp_path) -> Iterator[str]:
    """A migrated database of its own: these tests commit and then tamper for real."""
    with services.own_database(request.param, tmp_path, "audit") as url:
        yield url


def write_events(url: str, count: int = 5) -> list[audit.AuditEvent]:
    engine = create_db_engine(url)
    try:
        with unit_of_work(engine) as db:
            org = make_org(db, "chain-org")
            user = make_user(db, org, "advocate")
            events = [audit.append(db, action="test.event", org_id=org.id, actor_type="user",
                                   actor_id=str(user.id), object_type="thing",
                                   object_id=str(i), details={"n": i}) for i in range(count)]
            db.expunge_all()
        return events
    finally:
        engine.dispose()


def verify(url: str) -> audit.VerifyReport:
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            return audit.verify_all(conn)
    finally:
        engine.dispose()


def raw(url: str, statement: str, **params: object) -> None:
    """Tamper as someone with database access would, around the application."""
    engine = create_db_engine(url)
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                # A superuser can switch the guard off; the chain must still tell.
                conn.exec_driver_sql("ALTER TABLE audit_event DISABLE TRIGGER USER")
            conn.execute(sa.text(statement), params)
            if engine.dialect.name == "postgresql":
                conn.exec_driver_sql("ALTER TABLE audit_event ENABLE TRIGGER USER")
    finally:
        engine.dispose()


def cli_verify(url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    from app.settings import get_settings
    from tests.test_cli import embedded_env

    env = embedded_env(tmp_path) | {
        "ADVOCASE_DATABASE_URL": url,
        # Anchors are signed with the server key: the CLI must use the same secret.
        "ADVOCASE_SECRET_KEY": get_settings().secret_key_value(),
    }
    return subprocess.run([sys.executable, "-m", "app.cli", "audit", "verify", "--json"],  # noqa: S603
                          cwd=PROJECT, env=env, capture_output=True, text=True, timeout=60)


def test_an_intact_chain_verifies(audit_db: str, tmp_path: Path) -> None:
    write_events(audit_db)
    report = verify(audit_db)
    assert report.ok, report.broken
    assert report.events >= 5
    result = cli_verify(audit_db, tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["ok"] is True


def test_an_edited_event_is_named(audit_db: str, tmp_path: Path) -> None:
    events = write_events(audit_db)
    target = events[2]
    raw(audit_db, "UPDATE audit_event SET action = 'test.innocent' WHERE id = :id",
        id=target.id.hex if audit_db.startswith("sqlite") else str(target.id))
    report = verify(audit_db)
    assert not report.ok
    assert report.broken.event_id == target.id
    assert report.broken.reason == "content altered"
    result = cli_verify(audit_db, tmp_path)
    assert result.returncode == 1
    assert json.loads(result.stdout)["broken"]["event_id"] == str(target.id)


def test_a_deleted_event_is_found(audit_db: str) -> None:
    events = write_events(audit_db)
    raw(audit_db, "DELETE FROM audit_event WHERE id = :id",
        id=events[1].id.hex if audit_db.startswith("sqlite") else str(events[1].id))
    report = verify(audit_db)
    assert not report.ok
    assert report.broken.seq == events[1].seq


def test_a_truncated_tail_is_found_through_the_signed_anchor(audit_db: str) -> None:
    events = write_events(audit_db)
    engine = create_db_engine(audit_db)
    with unit_of_work(engine) as db:
        assert audit.anchor_heads(db)
    engine.dispose()
    last = events[-1]
    chain = last.chain_id.hex if audit_db.startswith("sqlite") else str(last.chain_id)
    raw(audit_db, "DELETE FROM audit_event WHERE chain_id = :c AND seq >= :s", c=chain,
        s=last.seq - 1)
    # A careful attacker also rewinds the head row to match.
    prev = events[-3]
    raw(audit_db, "UPDATE audit_chain_head SET seq = :s, digest = :d WHERE chain_id = :c",
        s=prev.seq, d=prev.digest, c=chain)
    report = verify(audit_db)
    assert not report.ok
    assert "anchored" in report.broken.reason


def test_a_forged_anchor_is_found(audit_db: str) -> None:
    write_events(audit_db)
    engine = create_db_engine(audit_db)
    with unit_of_work(engine) as db:
        audit.anchor_heads(db)
    engine.dispose()
    raw(audit_db, "UPDATE audit_anchor SET seq = seq + 1")
    report = verify(audit_db)
    assert not report.ok and "signature" in report.broken.reason


def test_postgres_refuses_update_delete_and_truncate() -> None:
    services.require_postgres()
    url = services.worker_database_url(services.POSTGRES_URL, WORKER, "_audit_guard")
    services.recreate_postgres_database(url)
    try:
        command.upgrade(alembic_config(url), "head")
        write_events(url, 2)
        engine = create_db_engine(url)
        for statement in ("UPDATE audit_event SET action = 'x'", "DELETE FROM audit_event",
                          "TRUNCATE audit_event"):
            with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as conn:
                conn.execute(sa.text(statement))
        engine.dispose()
        assert verify(url).ok
    finally:
        services.drop_postgres_database(url)


def test_concurrent_appends_keep_one_unbroken_chain(audit_db: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    events = write_events(audit_db, 1)
    org_id = events[0].org_id
    engine = create_db_engine(audit_db)
    factory = session_factory(engine)

    def append_some(_: int) -> None:
        for _ in range(10):
            with factory() as db:
                audit.append(db, action="test.concurrent", org_id=org_id)
                db.commit()

    try:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(append_some, range(4)))
    finally:
        engine.dispose()
    report = verify(audit_db)
    assert report.ok, report.broken
    assert report.events >= 41


def test_audit_details_refuse_free_text() -> None:
    with pytest.raises(ValueError):
        audit._sanitise_details({"note": "x" * 201})
    with pytest.raises(TypeError):
        audit._sanitise_details({"nested": {"name": "Fictional"}})


def test_audit_events_api_is_for_auditors_and_supervisors_of_the_org(client, db) -> None:
    org, other = make_org(db), make_org(db)
    auditor = make_user(db, org, "auditor")
    advocate = make_user(db, org, "advocate")
    outsider = make_user(db, other, "supervisor")
    tokens = {u.role + str(u.org_id == org.id): staff_token(db, u)
              for u in (auditor, advocate, outsider)}
    db.commit()
    assert client.get("/api/v1/audit-events",
                      headers=bearer(tokens["advocateTrue"])).status_code == 403
    page = client.get("/api/v1/audit-events", params={"action": "user.created", "limit": 1},
                      headers=bearer(tokens["auditorTrue"]))
    assert page.status_code == 200
    body = page.json()
    assert len(body["items"]) == 1 and body["next_cursor"]
    assert body["items"][0]["action"] == "user.created"
    rest = client.get("/api/v1/audit-events",
                      params={"action": "user.created", "cursor": body["next_cursor"]},
                      headers=bearer(tokens["auditorTrue"])).json()["items"]
    seen = {e["object_id"] for e in [*body["items"], *rest]}
    assert seen == {str(auditor.id), str(advocate.id)}
    theirs = client.get("/api/v1/audit-events", headers=bearer(tokens["supervisorFalse"]))
    assert str(auditor.id) not in theirs.text
    naive = client.get("/api/v1/audit-events", params={"since": "2026-01-01T00:00:00"},
                       headers=bearer(tokens["auditorTrue"]))
    assert naive.status_code == 422


# --- when the chain head is locked -------------------------------------------------------


def _chain_events(url: str, chain_id) -> list[tuple[int, str]]:
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            table = audit.AuditEvent.__table__
            return [tuple(row) for row in conn.execute(
                sa.select(table.c.seq, table.c.action).where(table.c.chain_id == chain_id)
                .order_by(table.c.seq))]
    finally:
        engine.dispose()


def test_slow_work_after_an_event_does_not_hold_up_the_agencys_other_requests(
        audit_db: str) -> None:
    """Two requests of one agency, each recording its event and then working on (a page
    being decrypted and rendered): neither waits for the other to commit, and the chain
    comes out whole."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    org_id = write_events(audit_db, 1)[0].org_id
    engine = create_db_engine(audit_db)
    first_recorded, second_recorded = threading.Event(), threading.Event()

    def first() -> bool:
        with unit_of_work(engine, reading=True) as db:
            audit.append(db, action="test.first", org_id=org_id)
            first_recorded.set()
            # The slow part of the request: it lasts until the other request has
            # recorded its own event, which must not need this one's commit.
            return second_recorded.wait(timeout=10)

    def second() -> float:
        assert first_recorded.wait(timeout=10)
        started = time.monotonic()
        with unit_of_work(engine, reading=True) as db:
            audit.append(db, action="test.second", org_id=org_id)
            second_recorded.set()
        return time.monotonic() - started

    try:
        with ThreadPoolExecutor(2) as pool:
            slow, quick = pool.submit(first), pool.submit(second)
            assert slow.result(timeout=30), "the second request waited for the first's commit"
            assert quick.result(timeout=30) < 5
    finally:
        engine.dispose()
    report = verify(audit_db)
    assert report.ok, report.broken
    events = _chain_events(audit_db, org_id)
    assert {action for _, action in events[-2:]} == {"test.first", "test.second"}
    assert [seq for seq, _ in events] == list(range(1, len(events) + 1))


def test_an_event_commits_with_its_change_and_rolls_back_with_it(audit_db: str) -> None:
    org_id = write_events(audit_db, 1)[0].org_id
    before = _chain_events(audit_db, org_id)
    engine = create_db_engine(audit_db)
    try:
        with pytest.raises(RuntimeError), unit_of_work(engine) as db:
            audit.append(db, action="test.rolled_back", org_id=org_id)
            raise RuntimeError("the change failed")
        with unit_of_work(engine) as db:
            kept = audit.append(db, action="test.kept", org_id=org_id)
            try:
                with db.begin_nested():
                    audit.append(db, action="test.savepoint_undone", org_id=org_id)
                    raise RuntimeError("a part of the work was undone")
            except RuntimeError:
                pass
            # Read back within the same transaction: the event is there already.
            seen = db.scalars(sa.select(audit.AuditEvent).where(
                audit.AuditEvent.id == kept.id)).one()
            assert seen.seq == kept.seq == len(before) + 1 and seen.digest == kept.digest
            after = audit.append(db, action="test.after_savepoint", org_id=org_id)
        with session_factory(engine)() as db:  # closed without committing
            audit.append(db, action="test.never_committed", org_id=org_id)
    finally:
        engine.dispose()
    assert _chain_events(audit_db, org_id) == [*before, (len(before) + 1, "test.kept"),
                                               (len(before) + 2, "test.after_savepoint")]
    assert after.prev_digest == kept.digest
    report = verify(audit_db)
    assert report.ok, report.broken


def test_values_that_look_like_the_seq_field_do_not_confuse_the_digest(audit_db: str) -> None:
    """The digest is prepared before the seq is known (outside the lock); text that reads
    like the seq key inside a value must not be taken for it."""
    org_id = write_events(audit_db, 1)[0].org_id
    engine = create_db_engine(audit_db)
    try:
        with unit_of_work(engine) as db:
            tricky = audit.append(db, action="test.tricky", org_id=org_id,
                                  object_type="thing", object_id='"seq":-1',
                                  details={"reason": 'x","seq":-1,"y', "n": -1})
    finally:
        engine.dispose()
    fields = {name: getattr(tricky, name) for name in audit._CANONICAL_FIELDS}
    assert tricky.digest == audit.compute_digest(tricky.prev_digest, fields)
    report = verify(audit_db)
    assert report.ok, report.broken


def test_any_text_in_an_event_gives_the_digest_the_verifier_recomputes(audit_db: str) -> None:
    """On PostgreSQL the database computes the digests (advocase_audit_append) from the
    canonical JSON made in Python: text outside ASCII, quotes, backslashes and control
    characters must give exactly what compute_digest and the verifier give."""
    org_id = write_events(audit_db, 1)[0].org_id
    texts = ["Zoë Ångström 東京 🙂", 'a "quoted" \\ back\\slash', "line\nbreak\ttab\x01\x7f",
             "\u2028\u2029 separators", "€" * 60]
    engine = create_db_engine(audit_db)
    try:
        with unit_of_work(engine) as db:
            events = [audit.append(db, action="test.text", org_id=org_id, object_type="thing",
                                   object_id=str(n), details={"reason": text, "n": n,
                                                              "flag": n % 2 == 0})
                      for n, text in enumerate(texts)]
    finally:
        engine.dispose()
    for event in events:
        fields = {name: getattr(event, name) for name in audit._CANONICAL_FIELDS}
        assert event.digest == audit.compute_digest(event.prev_digest, fields)
    seqs = [event.seq for event in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(texts)))
    report = verify(audit_db)
    assert report.ok, report.broken


def test_events_of_several_chains_in_one_transaction_each_join_their_own(
        audit_db: str) -> None:
    first = write_events(audit_db, 2)[0].org_id
    statements: list[str] = []

    def seen(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    engine = create_db_engine(audit_db)
    try:
        with unit_of_work(engine) as db:
            other = make_org(db, "second-chain-org").id
        with unit_of_work(engine) as db:
            audit.append(db, action="test.one", org_id=first)
            audit.append(db, action="test.two", org_id=other)
            audit.append(db, action="test.system")  # the system chain
            audit.append(db, action="test.three", org_id=first)
            sa.event.listen(engine, "before_cursor_execute", seen)  # the commit's statements
        sa.event.remove(engine, "before_cursor_execute", seen)
    finally:
        engine.dispose()
    assert [action for _, action in _chain_events(audit_db, first)][-2:] == \
        ["test.one", "test.three"]
    assert [action for _, action in _chain_events(audit_db, other)][-1] == "test.two"
    appends = [s for s in statements if "audit" in s]
    if audit_db.startswith("postgresql"):
        # One statement per chain under the lock, in the chains' fixed order.
        assert len(appends) == 3 and all("advocase_audit_append" in s for s in appends)
    report = verify(audit_db)
    assert report.ok, report.broken
