"""Protective orders: validation, status changes, reach, encryption at rest, audit, pages."""

from __future__ import annotations

from datetime import date, timedelta
from uuid import UUID

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from app.core.audit import AuditEvent
from app.legal.models import ProtectiveOrder
from tests.consents.factories import make_client
from tests.legal.factories import Agency, fields, partner_headers
from tests.support.identity import bearer
from tests.support.privacy import assert_not_stored

TODAY = date.today()


def url(client_id: str, order_id: str | None = None) -> str:
    base = f"/api/v1/clients/{client_id}/protective-orders"
    return f"{base}/{order_id}" if order_id else base


def body(**overrides) -> dict:
    base = {"order_type": "temporary", "status": "granted",
            "court": "Fictional County Family Court, Room 4B",
            "case_number": "FC-2026-DV-0042-FICT",
            "issued_on": (TODAY - timedelta(days=10)).isoformat(),
            "expires_on": (TODAY + timedelta(days=20)).isoformat(),
            "conditions": ["Stay 100 metres from the fictional residence",
                           "No contact by phone, text or social media"],
            "notes": "Fictional: respondent served by the sheriff's office"}
    return {k: v for k, v in (base | overrides).items() if v is not None}


def record(api, token: str, client_id: str, expect: int = 201, **overrides) -> dict:
    response = api.post(url(client_id), json=body(**overrides), headers=bearer(token))
    assert response.status_code == expect, response.text
    return response.json()


def patch(api, token: str, client_id: str, order_id: str, changes: dict):
    return api.patch(url(client_id, order_id), json=changes, headers=bearer(token))


# --- refusals first -----------------------------------------------------------------------


@pytest.mark.parametrize(("overrides", "field"), [
    ({"expires_on": (TODAY - timedelta(days=11)).isoformat()}, "expires_on"),
    ({"order_type": "restraining_forever"}, "order_type"),
    ({"status": "violated"}, "status"),
    ({"issued_on": "last tuesday"}, "issued_on"),
    ({"issued_on": (TODAY + timedelta(days=3)).isoformat()}, "issued_on"),
    ({"conditions": ["x" * 501]}, "conditions.0"),
    ({"conditions": [f"Fictional condition {i}" for i in range(51)]}, "conditions"),
    ({"court": ""}, "court"),
    ({"respondent_name": "Fictional Person"}, "respondent_name"),
])
def test_invalid_input_names_the_field(client, agency: Agency, overrides, field) -> None:
    response = client.post(url(agency.client_id), json=body(**overrides),
                           headers=bearer(agency.tokens["advocate"]))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in fields(response)
    assert "Fictional County" not in response.text


def test_expiry_before_issue_is_refused_by_name(client, agency: Agency, db: Session) -> None:
    response = client.post(url(agency.client_id), json=body(
        issued_on="2026-03-10", expires_on="2026-03-09"),
        headers=bearer(agency.tokens["advocate"]))
    assert response.status_code == 422 and fields(response) == {"expires_on"}
    assert db.scalar(sa.select(sa.func.count()).select_from(ProtectiveOrder)) == 0


def test_a_granted_order_needs_an_issue_date_and_expired_a_past_expiry(
        client, agency: Agency) -> None:
    token = agency.tokens["advocate"]
    response = client.post(url(agency.client_id), json=body(issued_on=None),
                           headers=bearer(token))
    assert response.status_code == 422 and fields(response) == {"issued_on"}
    response = client.post(url(agency.client_id), json=body(status="expired"),
                           headers=bearer(token))
    assert response.status_code == 422 and fields(response) == {"expires_on"}
    requested = record(client, token, agency.client_id, status="requested", issued_on=None,
                       expires_on=None)
    assert requested["issued_on"] is None and requested["in_force"] is False


def test_status_changes_follow_the_order_of_things(client, agency: Agency) -> None:
    token = agency.tokens["advocate"]
    order = record(client, token, agency.client_id, status="requested", issued_on=None,
                   expires_on=None)
    # Granting needs the issue date, in the same change or before.
    response = patch(client, token, agency.client_id, order["id"], {"status": "granted"})
    assert response.status_code == 422 and fields(response) == {"issued_on"}
    response = patch(client, token, agency.client_id, order["id"], {
        "status": "granted", "issued_on": TODAY.isoformat(),
        "expires_on": (TODAY + timedelta(days=365)).isoformat()})
    assert response.status_code == 200, response.text
    assert response.json()["in_force"] is True
    for wrong in ("requested", "denied", "withdrawn"):
        response = patch(client, token, agency.client_id, order["id"], {"status": wrong})
        assert response.status_code == 422 and fields(response) == {"status"}
    response = patch(client, token, agency.client_id, order["id"], {"status": None})
    assert response.status_code == 422 and fields(response) == {"status"}
    response = patch(client, token, agency.client_id, order["id"],
                     {"expires_on": (TODAY - timedelta(days=1)).isoformat()})
    assert response.status_code == 422 and fields(response) == {"expires_on"}
    dismissed = patch(client, token, agency.client_id, order["id"], {"status": "dismissed"})
    assert dismissed.status_code == 200 and dismissed.json()["in_force"] is False
    response = patch(client, token, agency.client_id, order["id"], {"status": "granted"})
    assert response.status_code == 422 and fields(response) == {"status"}


