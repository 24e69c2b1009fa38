"""Report pages through the real app (no browser): the request form and its errors, reach,
CSRF, the progress endpoint, audited downloads and the verify page."""

from __future__ import annotations

import hashlib
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session

from app.core.audit import AuditEvent
from app.reports.models import Report
from tests.dashboard.helpers import csrf_from, sign_in
from tests.reports import conftest as reports
from tests.reports.conftest import PERIOD, Case

# The report tests' fixtures: the seeded fictional case, the captured task messages, a
# build run in this process as the worker runs it.
case, run_build, storage = reports.case, reports.run_build, reports.storage


def _form(case: Case, token: str, **changes: Any) -> dict[str, Any]:
    """The request form as a browser posts it (every input, repeated tick boxes)."""
    fields: dict[str, Any] = {
        "csrf_token": token, "period.start": PERIOD["start"], "period.end": PERIOD["end"],
        "incident_ids": [str(i) for i in case.incidents],
        "evidence_ids": [str(e) for e in case.evidence.values()],
        "redaction_profile": "standard", "also_hide": ["witness_names"],
        "cover.court": "Fictional County Family Court", "cover.case_number": "FC-2026-0099",
        "cover.prepared_by": "Fictional Advocate", "cover.parties.0.role": "Petitioner",
        "cover.parties.0.from_record": "client_legal_name", "cover.parties.0.name": "",
        "cover.parties.1.role": "", "cover.parties.1.from_record": "",
        "cover.parties.1.name": "", "include_original_files": "on"}
    fields.update(changes)
    return {name: value for name, value in fields.items() if value != []}


def _new(case: Case) -> str:
    return f"/dashboard/clients/{case.client_id}/reports/new"


def _reports(db: Session) -> int:
    return int(db.scalar(sa.select(sa.func.count()).select_from(Report)) or 0)


def _request(web: TestClient, case: Case, **changes: Any) -> Any:
    page = web.get(_new(case))
    assert page.status_code == 200
    return web.post(_new(case), data=_form(case, csrf_from(page.text), **changes))


def test_the_form_offers_the_clients_incidents_in_order_and_requests_a_report(
        web: TestClient, db: Session, case: Case, sent_tasks) -> None:
    sign_in(web, db, case.users["advocate"])
    client_page = web.get(f"/dashboard/clients/{case.client_id}")
    assert f'href="{_new(case)}"' in client_page.text
    assert "Prepare a court summary" in client_page.text
    page = web.get(_new(case))
    assert page.status_code == 200
    # Chronological: the outside-the-period incident of last year comes first.
    order = [case.outside_period, *case.incidents]
    positions = [page.text.index(f'value="{i}"') for i in order]
    assert positions == sorted(positions)
    for evidence_id in case.evidence.values():
        assert f'value="{evidence_id}"' in page.text
    assert "Court summary of" in page.text and "Rowan" not in page.text.split("<main")[0]

    response = web.post(_new(case), data=_form(case, csrf_from(page.text)))
    assert response.status_code == 303, response.text[:800]
    report = db.scalar(sa.select(Report).order_by(Report.requested_at.desc()))
    assert report is not None and report.client_id == case.client_id
    assert response.headers["location"] == f"/dashboard/reports/{report.id}"
    assert sent_tasks == [("reports.build", [str(report.id)])]

    shown = web.get(response.headers["location"])
    assert shown.status_code == 200
    assert '<progress id="report-bar" max="100" value="0">' in shown.text
    assert "report-progress.js" in shown.text
    assert "Reload to see how far it is" in shown.text
    progress = web.get(f"/dashboard/reports/{report.id}/progress")
    assert progress.headers["content-type"] == "application/json"
    assert progress.json() | {"step_label": ""} == {
        "status": "queued", "status_label": "Waiting for a worker", "percent": 0,
        "step": "queued", "step_label": "", "done": False, "failure_reason": None}
    listing = web.get("/dashboard/reports")
    assert f'href="/dashboard/reports/{report.id}"' in listing.text


