"""The service log: validation, reach, encryption at rest, audit, pagination."""

from __future__ import annotations

from datetime import date, timedelta
from uuid import UUID

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from app.core.audit import AuditEvent
from app.db import utcnow
from app.service_log.models import ServiceContact
from tests.consents.factories import make_client
from tests.support.identity import bearer, make_org, make_user, staff_token


@pytest.fixture
def agency(db: Session):
    org = make_org(db)
    people = {role: make_user(db, org, role) for role in ("admin", "supervisor", "advocate",
                                                          "auditor")}
    people["colleague"] = make_user(db, org, "advocate")
    tokens = {name: staff_token(db, user) for name, user in people.items()}
    client_id = make_client(db, org, people["advocate"])
    db.commit()
    return org, people, tokens, client_id


def body(**overrides) -> dict:
    base = {"kind": "court_accompaniment", "occurred_on": date.today().isoformat(),
            "duration_minutes": 90, "notes": "Fictional: hearing moved to Thursday"}
    return {k: v for k, v in (base | overrides).items() if v is not None}


def log(client, token: str, client_id: str, expect: int = 201, **overrides) -> dict:
    response = client.post(f"/api/v1/clients/{client_id}/contacts", json=body(**overrides),
                           headers=bearer(token))
    assert response.status_code == expect, response.text
    return response.json()


def fields(response) -> set[str]:
    return {e["field"] for e in response.json().get("errors", [])}


@pytest.mark.parametrize(("overrides", "field"), [
    ({"duration_minutes": -1}, "duration_minutes"),
    ({"duration_minutes": 1441}, "duration_minutes"),
    ({"kind": "coffee"}, "kind"),
    ({"kind": None}, "kind"),
    ({"occurred_on": "yesterday"}, "occurred_on"),
    ({"started_at": "2026-01-01T10:00:00"}, "started_at"),  # no offset
    ({"client_name": "Robin"}, "client_name"),
])
def test_invalid_input_names_the_field(client, agency, overrides, field) -> None:
    _, _, tokens, client_id = agency
    response = client.post(f"/api/v1/clients/{client_id}/contacts", json=body(**overrides),
                           headers=bearer(tokens["advocate"]))
    assert response.status_code == 422, response.text
    assert field in fields(response)


def test_dates_must_be_plausible(client, agency) -> None:
    _, _, tokens, client_id = agency
    future = (date.today() + timedelta(days=5)).isoformat()
    response = client.post(f"/api/v1/clients/{client_id}/contacts",
                           json=body(occurred_on=future), headers=bearer(tokens["advocate"]))
    assert response.status_code == 422 and fields(response) == {"occurred_on"}
    elsewhere = (utcnow() - timedelta(days=10)).isoformat()
    response = client.post(f"/api/v1/clients/{client_id}/contacts",
                           json=body(started_at=elsewhere), headers=bearer(tokens["advocate"]))
    assert response.status_code == 422 and fields(response) == {"started_at"}


def test_staff_must_be_of_the_agency(client, agency, db) -> None:
    _, people, tokens, client_id = agency
    outsider = make_user(db, make_org(db), "advocate")
    db.commit()
    for staff in (outsider, people["auditor"], people["admin"]):
        response = client.post(f"/api/v1/clients/{client_id}/contacts",
                               json=body(staff_user_id=str(staff.id)),
                               headers=bearer(tokens["advocate"]))
        assert response.status_code == 422 and fields(response) == {"staff_user_id"}
    assert db.scalar(sa.select(sa.func.count()).select_from(ServiceContact).where(
        ServiceContact.client_id == UUID(client_id))) == 0


