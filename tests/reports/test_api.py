"""Requesting a report, its progress, downloading it, expiry, and every way a request or a
build is refused or fails (failure cases first)."""

from __future__ import annotations

import os
from datetime import timedelta
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlmodel import Session

from app.clients.models import ClientAssignment
from app.core.audit import AuditEvent
from app.db import utcnow
from app.evidence import service as evidence_service
from app.evidence.models import Evidence
from app.reports import service
from app.reports.models import Report
from tests.reports.conftest import CHILD_NAME, CLIENT_ADDRESS, Case


def report_count(db: Session) -> int:
    return db.scalar(sa.select(sa.func.count()).select_from(Report)) or 0


def field_errors(response) -> list[str]:
    return [e["field"] for e in response.json()["errors"]]


# --- refused requests leave nothing -----------------------------------------------------------


def test_refused_requests_say_which_field_and_keep_nothing(client, case: Case, db: Session,
                                                           sent_tasks) -> None:
    before = report_count(db)
    cases = [
        (case.body(unexpected="field"), "unexpected"),
        (case.body(period={"start": "2026-03-01", "end": "2026-01-01"}), "period"),
        (case.body(incident_ids=[str(case.outside_period)]), "incident_ids.0"),
        (case.body(incident_ids=[str(case.incidents[0]), str(uuid4())]), "incident_ids.1"),
        (case.body(evidence_ids=[str(case.other_evidence)]), "evidence_ids.0"),
        (case.body(incident_ids=[str(case.incidents[1])],
                   evidence_ids=[str(case.evidence["photo"])]), "evidence_ids.0"),
        (case.body(incident_ids=[str(case.incidents[0])] * 2), "body"),
        (case.body(incident_ids=[]), "incident_ids"),
        (case.body(redaction_profile="everything"), "redaction_profile"),
        (case.body(cover={"parties": [{"role": "Petitioner", "name": "Fictional",
                                       "from_record": "client_legal_name"}]}),
         "cover.parties.0"),
        (case.body(period={"start": "2026-01-01", "end": "2099-01-01"}), "period.end"),
    ]
    for body, field in cases:
        response = client.post("/api/v1/reports", json=body, headers=case.headers())
        assert response.status_code == 422, (field, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert any(f == field or f.startswith(field) for f in field_errors(response)), \
            (field, response.json())
        # Nothing typed is echoed back.
        assert "Fictional County Family Court" not in response.text
    assert report_count(db) == before
    assert sent_tasks == []


def test_a_client_out_of_reach_is_not_found(client, case: Case) -> None:
    body = case.body(client_id=str(case.other_client_id), incident_ids=[str(uuid4())],
                     evidence_ids=[])
    assert client.post("/api/v1/reports", json=body,
                       headers=case.headers("advocate")).status_code == 404
    assert client.post("/api/v1/reports", json=case.body(),
                       headers=case.headers("stranger")).status_code == 404
    assert client.post("/api/v1/reports", json=case.body(),
                       headers=case.headers("admin")).status_code == 404
    assert client.post("/api/v1/reports", json=case.body(),
                       headers=case.headers("auditor")).status_code == 403


# --- requested, built, downloaded --------------------------------------------------------------


def test_a_request_is_queued_and_sent_to_a_worker_by_id_only(client, case: Case, db: Session,
                                                             sent_tasks) -> None:
    response = client.post("/api/v1/reports", json=case.body(), headers=case.headers())
    assert response.status_code == 202, response.text
    body = response.json()
    assert response.headers["location"] == f"/api/v1/reports/{body['id']}"
    assert (body["status"], body["percent"], body["downloads"]) == ("queued", 0, {})
    assert sent_tasks == [("reports.build", [body["id"]])]
    stored = db.get(Report, UUID(body["id"]))
    assert stored is not None and CLIENT_ADDRESS not in stored.parameters
    assert stored.parameters.startswith("c1.")  # encrypted under the client's key
    event = db.scalar(sa.select(AuditEvent).where(AuditEvent.action == "report.requested",
                                                  AuditEvent.object_id == body["id"]))
    assert event is not None and CHILD_NAME not in str(event.details)

    status = client.get(response.headers["location"], headers=case.headers()).json()
    assert status["status"] == "queued"
    early = client.get(f"/api/v1/reports/{body['id']}/download", headers=case.headers())
    assert early.status_code == 409
    assert early.headers["content-type"].startswith("application/problem+json")


def test_reach_of_a_report_is_its_clients(client, case: Case, sent_tasks) -> None:
    report_id = client.post("/api/v1/reports", json=case.body(),
                            headers=case.headers()).json()["id"]
    for who, status in (("advocate", 200), ("supervisor", 200), ("colleague", 404),
                        ("stranger", 404), ("admin", 404), ("auditor", 403)):
        assert client.get(f"/api/v1/reports/{report_id}",
                          headers=case.headers(who)).status_code == status, who
    assert client.get(f"/api/v1/reports/{uuid4()}", headers=case.headers()).status_code == 404


def test_a_built_report_is_downloaded_audited_every_time(client, case: Case, db: Session,
                                                         sent_tasks, run_build) -> None:
    report_id = client.post("/api/v1/reports", json=case.body(),
                            headers=case.headers()).json()["id"]
    assert run_build(report_id) == "done"
    assert run_build(report_id) == "not_claimed"  # a duplicate message changes nothing
    status = client.get(f"/api/v1/reports/{report_id}", headers=case.headers()).json()
    assert (status["status"], status["percent"], status["step"]) == ("done", 100, "done")
    assert status["attempts"] == 1 and status["failure_code"] is None
    expires = status["expires_at"]
    assert abs((utcnow() + timedelta(hours=72)).timestamp()
               - __import__("datetime").datetime.fromisoformat(expires).timestamp()) < 120
    assert set(status["downloads"]) == {"pdf", "bundle", "manifest"}

    pdf = client.get(status["downloads"]["pdf"], headers=case.headers())
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.headers["content-disposition"] == f'attachment; filename="report-{report_id}.pdf"'
    assert pdf.headers["cache-control"] == "no-store"
    assert pdf.content.startswith(b"%PDF-")
    import hashlib

    assert hashlib.sha256(pdf.content).hexdigest() == status["pdf_sha256"]
    bundle = client.get(status["downloads"]["bundle"], headers=case.headers("supervisor"))
    assert bundle.status_code == 200 and bundle.content.startswith(b"PK\x03\x04")
    assert hashlib.sha256(bundle.content).hexdigest() == status["bundle_sha256"]
    manifest = client.get(status["downloads"]["manifest"], headers=case.headers())
    assert hashlib.sha256(manifest.content).hexdigest() == status["manifest_sha256"]
    assert client.get(status["downloads"]["pdf"],
                      headers=case.headers("colleague")).status_code == 404

    downloads = list(db.scalars(sa.select(AuditEvent).where(
        AuditEvent.action == "report.downloaded", AuditEvent.object_id == report_id)))
    assert [e.details["part"] for e in downloads] == ["pdf", "bundle", "manifest"]
    # Each exhibit's export is in its chain of custody.
    for evidence_id in case.evidence.values():
        actions = [c.action for c in evidence_service.custody_log(db, evidence_id)]
        assert actions.count("export") == 1


def test_the_stored_report_is_encrypted(client, case: Case, db: Session, sent_tasks,
                                        run_build, storage) -> None:
    report_id = client.post("/api/v1/reports", json=case.body(redaction_profile="none"),
                            headers=case.headers()).json()["id"]
    assert run_build(report_id) == "done"
    report = db.get(Report, UUID(report_id))
    assert report is not None and report.pdf_key and report.bundle_key
    for key in (report.pdf_key, report.bundle_key):
        with storage.open(key) as raw:
            stored = raw.read()
        assert b"%PDF" not in stored and b"PK\x03\x04" not in stored[:4]
        assert CLIENT_ADDRESS.encode() not in stored


def test_an_expired_report_answers_410_and_its_files_are_deleted(
        client, case: Case, db: Session, sent_tasks, run_build, storage) -> None:
    report_id = client.post("/api/v1/reports", json=case.body(),
                            headers=case.headers()).json()["id"]
    assert run_build(report_id) == "done"
    report = db.get(Report, UUID(report_id))
    assert report is not None
    keys = [report.pdf_key, report.bundle_key]
    report.expires_at = utcnow() - timedelta(seconds=1)
    db.commit()
    gone = client.get(f"/api/v1/reports/{report_id}/download", headers=case.headers())
    assert gone.status_code == 410
    assert gone.json()["type"] == "urn:advocase:problem:report-expired"

    assert service.expire_reports(db, storage) >= 1
    db.commit()
    assert all(not storage.exists(key) for key in keys)
    status = client.get(f"/api/v1/reports/{report_id}", headers=case.headers()).json()
    assert status["status"] == "expired" and status["pdf_sha256"]  # kept for verification
    assert client.get(f"/api/v1/reports/{report_id}/download",
                      headers=case.headers()).status_code == 410


# --- failed builds say why, without personal data ----------------------------------------------


def test_an_altered_exhibit_fails_the_build_and_says_which(client, case: Case, db: Session,
                                                           sent_tasks, run_build,
                                                           storage) -> None:
    photo = db.get(Evidence, case.evidence["photo"])
    assert photo is not None
    path = storage.root / photo.storage_key  # type: ignore[attr-defined]
    original = path.read_bytes()
    try:
        altered = bytearray(original)
        altered[200] ^= 0x01
        os.chmod(path, 0o600)
        path.write_bytes(bytes(altered))
        report_id = client.post("/api/v1/reports", json=case.body(),
                                headers=case.headers()).json()["id"]
        assert run_build(report_id) == "failed"
    finally:
        path.write_bytes(original)
    status = client.get(f"/api/v1/reports/{report_id}", headers=case.headers()).json()
    assert status["status"] == "failed" and status["failure_code"] == "exhibit_unreadable"
    assert "Exhibit 1" in status["failure_reason"]
    assert str(photo.id) in status["failure_reason"]
    assert "forearm" not in status["failure_reason"]  # the description stays out
    report = db.get(Report, UUID(report_id))
    assert report is not None and report.pdf_key is None
    assert not list(storage.objects(f"reports/{case.org.id}/"))
    assert client.get(f"/api/v1/reports/{report_id}/download",
                      headers=case.headers()).status_code == 409


def test_a_requester_who_lost_the_client_gets_a_failed_build(client, case: Case, db: Session,
                                                             sent_tasks, run_build) -> None:
    report_id = client.post("/api/v1/reports", json=case.body(),
                            headers=case.headers()).json()["id"]
    db.execute(sa.delete(ClientAssignment).where(ClientAssignment.client_id == case.client_id))
    db.commit()
    assert run_build(report_id) == "failed"
    report = db.get(Report, UUID(report_id))
    assert report is not None and report.failure_code == "out_of_reach"


# --- claims and leases ----------------------------------------------------------------------


def test_a_lapsed_lease_is_taken_again_and_the_last_attempt_gives_up(
        client, case: Case, db: Session, sent_tasks) -> None:
    report_id = UUID(client.post("/api/v1/reports", json=case.body(),
                                 headers=case.headers()).json()["id"])
    first = service.claim_report(db, report_id)
    assert first is not None and first.attempt == 1
    db.commit()
    assert service.claim_report(db, report_id) is None  # held: nobody else takes it
    assert report_id not in service.due_report_ids(db)

    later = utcnow() + service.LEASE + timedelta(seconds=1)
    assert report_id in service.due_report_ids(db, now=later)
    second = service.claim_report(db, report_id, now=later)
    assert second is not None and second.attempt == 2
    # The first worker's claim is gone: its progress and its end change nothing.
    assert not service.record_progress(db, first, 50, "rendering_pdf")
    assert not service.fail_report(db, first, "internal_error", "lost")
    assert service.record_progress(db, second, 40, "checking_exhibits")
    db.commit()
    third = service.claim_report(db, report_id, now=later + service.LEASE * 2)
    assert third is not None and third.attempt == 3
    db.commit()
    assert service.claim_report(db, report_id, now=later + service.LEASE * 4) is None
    db.commit()
    report = db.get(Report, report_id)
    assert report is not None
    db.refresh(report)
    assert (report.status, report.failure_code) == ("failed", "worker_lost")


def test_the_storage_sweep_removes_files_no_report_names(case: Case, db: Session,
                                                         storage) -> None:
    orphan = f"reports/{case.org.id}/ab/{uuid4()}/attempt-1.zip"
    with storage.create(orphan) as out:
        out.write(b"left by a killed build")
    assert service.sweep_storage(db, storage, older_than=timedelta(0))["orphans_removed"] >= 1
    assert not storage.exists(orphan)
