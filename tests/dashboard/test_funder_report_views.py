"""The agency's funder report in the dashboard, through the real app (no browser): who may
ask for it (supervisors and admins; nobody else finds the form), the API's schema errors on
the form's inputs, CSRF, the list showing it beside court summaries, its page, and the
downloads (PDF, CSV, manifest; no bundle), each audited."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session

from app.core.audit import AuditEvent
from app.reports.models import Report
from tests.dashboard.helpers import csrf_from, sign_in
from tests.reports import conftest as reports
from tests.reports import test_funder_aggregate as funder
from tests.reports.test_funder_aggregate import END, START, Agency

# The report tests' fixtures: the seeded fictional agency (13 clients served, small counts
# to hide), the captured task messages, a build run in this process as the worker runs it.
agency = funder.agency
run_build, storage = reports.run_build, reports.storage

NEW = "/dashboard/reports/funder/new"


def _form(token: str, **changes: str) -> dict[str, str]:
    fields = {"csrf_token": token, "period.start": START.isoformat(),
              "period.end": END.isoformat(), "grouping": "none"}
    fields.update(changes)
    return fields


def _reports(db: Session) -> int:
    return int(db.scalar(sa.select(sa.func.count()).select_from(Report)) or 0)


def _ask(web: TestClient, **changes: str) -> Any:
    page = web.get(NEW)
    assert page.status_code == 200, page.text[:500]
    return web.post(NEW, data=_form(csrf_from(page.text), **changes))


def test_advocates_and_auditors_find_no_form_and_queue_nothing(
        web: TestClient, db: Session, agency: Agency, sent_tasks) -> None:
    before = _reports(db)
    for who in ("advocate", "auditor"):
        sign_in(web, db, agency.users[who])
        assert web.get(NEW).status_code == 404
        token = csrf_from(web.get("/dashboard/sessions").text)
        refused = web.post(NEW, data=_form(token))
        assert refused.status_code == 404
        assert "There is nothing at this address." in refused.text
        listing = web.get("/dashboard/reports")
        assert (listing.status_code, NEW in listing.text) == (
            (200, False) if who == "advocate" else (404, False))
        web.cookies.clear()
    assert _reports(db) == before and sent_tasks == []
    denied = list(db.scalars(sa.select(AuditEvent).where(
        AuditEvent.action == "access.denied",
        AuditEvent.actor_id == str(agency.users["advocate"].id))))
    assert denied, "a refused form is audited"


def test_bad_forms_name_the_field_and_queue_nothing(web: TestClient, db: Session,
                                                    agency: Agency, sent_tasks) -> None:
    sign_in(web, db, agency.users["supervisor"])
    before = _reports(db)
    backwards = _ask(web, **{"period.start": END.isoformat(),
                             "period.end": START.isoformat()})
    assert backwards.status_code == 422
    assert "the period ends before it starts" in backwards.text
    assert 'href="#period.start"' in backwards.text
    # What was typed is shown again.
    assert f'value="{END.isoformat()}"' in backwards.text
    missing = _ask(web, **{"period.end": ""})
    assert missing.status_code == 422 and 'href="#period.end"' in missing.text
    assert 'aria-invalid="true"' in missing.text
    not_a_date = _ask(web, **{"period.start": "2026-02-30"})
    assert not_a_date.status_code == 422 and 'href="#period.start"' in not_a_date.text
    weekly = _ask(web, grouping="week")
    assert weekly.status_code == 422 and 'href="#grouping"' in weekly.text
    too_long = _ask(web, **{"period.start": "2000-01-01", "period.end": "2026-01-01"})
    assert too_long.status_code == 422 and 'href="#period.end"' in too_long.text
    assert "the period is at most ten years" in too_long.text
    no_token = web.post(NEW, data=_form("not-the-token"))
    assert no_token.status_code == 403
    assert _reports(db) == before and sent_tasks == []


def test_a_supervisor_asks_follows_and_downloads_the_csv_with_small_counts_hidden(
        web: TestClient, db: Session, agency: Agency, sent_tasks, run_build) -> None:
    sign_in(web, db, agency.users["supervisor"])
    listing = web.get("/dashboard/reports")
    assert f'href="{NEW}"' in listing.text
    response = _ask(web, grouping="month")
    assert response.status_code == 303, response.text[:800]
    report = db.scalar(sa.select(Report).order_by(Report.requested_at.desc()))
    assert report is not None and report.kind == "funder_aggregate"
    assert report.client_id is None
    assert response.headers["location"] == f"/dashboard/reports/{report.id}"
    assert sent_tasks == [("reports.build", [str(report.id)])]
    assert json.loads(report.parameters)["grouping"] == "month"

    page = web.get(response.headers["location"])
    assert page.status_code == 200
    assert "<title>Funder report" in page.text
    assert '<progress id="report-bar" max="100" value="0">' in page.text
    assert f"funder report, {START.isoformat()} to {END.isoformat()}" in page.text
    assert web.get(f"/dashboard/reports/{report.id}/progress").json()["status"] == "queued"
    assert web.get(f"/dashboard/reports/{report.id}/download?part=csv").status_code == 409
    listed = web.get("/dashboard/reports").text
    assert f'href="/dashboard/reports/{report.id}"' in listed
    assert agency.org.name in listed and "Funder report" in listed

    assert run_build(report.id) == "done"
    db.expire_all()  # the build's UPDATE went past this session's copy of the row
    built = web.get(f"/dashboard/reports/{report.id}")
    assert 'value="100"' in built.text
    for part in ("pdf", "csv", "manifest"):
        assert f'href="/dashboard/reports/{report.id}/download?part={part}"' in built.text
    assert "part=bundle" not in built.text
    assert web.get(f"/dashboard/reports/{report.id}/progress").json()["done"] is True

    # A part this kind has not is not found, and is not audited as a download.
    assert web.get(f"/dashboard/reports/{report.id}/download?part=bundle").status_code == 404
    assert web.get(f"/dashboard/reports/{report.id}/download?part=zip").status_code == 422
    got = web.get(f"/dashboard/reports/{report.id}/download?part=csv")
    assert got.status_code == 200
    assert got.headers["content-type"] == "text/csv; charset=utf-8"
    assert got.headers["content-security-policy"].startswith("default-src 'none'; sandbox")
    assert "attachment" in got.headers["content-disposition"]
    assert hashlib.sha256(got.content).hexdigest() == report.bundle_sha256
    rows = list(csv.reader(io.StringIO(got.content.decode("utf-8"))))
    assert rows[0] == ["table", "row", "column", "value"]
    values = {(r[0], r[2]): r[3] for r in rows[1:] if r[1] == "Total"}
    # 8 hotline calls are shown; 4 shelter nights (1 to the threshold, 5) are hidden, as
    # "<6" (what the built CSV says: "fewer than 6").
    assert web.app.state.settings.report_suppression_threshold == 5
    assert values[("contacts", "Hotline call")] == "8"
    assert values[("contacts", "Shelter night")] == "<6"
    text = got.content.decode("utf-8")
    for personal in (*agency.names, *agency.case_numbers):
        assert personal not in text
    for cell in (r[3] for r in rows[1:]):
        assert cell in ("", "<6") or cell.replace(".", "").isdigit()
        if cell.isdigit():
            assert not 1 <= int(cell) <= 5, rows

    pdf = web.get(f"/dashboard/reports/{report.id}/download?part=pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")
    manifest = web.get(f"/dashboard/reports/{report.id}/download?part=manifest")
    assert manifest.json()["items"][0]["sha256"] == report.bundle_sha256
    downloads = list(db.scalars(sa.select(AuditEvent).where(
        AuditEvent.action == "report.downloaded",
        AuditEvent.object_id == str(report.id)).order_by(AuditEvent.seq)))
    assert [e.details["part"] for e in downloads] == ["csv", "pdf", "manifest"]
    assert all(e.actor_id == str(agency.users["supervisor"].id) for e in downloads)


def test_an_admin_reads_the_agency_report_and_no_one_else_does(
        web: TestClient, db: Session, agency: Agency, sent_tasks) -> None:
    sign_in(web, db, agency.users["admin"])
    home = web.get("/dashboard")
    assert 'href="/dashboard/reports"' in home.text
    listing = web.get("/dashboard/reports")
    assert listing.status_code == 200 and f'href="{NEW}"' in listing.text
    assert "/dashboard/reports/verify" not in listing.text  # admins read no client's report
    report_id = _ask(web).headers["location"].rsplit("/", 1)[1]
    assert UUID(report_id)
    assert f'href="/dashboard/reports/{report_id}"' in web.get("/dashboard/reports").text
    web.cookies.clear()
    # The agency's supervisor reads it too (it is not on their list: they did not ask).
    sign_in(web, db, agency.users["supervisor"])
    assert web.get(f"/dashboard/reports/{report_id}").status_code == 200
    assert report_id not in web.get("/dashboard/reports").text
    web.cookies.clear()
    for who in ("advocate", "auditor", "stranger"):
        sign_in(web, db, agency.users[who])
        for suffix in ("", "/progress", "/download?part=csv"):
            assert web.get(f"/dashboard/reports/{report_id}{suffix}").status_code == 404, (
                who, suffix)
        web.cookies.clear()
    assert len(sent_tasks) == 1