def test_a_bad_form_is_shown_again_with_messages_by_field_and_nothing_is_queued(
        web: TestClient, db: Session, case: Case, sent_tasks) -> None:
    sign_in(web, db, case.users["advocate"])
    before = _reports(db)
    no_incident = _request(web, case, incident_ids=[], evidence_ids=[])
    assert no_incident.status_code == 422
    assert 'href="#incident_ids"' in no_incident.text
    backwards = _request(web, case, **{"period.start": "2026-03-31",
                                       "period.end": "2026-01-01"})
    assert backwards.status_code == 422
    assert "the period ends before it starts" in backwards.text
    half_party = _request(web, case, **{"cover.parties.1.role": "Respondent"})
    assert half_party.status_code == 422
    assert 'href="#cover.parties.1.role"' in half_party.text
    assert "give either name or from_record" in half_party.text
    unknown_profile = _request(web, case, redaction_profile="everything")
    assert unknown_profile.status_code == 422 and 'href="#redaction_profile"' in \
        unknown_profile.text
    # The service's refusals land on the form too: an incident outside the period.
    outside = _request(web, case, incident_ids=[str(case.outside_period)], evidence_ids=[])
    assert outside.status_code == 422
    assert 'href="#incident_ids"' in outside.text
    assert "did not happen within the period" in outside.text
    # What was typed is shown again (the court stays filled in).
    assert 'value="Fictional County Family Court"' in outside.text
    assert _reports(db) == before
    assert sent_tasks == []


def test_a_form_without_its_csrf_token_is_refused(web: TestClient, db: Session, case: Case,
                                                  sent_tasks) -> None:
    sign_in(web, db, case.users["advocate"])
    before = _reports(db)
    response = web.post(_new(case), data=_form(case, "not-the-token"))
    assert response.status_code == 403
    verify = web.post("/dashboard/reports/verify", data={"csrf_token": "nope"},
                      files={"file": ("report.pdf", b"%PDF-1.7 fictional", "application/pdf")})
    assert verify.status_code == 403
    assert _reports(db) == before and sent_tasks == []


def test_another_advocates_client_and_another_agencys_report_are_not_found(
        web: TestClient, db: Session, case: Case, sent_tasks) -> None:
    sign_in(web, db, case.users["colleague"])
    assert web.get(_new(case)).status_code == 404
    token = csrf_from(web.get("/dashboard/reports").text)
    refused = web.post(_new(case), data=_form(case, token))
    assert refused.status_code == 404
    assert "There is nothing at this address." in refused.text

    web.cookies.clear()
    sign_in(web, db, case.users["advocate"])
    created = _request(web, case)
    report_id = created.headers["location"].rsplit("/", 1)[1]
    web.cookies.clear()
    for who in ("colleague", "stranger"):
        sign_in(web, db, case.users[who])
        for suffix in ("", "/progress", "/download?part=pdf"):
            response = web.get(f"/dashboard/reports/{report_id}{suffix}")
            assert response.status_code == 404, (who, suffix)
        assert f"/dashboard/reports/{report_id}" not in web.get("/dashboard/reports").text
        web.cookies.clear()
    assert len(sent_tasks) == 1


