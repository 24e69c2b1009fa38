"""The reminders API: refusals first, then creating, listing, snoozing, completing,
reassigning, and the org's rules."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from fastapi.testclient import TestClient
from sqlmodel import Session

from app.db import utcnow
from app.reminders.models import Reminder
from tests.reminders.conftest import NOTE, Agency
from tests.support.identity import bearer, make_org
from tests.support.identity import staff_token as _staff_token


def staff_token(db: Session, user) -> str:  # noqa: ANN001
    """A token, committed (to the test's outer transaction) so a refused request's
    rollback does not take the set-up with it."""
    token = _staff_token(db, user)
    db.commit()
    return token


def _soon(hours: int = 2) -> str:
    return (utcnow() + timedelta(hours=hours)).isoformat()


def test_a_naive_time_is_refused(client: TestClient, db: Session, agency: Agency) -> None:
    headers = bearer(staff_token(db, agency.advocate))
    naive = (utcnow() + timedelta(hours=2)).replace(tzinfo=None).isoformat()
    response = client.post("/api/v1/reminders", headers=headers, json={"due_at": naive})
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["errors"][0]["field"].endswith("due_at")


def test_bad_times_and_fields_are_refused(client: TestClient, db: Session,
                                          agency: Agency) -> None:
    headers = bearer(staff_token(db, agency.advocate))
    for body in ({"due_at": "next tuesday"},
                 {"due_at": (utcnow() - timedelta(days=1)).isoformat()},
                 {"due_at": (utcnow() + timedelta(days=366 * 6)).isoformat()},
                 {"due_at": _soon(), "unknown": 1},
                 {"due_at": _soon(), "channel": "sms"},
                 {"due_at": _soon(), "audience": "client", "channel": "sms"}):
        response = client.post("/api/v1/reminders", headers=headers, json=body)
        assert response.status_code == 422, (body, response.text)


def test_another_caseload_is_not_found(client: TestClient, db: Session, agency: Agency) -> None:
    advocate = bearer(staff_token(db, agency.advocate))
    colleague = bearer(staff_token(db, agency.colleague))
    response = client.post("/api/v1/reminders", headers=advocate,
                           json={"due_at": _soon(), "client_id": str(agency.other_client_id)})
    assert response.status_code == 404
    made = client.post("/api/v1/reminders", headers=colleague,
                       json={"due_at": _soon(), "client_id": str(agency.other_client_id),
                             "note": NOTE}).json()
    for path in (f"/api/v1/reminders/{made['id']}",):
        assert client.get(path, headers=advocate).status_code == 404
    for action, body in (("snooze", {"until": _soon(5)}), ("complete", None),
                         ("reassign", {"assignee_id": str(agency.advocate.id)})):
        response = client.post(f"/api/v1/reminders/{made['id']}/{action}", headers=advocate,
                               json=body)
        assert response.status_code == 404, action
    listed = client.get("/api/v1/reminders", headers=advocate).json()["items"]
    assert made["id"] not in [item["id"] for item in listed]


def test_another_agency_and_partner_apps_are_refused(client: TestClient, db: Session,
                                                     agency: Agency) -> None:
    from tests.test_authorization_matrix import partner_token

    token, _ = partner_token(db, agency.org.id, "referrals:read referrals:write")
    db.commit()
    assert client.get("/api/v1/reminders", headers=bearer(token)).status_code == 403
    assert client.post("/api/v1/reminders", headers=bearer(token),
                       json={"due_at": _soon()}).status_code == 403
    other = make_org(db)
    from tests.support.identity import make_user

    stranger = make_user(db, other, "supervisor")
    db.commit()
    made = client.post("/api/v1/reminders", headers=bearer(staff_token(db, agency.advocate)),
                       json={"due_at": _soon()}).json()
    assert client.get(f"/api/v1/reminders/{made['id']}",
                      headers=bearer(staff_token(db, stranger))).status_code == 404
    response = client.post("/api/v1/reminders", headers=bearer(staff_token(db, agency.advocate)),
                           json={"due_at": _soon(), "assignee_id": str(stranger.id)})
    assert response.status_code == 422


def test_create_list_snooze_complete_reassign(client: TestClient, db: Session,
                                              agency: Agency) -> None:
    headers = bearer(staff_token(db, agency.advocate))
    made = client.post("/api/v1/reminders", headers=headers,
                       json={"due_at": (utcnow() + timedelta(hours=3)).astimezone().isoformat(),
                             "client_id": str(agency.client_id), "note": NOTE})
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["note"] == NOTE and body["state"] == "scheduled"
    assert body["case_number"] and body["assignee_id"] == str(agency.advocate.id)
    stored = db.get(Reminder, UUID(body["id"]))
    assert stored is not None and NOTE not in (stored.note or "")  # encrypted at rest

    listing = client.get("/api/v1/reminders", headers=headers,
                         params={"mine": "true", "state": "scheduled",
                                 "due_before": (utcnow() + timedelta(days=1)).isoformat()})
    assert [item["id"] for item in listing.json()["items"]] == [body["id"]]
    assert client.get("/api/v1/reminders", headers=headers, params={
        "due_before": (utcnow() + timedelta(hours=1)).isoformat()}).json()["items"] == []

    snoozed = client.post(f"/api/v1/reminders/{body['id']}/snooze", headers=headers,
                          json={"until": _soon(30)}).json()
    assert snoozed["due_at"] > body["due_at"]
    supervisor = bearer(staff_token(db, agency.supervisor))
    moved = client.post(f"/api/v1/reminders/{body['id']}/reassign", headers=supervisor,
                        json={"assignee_id": str(agency.colleague.id)})
    assert moved.status_code == 200 and moved.json()["assignee_id"] == str(agency.colleague.id)
    # Still in the advocate's caseload, so still within their reach.
    done = client.post(f"/api/v1/reminders/{body['id']}/complete", headers=headers)
    assert done.status_code == 200 and done.json()["state"] == "completed"
    assert client.post(f"/api/v1/reminders/{body['id']}/snooze", headers=headers,
                       json={"until": _soon(30)}).status_code == 409


def test_rules_are_for_supervisors_and_admins(client: TestClient, db: Session,
                                              agency: Agency) -> None:
    advocate = bearer(staff_token(db, agency.advocate))
    supervisor = bearer(staff_token(db, agency.supervisor))
    assert client.get("/api/v1/reminder-settings", headers=advocate).status_code == 403
    rules = client.get("/api/v1/reminder-settings", headers=supervisor).json()
    assert rules["court_date"]["lead_days"] == [7, 1]
    assert rules["protective_order_expiry"]["lead_days"] == [30, 7]
    rules["court_date"]["lead_days"] = [3]
    # "localtime" is a file of the system's zone folder, not a zone name: refused as
    # everywhere else (app.core.timezones).
    for bad in ("Mars/Olympus", "localtime", "posixrules"):
        rules["time_zone"] = bad
        refused = client.put("/api/v1/reminder-settings", headers=supervisor, json=rules)
        assert refused.status_code == 422, bad
        assert refused.json()["errors"][0]["field"] == "time_zone"
    rules["time_zone"] = "Europe/London"
    saved = client.put("/api/v1/reminder-settings", headers=supervisor, json=rules)
    assert saved.status_code == 200 and saved.json()["court_date"]["lead_days"] == [3]
    assert client.put("/api/v1/reminder-settings", headers=advocate,
                      json=rules).status_code == 403


def test_preferences(client: TestClient, db: Session, agency: Agency) -> None:
    headers = bearer(staff_token(db, agency.advocate))
    assert client.get("/api/v1/notification-preferences", headers=headers).json()[
        "daily_digest"] is False
    assert client.put("/api/v1/notification-preferences", headers=headers,
                      json={"quiet_start": "22:00"}).status_code == 422
    for bad in ("localtime", "Mars/Olympus"):
        refused = client.put("/api/v1/notification-preferences", headers=headers,
                             json={"time_zone": bad})
        assert refused.status_code == 422, bad
        assert refused.json()["errors"][0]["field"] == "time_zone"
    saved = client.put("/api/v1/notification-preferences", headers=headers,
                       json={"quiet_start": "22:00", "quiet_end": "07:00",
                             "time_zone": "Europe/London"})
    assert saved.status_code == 200
    assert client.get("/api/v1/notification-preferences",
                      headers=headers).json()["quiet_end"] == "07:00"
