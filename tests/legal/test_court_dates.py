"""Court dates: time zones, validation, status changes, reach, encryption, audit, order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from app.core.audit import AuditEvent
from app.db import utcnow
from app.legal.models import CourtDate
from tests.consents.factories import make_client
from tests.legal.factories import Agency, fields, partner_headers
from tests.support.identity import bearer
from tests.support.privacy import assert_not_stored

DUBLIN = ZoneInfo("Europe/Dublin")


def url(client_id: str, court_date_id: str | None = None) -> str:
    base = f"/api/v1/clients/{client_id}/court-dates"
    return f"{base}/{court_date_id}" if court_date_id else base


def in_days(days: int, hour: int = 10) -> datetime:
    """A moment ``days`` from today at ``hour`` o'clock in Dublin (local offset)."""
    day = (utcnow() + timedelta(days=days)).date()
    return datetime(day.year, day.month, day.day, hour, 0, tzinfo=DUBLIN)


def body(**overrides) -> dict:
    base = {"kind": "protective_order_hearing", "starts_at": in_days(14).isoformat(),
            "time_zone": "Europe/Dublin", "court": "Fictional District Court, Courtroom 7",
            "notes": "Fictional: bring the photographs and the text printouts"}
    return {k: v for k, v in (base | overrides).items() if v is not None}


def record(api, token: str, client_id: str, expect: int = 201, **overrides) -> dict:
    response = api.post(url(client_id), json=body(**overrides), headers=bearer(token))
    assert response.status_code == expect, response.text
    return response.json()


def patch(api, token: str, client_id: str, court_date_id: str, changes: dict):
    return api.patch(url(client_id, court_date_id), json=changes, headers=bearer(token))


# --- refusals first -----------------------------------------------------------------------


@pytest.mark.parametrize(("overrides", "field"), [
    ({"starts_at": "2026-05-04T09:30:00"}, "starts_at"),  # naive: no offset
    ({"starts_at": "next monday"}, "starts_at"),
    ({"starts_at": "1901-05-04T09:30:00Z"}, "starts_at"),
    ({"starts_at": "2090-05-04T09:30:00Z"}, "starts_at"),
    ({"time_zone": "Mars/Olympus_Mons"}, "time_zone"),
    ({"time_zone": ""}, "time_zone"),
    ({"kind": "tea_party"}, "kind"),
    ({"status": "postponed"}, "status"),
    ({"court": "x" * 301}, "court"),
    ({"protective_order_id": "not-a-uuid"}, "protective_order_id"),
    ({"judge_name": "Fictional Judge"}, "judge_name"),
])
def test_invalid_input_names_the_field(client, agency: Agency, overrides, field) -> None:
    response = client.post(url(agency.client_id), json=body(**overrides),
                           headers=bearer(agency.tokens["advocate"]))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in fields(response)
    assert "Courtroom 7" not in response.text


def test_an_offset_must_be_the_time_zones_own(client, agency: Agency, db: Session) -> None:
    token = agency.tokens["advocate"]
    # 10:00 in Dublin in July is UTC+1; +05:00 is some other place's offset.
    response = client.post(url(agency.client_id), json=body(
        starts_at=f"{utcnow().year + 1}-07-01T10:00:00+05:00"), headers=bearer(token))
    assert response.status_code == 422 and fields(response) == {"starts_at"}
    # Winter time in Dublin is UTC+0, summer time UTC+1: the local offset of that moment.
    summer = record(client, token, agency.client_id,
                    starts_at=f"{utcnow().year + 1}-07-01T10:00:00+01:00")
    assert summer["starts_at"] == f"{utcnow().year + 1}-07-01T09:00:00Z"
    assert summer["local_starts_at"] == f"{utcnow().year + 1}-07-01T10:00:00+01:00"
    # UTC is always accepted, whatever the zone; the local time is worked out.
    utc = record(client, token, agency.client_id, time_zone="America/Chicago",
                 starts_at=f"{utcnow().year + 1}-01-15T15:30:00Z")
    assert utc["local_starts_at"] == f"{utcnow().year + 1}-01-15T09:30:00-06:00"
    assert db.scalar(sa.select(CourtDate.time_zone).where(
        CourtDate.id == UUID(utc["id"]))) == "America/Chicago"


