"""The daily integrity check: every stored file decrypted and re-hashed, a hash_check custody
event each, supervisors alerted (by evidence id only) when a file no longer matches, purged
clients skipped; and the sweep that removes what a killed upload left in storage."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from app.clients import service as clients_service
from app.core.audit import AuditEvent
from app.db import utcnow
from app.evidence import service
from app.notifications import service as notifications
from app.notifications.models import Notification
from tests.consents.factories import make_client
from tests.evidence.conftest import jpeg, make_incident, stored_files, uploaded


@pytest.fixture
def tasks(bound_work, monkeypatch: pytest.MonkeyPatch):
    """The real task module, its units of work bound to the test's session."""
    from workers import tasks as module

    monkeypatch.setattr(module, "unit_of_work", bound_work)
    return module


def checks(db: Session, evidence_id: str) -> list[str]:
    return [e.outcome for e in service.custody_log(db, UUID(evidence_id))
            if e.action == "hash_check"]


def alerts(db: Session, evidence_id: str) -> list[Notification]:
    return list(db.scalars(sa.select(Notification).where(
        Notification.kind == service.INTEGRITY_ALERT,
        Notification.object_id == UUID(evidence_id))))


def alter_one_byte(path: os.PathLike[str], at: int) -> None:
    with open(path, "r+b") as handle:
        handle.seek(at)
        byte = handle.read(1)
        handle.seek(at)
        handle.write(bytes([byte[0] ^ 0x80]))


def test_the_daily_check_flags_a_file_altered_on_disk(client, agency, db, storage, tasks,
                                                      sent_tasks) -> None:
    intact = uploaded(client, agency, jpeg(300_000))
    altered = uploaded(client, agency, jpeg(1_500_000))
    # A client about to be erased, with evidence of their own.
    purged_client = UUID(make_client(db, agency.org, agency.users["advocate"]))
    purged_incident = make_incident(db, agency.org.id, purged_client, agency.users["advocate"])
    db.commit()
    purged = uploaded(client, agency, jpeg(), incident_id=purged_incident)
    clients_service.purge_client(db, agency.actor("supervisor"), purged_client)
    db.commit()
    key = service.storage_key(agency.org.id, UUID(altered["id"]))
    alter_one_byte(storage.root / key, 1_200_000)  # inside the second 1 MiB segment

    started = int(time.time())
    tasks.check_evidence_hashes(started)

    assert checks(db, intact["id"]) == ["intact"]
    assert checks(db, altered["id"]) == ["unreadable"]
    assert checks(db, purged["id"]) == []  # skipped, not alerted
    [alert] = alerts(db, altered["id"])
    assert alert.user_id == agency.users["supervisor"].id
    assert alert.object_type == "evidence"
    assert alerts(db, purged["id"]) == [] and alerts(db, intact["id"]) == []
    # The alert carries ids only; its text is fixed.
    assert "Fictional" not in notifications.message_for(alert)
    failure = db.scalar(sa.select(AuditEvent).where(AuditEvent.object_id == altered["id"],
                                                    AuditEvent.action
                                                    == "evidence.integrity_failed"))
    assert failure is not None and failure.outcome == "failure"
    assert failure.details == {"check": "unreadable"}
    event = service.custody_log(db, UUID(altered["id"]))[-1]
    assert (event.actor_type, event.actor_id, event.purpose) == ("system", None,
                                                                 "integrity_check")

    # The same run again (a redelivered task): nothing is checked or alerted twice.
    tasks.check_evidence_hashes(started)
    assert checks(db, altered["id"]) == ["unreadable"]
    assert len(alerts(db, altered["id"])) == 1

    # The next day: still broken, audited again, supervisors not told twice.
    tasks.check_evidence_hashes(started + 86_400)
    assert checks(db, altered["id"]) == ["unreadable", "unreadable"]
    assert checks(db, intact["id"]) == ["intact", "intact"]
    assert len(alerts(db, altered["id"])) == 1
    assert db.scalar(sa.select(sa.func.count()).select_from(AuditEvent).where(
        AuditEvent.object_id == altered["id"],
        AuditEvent.action == "evidence.integrity_failed")) == 2

    # The detail view shows the last check.
    detail = client.get(f"/api/v1/evidence/{altered['id']}",
                        headers=agency.headers("supervisor")).json()
    assert detail["last_hash_check"]["outcome"] == "unreadable"
    # One batch was enough (the uploads queued their previews, nothing else).
    assert {name for name, _ in sent_tasks} == {"evidence.make_preview"}