def test_another_caseload_or_agency_finds_nothing(client, agency: Agency, db: Session) -> None:
    mine = record(client, agency.tokens["advocate"], agency.client_id)
    theirs = make_client(db, agency.org, agency.people["colleague"])
    db.commit()
    stranger = agency.tokens["stranger"]
    for token, target, order_id in (
            (agency.tokens["advocate"], theirs, mine["id"]),
            (stranger, agency.client_id, mine["id"]),
            (agency.tokens["colleague"], agency.client_id, mine["id"]),
            (agency.tokens["admin"], agency.client_id, mine["id"])):
        assert client.get(url(target), headers=bearer(token)).status_code == 404
        assert client.post(url(target), json=body(), headers=bearer(token)).status_code == 404
        assert client.get(url(target, order_id), headers=bearer(token)).status_code == 404
        assert patch(client, token, target, order_id, {"notes": "x"}).status_code == 404
    # An order id under another client of one's own reach is not found either.
    also_mine = make_client(db, agency.org, agency.people["advocate"])
    db.commit()
    assert client.get(url(also_mine, mine["id"]),
                      headers=bearer(agency.tokens["advocate"])).status_code == 404
    assert patch(client, agency.tokens["advocate"], also_mine, mine["id"],
                 {"notes": "x"}).status_code == 404


def test_partner_apps_and_auditors_are_refused(client, agency: Agency) -> None:
    mine = record(client, agency.tokens["advocate"], agency.client_id)
    for headers in (partner_headers(client, agency), bearer(agency.tokens["auditor"])):
        assert client.get(url(agency.client_id), headers=headers).status_code == 403
        assert client.post(url(agency.client_id), json=body(),
                           headers=headers).status_code == 403
        assert client.get(url(agency.client_id, mine["id"]), headers=headers).status_code == 403
        assert client.patch(url(agency.client_id, mine["id"]), json={"notes": "x"},
                            headers=headers).status_code == 403
    assert client.get(url(agency.client_id)).status_code == 401


def test_admin_with_emergency_access_reads_but_does_not_write(client, agency: Agency) -> None:
    mine = record(client, agency.tokens["advocate"], agency.client_id)
    admin = bearer(agency.tokens["admin"])
    granted = client.post(f"/api/v1/clients/{agency.client_id}/break-glass",
                          json={"reason": "Fictional emergency on the hotline"}, headers=admin)
    assert granted.status_code == 201, granted.text
    assert client.get(url(agency.client_id, mine["id"]), headers=admin).status_code == 200
    assert client.post(url(agency.client_id), json=body(), headers=admin).status_code == 403


# --- what works ---------------------------------------------------------------------------


def test_record_read_and_change(client, agency: Agency) -> None:
    token = agency.tokens["advocate"]
    made = record(client, token, agency.client_id)
    assert made["court"] == body()["court"] and made["case_number"] == body()["case_number"]
    assert made["conditions"] == body()["conditions"] and made["in_force"] is True
    assert made["created_by"] == str(agency.people["advocate"].id)
    read = client.get(url(agency.client_id, made["id"]),
                      headers=bearer(agency.tokens["supervisor"]))
    assert read.status_code == 200 and read.json() == made
    changed = patch(client, agency.tokens["supervisor"], agency.client_id, made["id"],
                    {"notes": None, "conditions": ["Fictional: no contact at all"],
                     "expires_on": (TODAY + timedelta(days=200)).isoformat()})
    assert changed.status_code == 200, changed.text
    out = changed.json()
    assert out["notes"] is None and out["conditions"] == ["Fictional: no contact at all"]
    assert out["court"] == made["court"] and out["case_number"] == made["case_number"]
    assert out["updated_by"] == str(agency.people["supervisor"].id)
    # An expired order granted again has been extended.
    expired = record(client, token, agency.client_id,
                     issued_on=(TODAY - timedelta(days=40)).isoformat(),
                     expires_on=(TODAY - timedelta(days=5)).isoformat())
    assert expired["in_force"] is False
    response = patch(client, token, agency.client_id, expired["id"], {"status": "expired"})
    assert response.status_code == 200
    response = patch(client, token, agency.client_id, expired["id"], {
        "status": "granted", "expires_on": (TODAY + timedelta(days=90)).isoformat()})
    assert response.status_code == 200 and response.json()["in_force"] is True


