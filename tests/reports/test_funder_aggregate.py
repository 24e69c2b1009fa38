"""The funder aggregate report: counts of a seeded fictional agency built in-process through
the service and the build task, suppressed, with no personal data in the CSV or the PDF;
who may ask for it and read it; what a request may say."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from app.clients import service as clients_service
from app.core.access import Actor
from app.core.audit import AuditEvent
from app.identity.models import Org, StaffUser
from app.referrals.models import Referral
from app.reports import funder_aggregate
from app.reports.models import Report
from app.resources.models import Resource
from app.service_log.models import ServiceContact
from tests.reports.conftest import pdf_text
from tests.support.identity import bearer, make_org, make_user, staff_token

TODAY = datetime.now(UTC).date()
START, END = TODAY - timedelta(days=59), TODAY
NAME = "Fictional Clientname {}"


@dataclass
class Agency:
    org: Org
    other_org: Org
    users: dict[str, StaffUser]
    names: list[str] = field(default_factory=list)
    case_numbers: list[str] = field(default_factory=list)
    client_ids: list[UUID] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)

    def headers(self, who: str) -> dict[str, str]:
        return bearer(self.tokens[who])


def _actor(user: StaffUser) -> Actor:
    return Actor(kind="user", id=user.id, org_id=user.org_id, role=user.role)


def _clients(db: Session, user: StaffUser, count: int, prefix: str) -> list[Any]:
    made = []
    for n in range(count):
        name = NAME.format(f"{prefix}{n}")
        record = clients_service.create_client(db, _actor(user),
                                               personal={"preferred_name": name})
        record.fictional_name = name
        made.append(record)
    return made


def _contact(db: Session, org_id: UUID, client_id: UUID, staff: UUID, kind: str, on: date,
             minutes: int) -> None:
    db.add(ServiceContact(org_id=org_id, client_id=client_id, kind=kind, occurred_on=on,
                          duration_minutes=minutes, staff_user_id=staff, recorded_by=staff))


def _referral(db: Session, org_id: UUID, client_id: UUID, resource_id: UUID, staff: UUID,
              status: str, sent: datetime | None) -> None:
    db.add(Referral(org_id=org_id, client_id=client_id, resource_id=resource_id,
                    recipient_org_id=org_id, recipient_name="Fictional Refuge", status=status,
                    categories=[], created_by=staff, sent_at=sent))


@pytest.fixture
def agency(db: Session) -> Agency:
    """13 clients served in the period: 8 with a hotline call (30 min), 3 with two
    counselling sessions (1 h), 2 with shelter nights (4 in all); 3 of the 13 were created
    before the period. 7 referrals accepted, 2 declined, 1 sent before the period. Another
    agency with its own clients, contacts and referrals that must never be counted."""
    org, other_org = make_org(db), make_org(db)
    users = {role: make_user(db, org, role) for role in ("admin", "supervisor", "advocate",
                                                         "auditor")}
    users["stranger"] = make_user(db, other_org, "supervisor")
    made = Agency(org, other_org, users)
    staff = users["advocate"].id
    records = _clients(db, users["supervisor"], 13, "A")
    # Dates of birth (encrypted): on the period's last day 8 are 25-34 (born 30 years
    # before), 3 are 45-54 (born 50 years before), 1 is 17, 1 has none recorded.
    for n, record in enumerate(records[:12]):
        years = 30 if n < 8 else 50 if n < 11 else 17
        born = date(END.year - years, 1, 1)
        clients_service.update_client(db, _actor(users["supervisor"]), record.client.id,
                                      personal={"date_of_birth": born.isoformat()})
    for record in records:
        made.names.append(record.fictional_name)
        made.case_numbers.append(record.client.case_number)
        made.client_ids.append(record.client.id)
    for record in records[:3]:
        record.client.created_at = datetime.combine(START - timedelta(days=30),
                                                    datetime.min.time(), tzinfo=UTC)
    for record in records[3:]:  # inside the period, whatever the clock (midnight included)
        record.client.created_at = datetime.combine(START + timedelta(days=2),
                                                    datetime.min.time(), tzinfo=UTC)
    db.flush()
    ids = made.client_ids
    for client_id in ids[:8]:
        _contact(db, org.id, client_id, staff, "hotline_call", START + timedelta(days=3), 30)
    for client_id in ids[8:11]:
        for day in (5, 40):
            _contact(db, org.id, client_id, staff, "counselling", START + timedelta(days=day),
                     60)
    for client_id, nights in ((ids[11], 3), (ids[12], 1)):
        for night in range(nights):
            _contact(db, org.id, client_id, staff, "shelter_night",
                     START + timedelta(days=10 + night), 0)
    # Outside the period: counted nowhere.
    _contact(db, org.id, ids[0], staff, "in_person", START - timedelta(days=1), 45)
    resource = Resource(org_id=org.id, name="Fictional Refuge", categories=["shelter"])
    db.add(resource)
    db.flush()
    sent = datetime.combine(START + timedelta(days=7), datetime.min.time(), tzinfo=UTC)
    for client_id in ids[:7]:
        _referral(db, org.id, client_id, resource.id, staff, "accepted", sent)
    for client_id in ids[7:9]:
        _referral(db, org.id, client_id, resource.id, staff, "declined", sent)
    _referral(db, org.id, ids[9], resource.id, staff, "accepted",
              sent - timedelta(days=60))
    _referral(db, org.id, ids[10], resource.id, staff, "draft", None)

    other = _clients(db, users["stranger"], 7, "B")
    other_resource = Resource(org_id=other_org.id, name="Fictional Other Refuge",
                              categories=["shelter"])
    db.add(other_resource)
    db.flush()
    for record in other:
        _contact(db, other_org.id, record.client.id, users["stranger"].id, "hotline_call",
                 START + timedelta(days=3), 30)
        _referral(db, other_org.id, record.client.id, other_resource.id,
                  users["stranger"].id, "accepted", sent)
    made.names += [record.fictional_name for record in other]
    made.case_numbers += [record.client.case_number for record in other]
    made.tokens = {name: staff_token(db, user) for name, user in users.items()}
    db.commit()
    return made


def body(**changes: Any) -> dict[str, Any]:
    result: dict[str, Any] = {"kind": "funder_aggregate",
                              "period": {"start": START.isoformat(), "end": END.isoformat()}}
    result.update(changes)
    return result


def _values(content: bytes) -> dict[tuple[str, str, str], str]:
    rows = list(csv.reader(io.StringIO(content.decode("utf-8"))))
    assert rows[0] == ["table", "row", "column", "value"]
    return {(r[0], r[1], r[2]): r[3] for r in rows[1:]}


def _built(client: Any, agency: Agency, run_build: Any, sent_tasks: Any, who: str = "supervisor",
           **changes: Any) -> tuple[str, dict[str, Any]]:
    response = client.post("/api/v1/reports", json=body(**changes), headers=agency.headers(who))
    assert response.status_code == 202, response.text
    report_id = response.json()["id"]
    assert response.headers["Location"] == f"/api/v1/reports/{report_id}"
    assert ("reports.build", [report_id]) in sent_tasks
    assert run_build(report_id) == "done"
    shown = client.get(f"/api/v1/reports/{report_id}", headers=agency.headers(who)).json()
    return report_id, shown


# --- refused -----------------------------------------------------------------------------


def test_advocates_and_auditors_are_refused_and_nothing_is_kept(client, agency: Agency,
                                                                db: Session) -> None:
    before = db.scalar(sa.select(sa.func.count()).select_from(Report))
    for who in ("advocate", "auditor"):
        response = client.post("/api/v1/reports", json=body(), headers=agency.headers(who))
        assert response.status_code == 403, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
    assert db.scalar(sa.select(sa.func.count()).select_from(Report)) == before


def test_bad_requests_name_the_field(client, agency: Agency, db: Session) -> None:
    before = db.scalar(sa.select(sa.func.count()).select_from(Report))
    cases = [
        (body(period={"start": END.isoformat(), "end": START.isoformat()}), "period"),
        (body(grouping="week"), "grouping"),
        (body(client_id=str(agency.client_ids[0])), "client_id"),
        (body(period={"start": "2000-01-01", "end": "2026-01-01"}), "body"),
        (body(period={"start": "not a date", "end": END.isoformat()}), "period.start"),
    ]
    for sent, name in cases:
        response = client.post("/api/v1/reports", json=sent, headers=agency.headers("supervisor"))
        assert response.status_code == 422, (name, response.text)
        fields = [e["field"] for e in response.json()["errors"]]
        assert any(f == name or f.startswith(name) for f in fields), (name, fields)
    assert db.scalar(sa.select(sa.func.count()).select_from(Report)) == before


# --- the whole build -------------------------------------------------------------------------


def test_counts_of_the_agency_suppressed_with_no_personal_data(
        client, agency: Agency, run_build, sent_tasks, db: Session) -> None:
    report_id, shown = _built(client, agency, run_build, sent_tasks)
    assert shown["status"] == "done" and shown["percent"] == 100
    assert shown["client_id"] is None
    assert set(shown["downloads"]) == {"pdf", "csv", "manifest"}

    got = client.get(f"/api/v1/reports/{report_id}/download?part=csv",
                     headers=agency.headers("supervisor"))
    assert got.status_code == 200 and got.headers["content-type"].startswith("text/csv")
    values = _values(got.content)
    period = f"{START.isoformat()} to {END.isoformat()}"
    # 13 served (the other agency's 7 never), 10 new.
    assert values[("clients_served", period, "Clients served")] == "13"
    assert values[("clients_served", "Total", "Clients served")] == "13"
    assert values[("new_clients", period, "New clients")] == "10"
    # Age bands from the encrypted dates of birth: 8 shown; 3, 1 and 1 hidden (two or
    # more in the row, so 8 stays); the row's total is the clients served.
    assert values[("age_bands", period, "25-34")] == "8"
    assert values[("age_bands", period, "45-54")] == "<6"
    assert values[("age_bands", period, "Under 18")] == "<6"
    assert values[("age_bands", period, "Not recorded")] == "<6"
    assert values[("age_bands", period, "65 and over")] == "0"
    assert values[("age_bands", period, "Total")] == "13"
    # Contacts: 8 hotline calls shown; 4 shelter nights hidden, and so the next smallest
    # (6 counselling sessions) too; the row total 18 is shown (two hidden cells in it).
    assert values[("contacts", period, "Hotline call")] == "8"
    assert values[("contacts", period, "Shelter night")] == "<6"
    assert values[("contacts", period, "Counselling")] == "<6"
    assert values[("contacts", period, "In person")] == "0"
    assert values[("contacts", period, "Total")] == "18"
    assert values[("contacts", "Total", "Counselling")] == "<6"
    # Hours hide where the contacts do; the shelter nights' hidden hours are zero, which
    # protects nothing, so the hotline's hours go too and the 10.0 in all gives none away.
    assert values[("hours", period, "Counselling")] == "<6"
    assert values[("hours", period, "Hotline call")] == "<6"
    assert values[("hours", period, "Total")] == "10.0"
    assert values[("shelter", period, "Shelter nights")] == "<6"
    assert values[("shelter", period, "People sheltered")] == "<6"
    # Referrals: 7 accepted, 2 declined (hidden, then 7 as its complement); 9 in all.
    assert values[("referrals", "Shelter", "Declined")] == "<6"
    assert values[("referrals", "Shelter", "Accepted")] == "<6"
    assert values[("referrals", "Shelter", "Total")] == "9"
    for (_, _, _), value in values.items():
        assert not (value.isdigit() and 1 <= int(value) <= 5), values

    pdf = client.get(f"/api/v1/reports/{report_id}/download?part=pdf",
                     headers=agency.headers("supervisor"))
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    text = pdf_text(pdf.content)
    assert "Aggregate report" in text and "Contacts by service type" in text
    assert "Hotline call" in text and "<6" in text
    births = [date(END.year - years, 1, 1).isoformat() for years in (30, 50, 17)]
    for secret in (*agency.names, *agency.case_numbers, *map(str, agency.client_ids),
                   *births):
        assert secret not in text
        assert secret not in got.text
    assert b"<svg" not in pdf.content  # the chart is drawn into the PDF, not attached

    manifest = client.get(f"/api/v1/reports/{report_id}/download?part=manifest",
                          headers=agency.headers("supervisor")).json()
    assert manifest["kind"] == "funder_aggregate"
    assert manifest["document"]["sha256"] == shown["pdf_sha256"]
    # A court summary's bundle is no part of an aggregate.
    bundle = client.get(f"/api/v1/reports/{report_id}/download?part=bundle",
                        headers=agency.headers("supervisor"))
    assert bundle.status_code == 404
    downloads = db.scalars(sa.select(AuditEvent).where(
        AuditEvent.action == "report.downloaded",
        AuditEvent.object_id == str(report_id))).all()
    assert len(downloads) == 3


def test_readers_the_requester_agency_supervisors_and_admins_only(
        client, agency: Agency, run_build, sent_tasks) -> None:
    report_id, _ = _built(client, agency, run_build, sent_tasks, who="admin")
    for who in ("supervisor", "admin"):
        assert client.get(f"/api/v1/reports/{report_id}",
                          headers=agency.headers(who)).status_code == 200
    for who in ("advocate", "stranger"):
        for path in (f"/api/v1/reports/{report_id}",
                     f"/api/v1/reports/{report_id}/download?part=csv"):
            response = client.get(path, headers=agency.headers(who))
            assert response.status_code == 404, (who, path)
    assert client.get(f"/api/v1/reports/{report_id}",
                      headers=agency.headers("auditor")).status_code == 403


def test_the_other_agency_counts_its_own_only(client, agency: Agency, run_build,
                                              sent_tasks) -> None:
    report_id, _ = _built(client, agency, run_build, sent_tasks, who="stranger")
    got = client.get(f"/api/v1/reports/{report_id}/download?part=csv",
                     headers=agency.headers("stranger"))
    values = _values(got.content)
    period = f"{START.isoformat()} to {END.isoformat()}"
    assert values[("clients_served", period, "Clients served")] == "7"
    assert values[("contacts", period, "Hotline call")] == "7"
    assert values[("contacts", period, "Counselling")] == "0"
    assert values[("referrals", "Shelter", "Accepted")] == "7"


def test_grouping_by_month_gives_a_row_each(client, agency: Agency, run_build,
                                            sent_tasks) -> None:
    report_id, _ = _built(client, agency, run_build, sent_tasks, grouping="month")
    values = _values(client.get(f"/api/v1/reports/{report_id}/download?part=csv",
                                headers=agency.headers("supervisor")).content)
    months = {p.label for p in funder_aggregate.periods(START, END, "month")}
    assert {row for (table, row, _) in values if table == "contacts"} == months | {"Total"}
    assert values[("clients_served", "Total", "Clients served")] == "13"
    # The same numbers are shown the same way wherever they appear (two suppression
    # patterns of one number could undo each other).
    for month in months | {"Total"}:
        assert values[("shelter", month, "Shelter nights")] == \
            values[("contacts", month, "Shelter night")]


def test_periods_cut_to_the_request() -> None:
    quarters = funder_aggregate.periods(date(2026, 2, 10), date(2026, 7, 3), "quarter")
    assert [(p.label, p.start, p.end) for p in quarters] == [
        ("2026-Q1", date(2026, 2, 10), date(2026, 3, 31)),
        ("2026-Q2", date(2026, 4, 1), date(2026, 6, 30)),
        ("2026-Q3", date(2026, 7, 1), date(2026, 7, 3))]
    months = funder_aggregate.periods(date(2026, 12, 5), date(2027, 1, 2), "month")
    assert [p.label for p in months] == ["2026-12", "2027-01"]


def test_its_pdf_and_manifest_verify_and_an_altered_pdf_does_not(
        client, agency: Agency, run_build, sent_tasks) -> None:
    report_id, _ = _built(client, agency, run_build, sent_tasks)
    headers = agency.headers("supervisor")
    pdf = client.get(f"/api/v1/reports/{report_id}/download?part=pdf", headers=headers).content
    manifest = client.get(f"/api/v1/reports/{report_id}/download?part=manifest",
                          headers=headers).content
    for name, content in (("aggregate.pdf", pdf), ("manifest.json", manifest)):
        answer = client.post("/api/v1/reports/verify", headers=headers,
                             files={"file": (name, content)})
        assert answer.status_code == 200, answer.text
        assert answer.json()["ok"] is True and answer.json()["report_id"] == report_id
    altered = pdf[:200] + bytes([pdf[200] ^ 1]) + pdf[201:]
    answer = client.post("/api/v1/reports/verify", headers=headers,
                         files={"file": ("aggregate.pdf", altered)})
    assert answer.status_code == 200 and answer.json()["ok"] is False


def test_expiry_deletes_both_files_and_the_download_says_gone(
        client, agency: Agency, run_build, sent_tasks, db: Session, storage) -> None:
    from app.reports import service

    report_id, _ = _built(client, agency, run_build, sent_tasks)
    report = db.get(Report, UUID(report_id))
    assert report is not None and report.pdf_key and report.bundle_key
    stored = [report.pdf_key, report.bundle_key]
    assert all(storage.exists(key) for key in stored)
    assert report.expires_at is not None
    assert service.expire_reports(db, storage, now=report.expires_at + timedelta(seconds=1)) >= 1
    db.commit()
    assert not any(storage.exists(key) for key in stored)
    for part in ("pdf", "csv"):
        gone = client.get(f"/api/v1/reports/{report_id}/download?part={part}",
                          headers=agency.headers("supervisor"))
        assert gone.status_code == 410, gone.text


def test_age_bands_by_the_birthday() -> None:
    on = date(2026, 6, 30)
    assert funder_aggregate.age_band("2008-07-01", on) == "Under 18"
    assert funder_aggregate.age_band("2008-06-30", on) == "18-24"
    assert funder_aggregate.age_band("1961-06-30", on) == "65 and over"
    assert funder_aggregate.age_band("1961-07-01", on) == "55-64"
    for unknown in (None, "", "not a date", "2030-01-01"):
        assert funder_aggregate.age_band(unknown, on) == "Not recorded"


def test_age_bands_read_in_one_stream_count_a_shredded_client_as_not_recorded(
        agency: Agency, db: Session) -> None:
    """The age bands read each served client's date of birth beside its data key: a client
    whose key was destroyed (purged) counts as not recorded, never as an error."""
    from app.core import keys

    served = sa.select(ServiceContact.client_id).distinct().where(
        ServiceContact.org_id == agency.org.id, ServiceContact.occurred_on >= START,
        ServiceContact.occurred_on <= END)
    labels = [label for label, _, _ in funder_aggregate.AGE_BANDS] + ["Not recorded"]
    before = dict(zip(labels, funder_aggregate._age_bands(db, agency.org.id, served, END),
                      strict=True))
    assert (before["25-34"], before["Not recorded"], sum(before.values())) == (8, 1, 13)
    assert keys.shred_client_key(db, agency.client_ids[0])  # born 30 years before
    db.commit()
    db.rollback()  # a fresh session's view: no key of this session remembered
    after = dict(zip(labels, funder_aggregate._age_bands(db, agency.org.id, served, END),
                     strict=True))
    assert (after["25-34"], after["Not recorded"], sum(after.values())) == (7, 2, 13)