def test_downloads_are_audited_and_the_bundle_verifies_on_the_verify_page(
        web: TestClient, db: Session, case: Case, sent_tasks, run_build) -> None:
    sign_in(web, db, case.users["advocate"])
    report_id = _request(web, case).headers["location"].rsplit("/", 1)[1]
    early = web.get(f"/dashboard/reports/{report_id}/download?part=pdf")
    assert early.status_code == 409
    assert run_build(report_id) == "done"
    page = web.get(f"/dashboard/reports/{report_id}")
    assert 'value="100"' in page.text
    for part in ("pdf", "bundle", "manifest"):
        assert f'href="/dashboard/reports/{report_id}/download?part={part}"' in page.text
    assert web.get(f"/dashboard/reports/{report_id}/progress").json()["done"] is True

    pdf = web.get(f"/dashboard/reports/{report_id}/download?part=pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.headers["content-security-policy"].startswith("default-src 'none'; sandbox")
    bundle = web.get(f"/dashboard/reports/{report_id}/download?part=bundle")
    assert bundle.status_code == 200 and bundle.content.startswith(b"PK\x03\x04")
    report = db.get(Report, UUID(report_id))
    db.refresh(report)
    assert hashlib.sha256(pdf.content).hexdigest() == report.pdf_sha256
    downloads = list(db.scalars(sa.select(AuditEvent).where(
        AuditEvent.action == "report.downloaded",
        AuditEvent.object_id == report_id)))
    assert [e.details["part"] for e in downloads] == ["pdf", "bundle"]
    assert all(e.actor_id == str(case.users["advocate"].id) for e in downloads)

    token = csrf_from(web.get("/dashboard/reports/verify").text)
    checked = web.post("/dashboard/reports/verify", data={"csrf_token": token},
                       files={"file": ("bundle.zip", bundle.content, "application/zip")})
    assert checked.status_code == 200
    assert "Verified: this is exactly what advocase produced" in checked.text
    assert "and every exhibit matches" in checked.text
    altered = bytearray(pdf.content)
    altered[len(altered) // 2] ^= 0x01
    failed = web.post("/dashboard/reports/verify", data={"csrf_token": token},
                      files={"file": ("report.pdf", bytes(altered), "application/pdf")})
    assert failed.status_code == 200
    assert "Not verified" in failed.text
    verified = list(db.scalars(sa.select(AuditEvent).where(
        AuditEvent.action == "report.verified")))
    assert [e.outcome for e in verified] == ["success", "failure"]
    empty = web.post("/dashboard/reports/verify", data={"csrf_token": token})
    assert empty.status_code == 422 and 'href="#file"' in empty.text


def test_a_failed_and_an_expired_report_say_so(web: TestClient, db: Session, case: Case,
                                               sent_tasks) -> None:
    sign_in(web, db, case.users["advocate"])
    failed_id = UUID(_request(web, case).headers["location"].rsplit("/", 1)[1])
    expired_id = UUID(_request(web, case).headers["location"].rsplit("/", 1)[1])
    failed, expired = db.get(Report, failed_id), db.get(Report, expired_id)
    assert failed is not None and expired is not None
    failed.status, failed.step, failed.failure_code = "failed", "failed", "exhibit_mismatch"
    failed.failure_detail = "Exhibit 2 no longer matches its SHA-256 at upload."
    expired.status, expired.step = "expired", "expired"
    db.commit()
    page = web.get(f"/dashboard/reports/{failed_id}")
    assert "Exhibit 2 no longer matches its SHA-256 at upload." in page.text
    assert "download?part=" not in page.text
    progress = web.get(f"/dashboard/reports/{failed_id}/progress").json()
    assert (progress["status"], progress["done"]) == ("failed", True)
    assert progress["failure_reason"].startswith("Exhibit 2")
    gone = web.get(f"/dashboard/reports/{expired_id}")
    assert "This report has expired" in gone.text and "download?part=" not in gone.text
    assert web.get(f"/dashboard/reports/{expired_id}/download?part=pdf").status_code == 410


def test_a_file_advocase_did_not_make_is_not_verified(web: TestClient, db: Session,
                                                       case: Case) -> None:
    sign_in(web, db, case.users["supervisor"])
    token = csrf_from(web.get("/dashboard/reports/verify").text)
    response = web.post("/dashboard/reports/verify", data={"csrf_token": token},
                        files={"file": ("notes.txt", b"Fictional notes, not a report",
                                        "text/plain")})
    assert response.status_code == 200
    assert "Not verified" in response.text
    assert "not a file advocase produces" in response.text


def test_signing_in_after_a_poll_does_not_return_to_the_poll(web: TestClient, db: Session,
                                                              case: Case, sent_tasks) -> None:
    sign_in(web, db, case.users["advocate"])
    report_id = _request(web, case).headers["location"].rsplit("/", 1)[1]
    web.cookies.clear()
    polled = web.get(f"/dashboard/reports/{report_id}/progress")
    assert polled.status_code == 303
    assert polled.headers["location"] == "/dashboard/login"
    page = web.get(f"/dashboard/reports/{report_id}")
    assert page.headers["location"] == f"/dashboard/login?next=%2Fdashboard%2Freports%2F{report_id}"


def test_the_verify_page_takes_files_larger_than_an_ordinary_form(web: TestClient, db: Session,
                                                                  case: Case, app) -> None:
    """Bundles run to many megabytes: the page has the API's verification limit, not the
    1 MiB of other forms."""
    settings = app.state.settings
    assert settings.report_verify_max_bytes > 2 * settings.max_body_bytes
    sign_in(web, db, case.users["advocate"])
    token = csrf_from(web.get("/dashboard/reports/verify").text)
    large = b"PK\x03\x04" + b"\x00" * (2 * settings.max_body_bytes)
    response = web.post("/dashboard/reports/verify", data={"csrf_token": token},
                        files={"file": ("bundle.zip", large, "application/zip")})
    assert response.status_code == 200
    assert "Not verified" in response.text