def test_listed_not_yet_issued_first_then_newest_issue(client, agency: Agency) -> None:
    token = agency.tokens["advocate"]
    old = record(client, token, agency.client_id,
                 issued_on=(TODAY - timedelta(days=300)).isoformat(),
                 expires_on=(TODAY - timedelta(days=100)).isoformat(), status="expired")
    pending = record(client, token, agency.client_id, status="requested", issued_on=None,
                     expires_on=None, order_type="final")
    recent = record(client, token, agency.client_id,
                    issued_on=(TODAY - timedelta(days=2)).isoformat(), order_type="emergency",
                    expires_on=(TODAY + timedelta(days=5)).isoformat())
    same_day = record(client, token, agency.client_id,
                      issued_on=(TODAY - timedelta(days=2)).isoformat())
    pages, cursor = [], None
    while True:
        params = {"limit": 1} | ({"cursor": cursor} if cursor else {})
        response = client.get(url(agency.client_id), params=params, headers=bearer(token))
        assert response.status_code == 200, response.text
        pages.append(response.json()["items"])
        cursor = response.json()["next_cursor"]
        if cursor is None:
            break
    assert [page[0]["id"] for page in pages] == [pending["id"], same_day["id"], recent["id"],
                                                 old["id"]]
    tampered = client.get(url(agency.client_id), params={"cursor": "x" + cursor_of(
        client, token, agency.client_id)}, headers=bearer(token))
    assert tampered.status_code == 400


def cursor_of(api, token: str, client_id: str) -> str:
    return api.get(url(client_id), params={"limit": 1},
                   headers=bearer(token)).json()["next_cursor"]


def test_a_cursor_belongs_to_its_client(client, agency: Agency, db: Session) -> None:
    token = agency.tokens["advocate"]
    for _ in range(2):
        record(client, token, agency.client_id)
    other = make_client(db, agency.org, agency.people["advocate"])
    db.commit()
    cursor = cursor_of(client, token, agency.client_id)
    response = client.get(url(other), params={"cursor": cursor}, headers=bearer(token))
    assert response.status_code == 400


def test_personal_fields_are_encrypted_at_rest(client, agency: Agency, db: Session) -> None:
    made = record(client, agency.tokens["advocate"], agency.client_id)
    row = db.execute(sa.select(ProtectiveOrder.__table__).where(
        ProtectiveOrder.id == UUID(made["id"]))).mappings().one()
    stored = " ".join(str(v) for v in row.values())
    assert_not_stored(stored, ["Fictional County Family Court", "FC-2026-DV-0042",
                               "fictional residence", "social media", "sheriff's office"],
                      ignore_case=True)
    assert row["order_type"] == "temporary" and row["status"] == "granted"
    assert row["expires_on"] == TODAY + timedelta(days=20)


def test_every_read_and_write_is_audited(client, agency: Agency, db: Session) -> None:
    token = agency.tokens["advocate"]
    made = record(client, token, agency.client_id)
    patch(client, token, agency.client_id, made["id"], {"status": "dismissed"})
    client.get(url(agency.client_id, made["id"]), headers=bearer(token))
    client.get(url(agency.client_id), headers=bearer(token))
    events = db.scalars(sa.select(AuditEvent).where(AuditEvent.actor_id == str(
        agency.people["advocate"].id)).order_by(AuditEvent.seq)).all()
    actions = [(e.action, e.object_id) for e in events]
    assert ("protective_order.created", made["id"]) in actions
    assert ("protective_order.updated", made["id"]) in actions
    assert actions.count(("protective_order.read", made["id"])) == 2  # one read, one listing
    assert ("protective_order.listed", agency.client_id) in actions
    updated = next(e for e in events if e.action == "protective_order.updated")
    assert updated.details["status"] == "dismissed"
    assert updated.details["status_before"] == "granted"
    text = " ".join(str(e.details) for e in events)
    assert_not_stored(text, ["Fictional County", "FC-2026-DV", "fictional residence"])