def test_batches_follow_one_another_with_ids_only(client, agency, db, tasks, sent_tasks,
                                                  monkeypatch) -> None:
    made = sorted(uploaded(client, agency, jpeg())["id"] for _ in range(3))
    assert sorted(args[0] for _, args in sent_tasks) == made  # each upload's preview
    sent_tasks.clear()
    monkeypatch.setattr(tasks, "EVIDENCE_CHECK_BATCH", 1)
    started = int(time.time())
    # Other tests' evidence may be in this database: follow the chain until it ends.
    args: list[Any] = [started]
    for _ in range(1000):
        tasks.check_evidence_hashes(*args)
        # (A checked image without a kept preview also gets its preview task.)
        following = [a for name, a in sent_tasks if name == tasks.EVIDENCE_HASH_CHECK_TASK]
        assert {name for name, _ in sent_tasks} <= {tasks.EVIDENCE_HASH_CHECK_TASK,
                                                    "evidence.make_preview"}
        sent_tasks.clear()
        if not following:
            break
        [args] = following
        assert args[0] == started and UUID(args[1])  # epoch seconds and an evidence id
    assert all(checks(db, evidence_id) == ["intact"] for evidence_id in made)


def test_a_file_that_opens_but_differs_is_a_mismatch(client, agency, db, storage) -> None:
    body = uploaded(client, agency, jpeg())
    stored = service.open_for_check(db, UUID(body["id"]))
    assert stored is not None
    assert service.hash_stored(stored, storage) == "intact"
    stored.evidence.sha256 = "0" * 64  # as if the recorded hash were another file's
    assert service.hash_stored(stored, storage) == "mismatch"


def test_a_missing_file_is_unreadable(client, agency, db, storage) -> None:
    body = uploaded(client, agency, jpeg())
    [path] = stored_files(storage, agency.org.id)
    path.unlink()
    stored = service.open_for_check(db, UUID(body["id"]))
    assert stored is not None
    assert service.hash_stored(stored, storage) == "unreadable"
    assert service.record_hash_check(db, UUID(body["id"]), "unreadable",
                                     since=utcnow() - timedelta(seconds=1))


def _age(path: os.PathLike[str], days: float) -> None:
    then = time.time() - days * 86_400
    os.utime(path, (then, then))


def test_the_sweep_removes_orphans_and_abandoned_writes_only(client, agency, db, storage,
                                                             tasks) -> None:
    kept = uploaded(client, agency, jpeg())
    [kept_path] = stored_files(storage, agency.org.id)
    orphan_key = service.storage_key(agency.org.id, uuid4())
    young_key = service.storage_key(agency.org.id, uuid4())
    for key in (orphan_key, young_key):
        with storage.create(key) as out:
            out.write(b"ciphertext of an upload whose row never committed")
    abandoned = storage.root / "evidence" / str(agency.org.id) / ".incomplete-x.0123456789abcdef"
    abandoned.write_bytes(b"half an upload")
    for path in (kept_path, storage.root / orphan_key, abandoned):
        _age(path, 2)

    removed = tasks.sweep_evidence_storage()

    assert removed["orphans_removed"] >= 1 and removed["incomplete_removed"] >= 1
    assert not storage.exists(orphan_key) and not abandoned.exists()
    assert storage.exists(young_key)  # an upload may still be committing it
    assert kept_path.exists()
    response = client.get(f"/api/v1/evidence/{kept['id']}/content",
                          headers=agency.headers("advocate"))
    assert response.status_code == 200


def test_export_is_a_custody_event(client, agency, db) -> None:
    body = uploaded(client, agency, jpeg())
    service.record_export(db, agency.actor("supervisor"), UUID(body["id"]),
                          purpose="court_submission")
    db.commit()
    last = service.custody_log(db, UUID(body["id"]))[-1]
    assert (last.action, last.purpose) == ("export", "court_submission")
    assert db.scalar(sa.select(AuditEvent.action).where(
        AuditEvent.object_id == body["id"]).order_by(AuditEvent.seq.desc()).limit(1)) \
        == "evidence.exported"
    with pytest.raises(Exception, match="No such evidence"):
        service.record_export(db, agency.actor("colleague"), UUID(body["id"]))