def test_another_caseload_or_agency_finds_nothing(client, agency, db) -> None:
    org, people, tokens, client_id = agency
    theirs = make_client(db, org, people["colleague"])
    outsider = staff_token(db, make_user(db, make_org(db), "supervisor"))
    db.commit()
    mine = log(client, tokens["advocate"], client_id)
    for token, target in ((tokens["advocate"], theirs), (outsider, client_id),
                          (tokens["admin"], client_id), (tokens["colleague"], client_id)):
        url = f"/api/v1/clients/{target}/contacts"
        assert client.get(url, headers=bearer(token)).status_code == 404
        assert client.post(url, json=body(), headers=bearer(token)).status_code == 404
    assert client.get(f"/api/v1/clients/{client_id}/contacts/{mine['id']}",
                      headers=bearer(outsider)).status_code == 404
    # A contact id under another client of one's own reach is not found either.
    mine_too = make_client(db, org, people["advocate"])
    db.commit()
    assert client.get(f"/api/v1/clients/{mine_too}/contacts/{mine['id']}",
                      headers=bearer(tokens["advocate"])).status_code == 404
    auditor = client.get(f"/api/v1/clients/{client_id}/contacts",
                         headers=bearer(tokens["auditor"]))
    assert auditor.status_code == 403
    assert client.post(f"/api/v1/clients/{client_id}/contacts", json=body(),
                       headers=bearer(tokens["auditor"])).status_code == 403


def test_log_and_list_newest_first(client, agency) -> None:
    _, people, tokens, client_id = agency
    today = date.today()
    old = log(client, tokens["advocate"], client_id,
              occurred_on=(today - timedelta(days=3)).isoformat(), kind="hotline_call",
              duration_minutes=0, notes=None)
    new = log(client, tokens["advocate"], client_id, kind="shelter_night",
              duration_minutes=1440, staff_user_id=str(people["colleague"].id))
    middle = log(client, tokens["supervisor"], client_id,
                 occurred_on=(today - timedelta(days=1)).isoformat(), kind="transport",
                 started_at=(utcnow() - timedelta(days=1)).isoformat())
    assert new["staff_user_id"] == str(people["colleague"].id)
    assert new["recorded_by"] == str(people["advocate"].id)
    assert old["staff_user_id"] == str(people["advocate"].id) and old["notes"] is None
    url = f"/api/v1/clients/{client_id}/contacts"
    first = client.get(url, params={"limit": 2}, headers=bearer(tokens["advocate"])).json()
    second = client.get(url, params={"limit": 2, "cursor": first["next_cursor"]},
                        headers=bearer(tokens["advocate"])).json()
    assert [c["id"] for c in first["items"] + second["items"]] == [new["id"], middle["id"],
                                                                   old["id"]]
    assert second["next_cursor"] is None
    one = client.get(f"{url}/{new['id']}", headers=bearer(tokens["supervisor"]))
    assert one.status_code == 200 and one.json()["notes"] == body()["notes"]


def test_notes_are_encrypted_and_reads_audited(client, agency, db) -> None:
    _, people, tokens, client_id = agency
    created = log(client, tokens["advocate"], client_id,
                  notes="Fictional: met at the Marigold library")
    row = db.execute(sa.select(ServiceContact.__table__).where(
        ServiceContact.id == UUID(created["id"]))).mappings().one()
    assert "marigold" not in " ".join(str(v) for v in row.values()).lower()
    assert row["kind"] == "court_accompaniment" and row["duration_minutes"] == 90
    client.get(f"/api/v1/clients/{client_id}/contacts", headers=bearer(tokens["supervisor"]))
    client.get(f"/api/v1/clients/{client_id}/contacts/{created['id']}",
               headers=bearer(tokens["advocate"]))
    seen = set(db.execute(sa.select(AuditEvent.action, AuditEvent.actor_id).where(
        AuditEvent.object_id.in_([created["id"], client_id]),
        AuditEvent.action.like("service_contact.%"))).all())
    assert ("service_contact.recorded", str(people["advocate"].id)) in seen
    assert ("service_contact.listed", str(people["supervisor"].id)) in seen
    assert ("service_contact.read", str(people["supervisor"].id)) in seen
    assert ("service_contact.read", str(people["advocate"].id)) in seen