def test_linked_order_must_be_the_clients_own(client, agency: Agency, db: Session) -> None:
    token = agency.tokens["advocate"]
    other = make_client(db, agency.org, agency.people["advocate"])
    db.commit()
    foreign = client.post(f"/api/v1/clients/{other}/protective-orders",
                          json={"order_type": "emergency"}, headers=bearer(token)).json()
    response = client.post(url(agency.client_id), json=body(protective_order_id=foreign["id"]),
                           headers=bearer(token))
    assert response.status_code == 422 and fields(response) == {"protective_order_id"}
    own = client.post(f"/api/v1/clients/{agency.client_id}/protective-orders",
                      json={"order_type": "temporary"}, headers=bearer(token)).json()
    linked = record(client, token, agency.client_id, protective_order_id=own["id"])
    assert linked["protective_order_id"] == own["id"]
    unlinked = patch(client, token, agency.client_id, linked["id"],
                     {"protective_order_id": None})
    assert unlinked.status_code == 200 and unlinked.json()["protective_order_id"] is None


def test_status_changes_and_rescheduling(client, agency: Agency, db: Session) -> None:
    token = agency.tokens["advocate"]
    hearing = record(client, token, agency.client_id)
    # Not held before it starts.
    response = patch(client, token, agency.client_id, hearing["id"], {"status": "held"})
    assert response.status_code == 422 and fields(response) == {"status"}
    for field in ("starts_at", "time_zone", "kind", "status"):
        response = patch(client, token, agency.client_id, hearing["id"], {field: None})
        assert response.status_code == 422 and fields(response) == {field}
    response = patch(client, token, agency.client_id, hearing["id"],
                     {"starts_at": "2027-02-01T10:00:00"})
    assert response.status_code == 422 and fields(response) == {"starts_at"}
    adjourned = patch(client, token, agency.client_id, hearing["id"], {"status": "adjourned"})
    assert adjourned.status_code == 200
    later = in_days(40, hour=14)
    moved = patch(client, token, agency.client_id, hearing["id"],
                  {"status": "scheduled", "starts_at": later.isoformat()})
    assert moved.status_code == 200, moved.text
    assert datetime.fromisoformat(moved.json()["starts_at"]) == later
    held_before = record(client, token, agency.client_id, starts_at=in_days(-3).isoformat())
    held = patch(client, token, agency.client_id, held_before["id"],
                 {"status": "held", "outcome": "Fictional: order extended twelve months"})
    assert held.status_code == 200 and held.json()["outcome"].startswith("Fictional: order")
    response = patch(client, token, agency.client_id, held_before["id"],
                     {"status": "scheduled"})
    assert response.status_code == 422 and fields(response) == {"status"}
    rescheduled = db.scalars(sa.select(AuditEvent).where(
        AuditEvent.action == "court_date.updated",
        AuditEvent.object_id == hearing["id"])).all()
    assert [e.details["rescheduled"] for e in rescheduled] == [False, True]
    assert rescheduled[1].details["status_before"] == "adjourned"


def test_another_caseload_or_agency_finds_nothing(client, agency: Agency, db: Session) -> None:
    mine = record(client, agency.tokens["advocate"], agency.client_id)
    theirs = make_client(db, agency.org, agency.people["colleague"])
    db.commit()
    for token, target in ((agency.tokens["advocate"], theirs),
                          (agency.tokens["stranger"], agency.client_id),
                          (agency.tokens["colleague"], agency.client_id),
                          (agency.tokens["admin"], agency.client_id)):
        assert client.get(url(target), headers=bearer(token)).status_code == 404
        assert client.post(url(target), json=body(), headers=bearer(token)).status_code == 404
        assert client.get(url(target, mine["id"]), headers=bearer(token)).status_code == 404
        assert patch(client, token, target, mine["id"], {"notes": "x"}).status_code == 404
    also_mine = make_client(db, agency.org, agency.people["advocate"])
    db.commit()
    assert client.get(url(also_mine, mine["id"]),
                      headers=bearer(agency.tokens["advocate"])).status_code == 404


