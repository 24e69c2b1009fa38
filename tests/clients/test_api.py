"""Clients through the API: caseloads, encryption at rest, emergency access, erasure."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session

from app.clients.models import BreakGlassGrant, Client
from app.core.audit import AuditEvent
from app.db import utcnow
from app.notifications.models import Notification
from tests.support.identity import bearer, make_org, make_user, staff_token
from tests.support.privacy import assert_not_stored

FICTIONAL = {
    "preferred_name": "Robin Example",
    "legal_name": "Roberta Fictional-Example",
    "aliases": ["Bobbie Example"],
    "date_of_birth": "1990-04-01",
    "contact_details": [{"kind": "phone", "value": "+44 7700 900123", "label": "safe phone"}],
    "address": "1 Imaginary Lane, Nowhere",
    "notes": "Fictional note: prefers calls after 6pm.",
}


@pytest.fixture
def agency(db: Session):
    org = make_org(db)
    people = {role: make_user(db, org, role) for role in ("admin", "supervisor", "advocate",
                                                          "auditor")}
    people["colleague"] = make_user(db, org, "advocate")
    tokens = {name: staff_token(db, user) for name, user in people.items()}
    db.commit()
    return org, people, tokens


def create(client: TestClient, token: str, **fields) -> dict:
    response = client.post("/api/v1/clients", json=FICTIONAL | fields, headers=bearer(token))
    assert response.status_code == 201, response.text
    return response.json()


def test_admin_and_auditor_cannot_open_or_read_clients(client, agency) -> None:
    _, _, tokens = agency
    for role in ("admin", "auditor"):
        assert client.post("/api/v1/clients", json={},
                           headers=bearer(tokens[role])).status_code == 403
    created = create(client, tokens["advocate"])
    assert client.get(f"/api/v1/clients/{created['id']}",
                      headers=bearer(tokens["admin"])).status_code == 404
    assert client.get(f"/api/v1/clients/{created['id']}",
                      headers=bearer(tokens["auditor"])).status_code == 403


def test_anonymous_client_needs_no_personal_data(client, agency) -> None:
    _, _, tokens = agency
    response = client.post("/api/v1/clients", json={}, headers=bearer(tokens["advocate"]))
    assert response.status_code == 201
    body = response.json()
    assert body["legal_name"] is None and body["date_of_birth"] is None
    assert body["case_number"].startswith(f"{utcnow().year}-")


def test_case_numbers_are_sequential_per_agency(client, agency, db) -> None:
    _, _, tokens = agency
    numbers = [create(client, tokens["advocate"])["case_number"] for _ in range(3)]
    sequence = [int(n.split("-")[1]) for n in numbers]
    assert sequence == [sequence[0], sequence[0] + 1, sequence[0] + 2]


def test_the_caseload_pages_through_urgent_clients_first(client, agency, db) -> None:
    _, _, tokens = agency
    made = [create(client, tokens["advocate"]) for _ in range(5)]
    for urgent in made[1:3]:
        db.execute(sa.update(Client).where(Client.id == UUID(urgent["id"])).values(urgent=True))
    db.commit()
    seen, cursor = [], None
    while True:
        query = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get("/api/v1/clients", params=query, headers=bearer(tokens["advocate"]))
        assert page.status_code == 200, page.text
        seen += [item["id"] for item in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(c["id"] for c in made) and len(seen) == len(set(seen))
    assert set(seen[:2]) == {made[1]["id"], made[2]["id"]}


def test_caseload_scoping(client, agency) -> None:
    _, people, tokens = agency
    mine = create(client, tokens["advocate"])
    assert mine["assigned_user_ids"] == [str(people["advocate"].id)]
    # A colleague's client is not there for me, not even by id.
    theirs = create(client, tokens["colleague"])
    assert client.get(f"/api/v1/clients/{theirs['id']}",
                      headers=bearer(tokens["advocate"])).status_code == 404
    listed = client.get("/api/v1/clients", headers=bearer(tokens["advocate"])).json()["items"]
    assert [c["id"] for c in listed] == [mine["id"]]
    # A supervisor sees the whole agency.
    everyone = client.get("/api/v1/clients", headers=bearer(tokens["supervisor"])).json()
    assert {c["id"] for c in everyone["items"]} >= {mine["id"], theirs["id"]}


def test_another_agency_never_sees_the_client(client, agency, db) -> None:
    _, _, tokens = agency
    created = create(client, tokens["advocate"])
    outsider = make_user(db, make_org(db), "supervisor")
    token = staff_token(db, outsider)
    db.commit()
    assert client.get(f"/api/v1/clients/{created['id']}",
                      headers=bearer(token)).status_code == 404
    assert client.post(f"/api/v1/clients/{created['id']}/break-glass",
                       json={"reason": "outsider trying emergency access"},
                       headers=bearer(token)).status_code == 404


def test_personal_fields_are_encrypted_at_rest(client, agency, db) -> None:
    _, _, tokens = agency
    created = create(client, tokens["advocate"])
    row = db.execute(sa.text("SELECT * FROM client WHERE case_number = :n"),
                     {"n": created["case_number"]}).mappings().one()
    stored = " ".join(str(v) for v in row.values())
    assert_not_stored(stored, ("Robin Example", "Roberta Fictional", "1990-04-01",
                               "7700 900123", "Imaginary Lane", "after 6pm", "Bobbie Example"))
    read = client.get(f"/api/v1/clients/{created['id']}", headers=bearer(tokens["advocate"]))
    assert read.json()["legal_name"] == FICTIONAL["legal_name"]
    assert read.json()["contact_details"][0]["value"] == "+44 7700 900123"


def test_ciphertext_moved_to_another_client_does_not_open(client, agency, db) -> None:
    _, _, tokens = agency
    a, b = create(client, tokens["advocate"]), create(client, tokens["advocate"])
    stolen = db.scalar(sa.select(Client.legal_name).where(Client.case_number == a["case_number"]))
    db.execute(sa.update(Client).where(Client.case_number == b["case_number"])
               .values(legal_name=stolen))
    db.commit()
    response = client.get(f"/api/v1/clients/{b['id']}", headers=bearer(tokens["advocate"]))
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "urn:advocase:problem:integrity-failure"
    assert problem["request_id"] and "Roberta" not in response.text
    assert "legal_name" not in response.text and "Traceback" not in response.text
    event = db.scalars(sa.select(AuditEvent).where(AuditEvent.action == "integrity.failure")
                       ).one()
    assert event.outcome == "failure"
    assert event.details["route"] == "/api/v1/clients/{client_id}"


def test_exact_name_search_uses_the_blind_index(client, agency) -> None:
    _, _, tokens = agency
    wanted = create(client, tokens["advocate"], legal_name="Jordan Q. Fictional")
    create(client, tokens["advocate"], legal_name="Someone Else Fictional")
    found = client.post("/api/v1/clients/search", json={"name": "  jordan q.  FICTIONAL "},
                        headers=bearer(tokens["advocate"])).json()["items"]
    assert [c["id"] for c in found] == [wanted["id"]]
    assert client.post("/api/v1/clients/search", json={"name": "Jordan"},
                       headers=bearer(tokens["advocate"])).json()["items"] == []


def test_updates_change_only_what_is_sent_and_closing_needs_a_reason(client, agency) -> None:
    _, _, tokens = agency
    created = create(client, tokens["advocate"])
    url = f"/api/v1/clients/{created['id']}"
    patched = client.patch(url, json={"address": "2 Other Fictional Road"},
                           headers=bearer(tokens["advocate"]))
    assert patched.status_code == 200
    assert patched.json()["address"] == "2 Other Fictional Road"
    assert patched.json()["legal_name"] == FICTIONAL["legal_name"]
    closing = client.patch(url, json={"status": "closed"}, headers=bearer(tokens["advocate"]))
    assert closing.status_code == 422
    assert closing.json()["errors"][0]["field"] == "closing_reason"
    closed = client.patch(url, json={"status": "closed", "closing_reason": "goals_met"},
                          headers=bearer(tokens["advocate"]))
    assert closed.json()["status"] == "closed" and closed.json()["closed_at"]


@pytest.mark.parametrize("field", ["org_id", "id", "case_number", "name_index", "purged_at"])
def test_mass_assignment_is_refused(client, agency, field) -> None:
    _, _, tokens = agency
    response = client.post("/api/v1/clients", json={field: "x"},
                           headers=bearer(tokens["advocate"]))
    assert response.status_code == 422


def test_bad_date_of_birth_is_a_field_error(client, agency) -> None:
    _, _, tokens = agency
    for value in ("01/04/1990", "2999-01-01"):
        response = client.post("/api/v1/clients", json={"date_of_birth": value},
                               headers=bearer(tokens["advocate"]))
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "date_of_birth"


def test_only_supervisors_reassign(client, agency) -> None:
    _, people, tokens = agency
    created = create(client, tokens["advocate"])
    url = f"/api/v1/clients/{created['id']}"
    body = {"assigned_user_ids": [str(people["colleague"].id)]}
    assert client.patch(url, json=body, headers=bearer(tokens["advocate"])).status_code == 403
    moved = client.patch(url, json=body, headers=bearer(tokens["supervisor"]))
    assert moved.json()["assigned_user_ids"] == [str(people["colleague"].id)]
    assert client.get(url, headers=bearer(tokens["advocate"])).status_code == 404
    assert client.get(url, headers=bearer(tokens["colleague"])).status_code == 200
    admin_as_assignee = {"assigned_user_ids": [str(people["admin"].id)]}
    assert client.patch(url, json=admin_as_assignee,
                        headers=bearer(tokens["supervisor"])).status_code == 422


def test_break_glass_is_granted_flagged_notified_audited_and_expires(client, agency, db) -> None:
    _, people, tokens = agency
    theirs = create(client, tokens["colleague"])
    url = f"/api/v1/clients/{theirs['id']}"
    assert client.get(url, headers=bearer(tokens["advocate"])).status_code == 404
    short = client.post(f"{url}/break-glass", json={"reason": "urgent"},
                        headers=bearer(tokens["advocate"]))
    assert short.status_code == 422
    granted = client.post(f"{url}/break-glass",
                          json={"reason": "Client called the hotline in danger tonight"},
                          headers=bearer(tokens["advocate"]))
    assert granted.status_code == 201, granted.text
    read = client.get(url, headers=bearer(tokens["advocate"]))
    assert read.status_code == 200 and read.json()["access"] == "break_glass"

    notes = list(db.scalars(sa.select(Notification).where(Notification.kind == "break_glass")))
    assert [n.user_id for n in notes] == [people["supervisor"].id]
    supervisor_view = client.get("/api/v1/notifications",
                                 headers=bearer(tokens["supervisor"])).json()["items"]
    assert supervisor_view[0]["object_id"] == theirs["id"]
    assert "hotline" not in str(supervisor_view)  # the reason stays encrypted
    events = list(db.scalars(sa.select(AuditEvent).where(
        AuditEvent.action == "client.break_glass")))
    assert events and events[0].details["flagged"] is True
    reads = list(db.scalars(sa.select(AuditEvent).where(AuditEvent.action == "client.read",
                                                        AuditEvent.object_id == theirs["id"])))
    assert reads[-1].details == {"access": "break_glass"}
    stored_reason = db.scalar(sa.select(BreakGlassGrant.reason))
    assert "hotline" not in stored_reason

    db.execute(sa.update(BreakGlassGrant).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.commit()
    assert client.get(url, headers=bearer(tokens["advocate"])).status_code == 404


def test_admin_break_glass_reads_but_cannot_write(client, agency) -> None:
    _, _, tokens = agency
    created = create(client, tokens["advocate"])
    url = f"/api/v1/clients/{created['id']}"
    assert client.post(f"{url}/break-glass", json={"reason": "Court order needs the file now"},
                       headers=bearer(tokens["admin"])).status_code == 201
    assert client.get(url, headers=bearer(tokens["admin"])).status_code == 200
    assert client.patch(url, json={"notes": "x"},
                        headers=bearer(tokens["admin"])).status_code == 403


def test_purge_shreds_the_key_and_the_client_is_gone(client, agency, db) -> None:
    _, _, tokens = agency
    created = create(client, tokens["advocate"])
    url = f"/api/v1/clients/{created['id']}"
    ciphertext = db.scalar(sa.select(Client.notes).where(Client.case_number ==
                                                         created["case_number"]))
    assert client.delete(url, headers=bearer(tokens["advocate"])).status_code == 403
    assert client.delete(url, headers=bearer(tokens["supervisor"])).status_code == 204
    assert client.get(url, headers=bearer(tokens["supervisor"])).status_code == 404
    # A backup copy of the ciphertext is useless: the key that opened it is gone.
    from app.core import keys

    with pytest.raises(keys.KeyDestroyed):
        keys.decrypt_field(db, org_id=agency[0].id, client_id=UUID(created["id"]),
                           table="client", column="notes", row_id=created["id"],
                           ciphertext=ciphertext)


def test_every_read_and_listing_is_audited(client, agency, db) -> None:
    _, people, tokens = agency
    created = create(client, tokens["advocate"])
    client.get(f"/api/v1/clients/{created['id']}", headers=bearer(tokens["advocate"]))
    client.get("/api/v1/clients", headers=bearer(tokens["advocate"]))
    actions = list(db.scalars(sa.select(AuditEvent.action).where(
        AuditEvent.object_id == created["id"], AuditEvent.actor_id == str(people["advocate"].id))))
    assert {"client.created", "client.read", "client.listed"} <= set(actions)
    for event in db.scalars(sa.select(AuditEvent).where(AuditEvent.object_id == created["id"])):
        assert "Roberta" not in str(event.model_dump())