def test_partner_apps_and_auditors_are_refused(client, agency: Agency) -> None:
    mine = record(client, agency.tokens["advocate"], agency.client_id)
    for headers in (partner_headers(client, agency), bearer(agency.tokens["auditor"])):
        assert client.get(url(agency.client_id), headers=headers).status_code == 403
        assert client.post(url(agency.client_id), json=body(),
                           headers=headers).status_code == 403
        assert client.get(url(agency.client_id, mine["id"]), headers=headers).status_code == 403
        assert client.patch(url(agency.client_id, mine["id"]), json={"notes": "x"},
                            headers=headers).status_code == 403
    assert client.post(url(agency.client_id), json=body()).status_code == 401


# --- what works ---------------------------------------------------------------------------


def test_upcoming_soonest_first_then_past_most_recent_first(client, agency: Agency) -> None:
    token = agency.tokens["advocate"]
    made = {days: record(client, token, agency.client_id,
                         starts_at=in_days(days).isoformat())["id"]
            for days in (30, -2, 3, -40, 10)}
    expected = [made[d] for d in (3, 10, 30, -2, -40)]
    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get(url(agency.client_id), params=params, headers=bearer(token)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == expected
    upcoming = client.get(url(agency.client_id), params={"when": "upcoming"},
                          headers=bearer(token)).json()
    assert [i["id"] for i in upcoming["items"]] == [made[d] for d in (3, 10, 30)]
    past = client.get(url(agency.client_id), params={"when": "past", "limit": 1},
                      headers=bearer(token)).json()
    assert [i["id"] for i in past["items"]] == [made[-2]]
    rest = client.get(url(agency.client_id), params={"when": "past", "cursor":
                                                     past["next_cursor"]},
                      headers=bearer(token)).json()
    assert [i["id"] for i in rest["items"]] == [made[-40]] and rest["next_cursor"] is None
    wrong = client.get(url(agency.client_id), params={"when": "someday"},
                       headers=bearer(token))
    assert wrong.status_code == 422 and fields(wrong) == {"when"}
    # A cursor of one listing does not page another.
    assert client.get(url(agency.client_id), params={"when": "upcoming",
                                                     "cursor": past["next_cursor"]},
                      headers=bearer(token)).status_code == 400


def test_personal_fields_are_encrypted_at_rest(client, agency: Agency, db: Session) -> None:
    made = record(client, agency.tokens["advocate"], agency.client_id,
                  outcome="Fictional: adjourned for the respondent's solicitor")
    row = db.execute(sa.select(CourtDate.__table__).where(
        CourtDate.id == UUID(made["id"]))).mappings().one()
    stored = " ".join(str(v) for v in row.values())
    assert_not_stored(stored, ["Fictional District Court", "Courtroom 7", "photographs",
                               "text printouts", "respondent's solicitor"], ignore_case=True)
    assert row["kind"] == "protective_order_hearing" and row["status"] == "scheduled"
    assert row["starts_at"].astimezone(UTC) == in_days(14).astimezone(UTC)
    read = client.get(url(agency.client_id, made["id"]),
                      headers=bearer(agency.tokens["supervisor"])).json()
    assert read["court"] == "Fictional District Court, Courtroom 7"
    assert read["outcome"] == "Fictional: adjourned for the respondent's solicitor"


def test_every_read_and_write_is_audited(client, agency: Agency, db: Session) -> None:
    token = agency.tokens["advocate"]
    made = record(client, token, agency.client_id)
    patch(client, token, agency.client_id, made["id"], {"notes": "Fictional: updated note"})
    client.get(url(agency.client_id, made["id"]), headers=bearer(token))
    client.get(url(agency.client_id), headers=bearer(token))
    events = db.scalars(sa.select(AuditEvent).where(AuditEvent.actor_id == str(
        agency.people["advocate"].id)).order_by(AuditEvent.seq)).all()
    actions = [(e.action, e.object_id) for e in events]
    for action in ("court_date.created", "court_date.updated"):
        assert (action, made["id"]) in actions
    assert actions.count(("court_date.read", made["id"])) == 2
    assert ("court_date.listed", agency.client_id) in actions
    text = " ".join(str(e.details) for e in events)
    assert_not_stored(text, ["Fictional District", "photographs", "updated note"])
