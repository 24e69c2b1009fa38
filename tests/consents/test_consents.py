"""Releases of information: may_disclose refuses every case it must, the API validates,
conflicts, scopes and encrypts."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from app.clients.models import Client
from app.consents import service
from app.consents.models import ReleaseOfInformation
from app.core.audit import AuditEvent
from app.db import utcnow
from tests.consents.factories import make_client
from tests.support.identity import bearer, make_org, make_partner_app, make_user, staff_token
from tests.support.privacy import assert_not_stored

SHELTER = "Fictional Harbour Shelter"


@pytest.fixture
def agency(db: Session):
    org = make_org(db)
    people = {role: make_user(db, org, role) for role in ("admin", "supervisor", "advocate",
                                                          "auditor")}
    people["colleague"] = make_user(db, org, "advocate")
    tokens = {name: staff_token(db, user) for name, user in people.items()}
    app, _ = make_partner_app(db, org)
    db.commit()
    return org, people, tokens, app


@pytest.fixture
def new_client(db: Session, agency):
    """A new client in the advocate's caseload."""
    org, people, _, _ = agency

    def make(*_: object) -> str:
        client_id = make_client(db, org, people["advocate"])
        db.commit()
        return client_id

    return make


def release_body(**overrides) -> dict:
    body = {"recipient_name": SHELTER, "purpose": "Fictional: arrange a shelter place",
            "categories": ["contact_details", "safety_plan"], "how_given": "written",
            "expires_at": (utcnow() + timedelta(days=90)).isoformat()}
    return {k: v for k, v in (body | overrides).items() if v is not None}


def record(client, token: str, client_id: str, expect: int = 201, **overrides) -> dict:
    response = client.post(f"/api/v1/clients/{client_id}/consents",
                           json=release_body(**overrides), headers=bearer(token))
    assert response.status_code == expect, response.text
    return response.json()


def fields(response) -> set[str]:
    return {e["field"] for e in response.json().get("errors", [])}


# --- may_disclose: refusals first ----------------------------------------------------------


def test_no_release_means_no_disclosure(client, agency, new_client, db) -> None:
    _, _, tokens, app = agency
    client_id = UUID(new_client(client, tokens["advocate"]))
    for kwargs in ({"recipient_name": SHELTER}, {"recipient_app_id": app.id}):
        decision = service.may_disclose(db, client_id=client_id, category="contact_details",
                                        **kwargs)
        assert (decision.allowed, decision.consent_id) == (False, None)
        assert decision.reason == "no release for this recipient"


def test_wrong_recipient_is_refused(client, agency, new_client, db) -> None:
    _, _, tokens, app = agency
    client_id = new_client(client, tokens["advocate"])
    record(client, tokens["advocate"], client_id)
    for kwargs in ({"recipient_name": "Fictional Other Agency"}, {"recipient_app_id": app.id}):
        decision = service.may_disclose(db, client_id=UUID(client_id),
                                        category="contact_details", **kwargs)
        assert not decision.allowed and decision.reason == "no release for this recipient"


def test_release_does_not_cover_another_clients_data(client, agency, new_client, db) -> None:
    _, _, tokens, _ = agency
    mine = new_client(client, tokens["advocate"])
    other = new_client(client, tokens["advocate"])
    record(client, tokens["advocate"], mine)
    decision = service.may_disclose(db, client_id=UUID(other), recipient_name=SHELTER,
                                    category="contact_details")
    assert not decision.allowed and decision.reason == "no release for this recipient"


def test_category_not_covered_is_refused(client, agency, new_client, db) -> None:
    _, _, tokens, _ = agency
    client_id = UUID(new_client(client, tokens["advocate"]))
    record(client, tokens["advocate"], str(client_id))
    for category in ("address", "evidence", "identity"):
        decision = service.may_disclose(db, client_id=client_id, recipient_name=SHELTER,
                                        category=category)
        assert (decision.allowed, decision.consent_id) == (False, None)
        assert decision.reason == "category not covered"


def test_expired_release_is_refused(client, agency, new_client, db) -> None:
    _, _, tokens, _ = agency
    client_id = UUID(new_client(client, tokens["advocate"]))
    created = record(client, tokens["advocate"], str(client_id))
    later = utcnow() + timedelta(days=91)
    decision = service.may_disclose(db, client_id=client_id, recipient_name=SHELTER,
                                    category="contact_details", at=later)
    assert (decision.allowed, decision.consent_id, decision.reason) == (
        False, None, "release expired")
    at_expiry = db.get(ReleaseOfInformation, UUID(created["id"])).expires_at
    assert not service.may_disclose(db, client_id=client_id, recipient_name=SHELTER,
                                    category="contact_details", at=at_expiry).allowed


def test_revoked_release_is_refused_from_revocation_on(client, agency, new_client, db) -> None:
    _, _, tokens, _ = agency
    client_id = new_client(client, tokens["advocate"])
    created = record(client, tokens["advocate"], client_id)
    before = utcnow()
    response = client.post(f"/api/v1/clients/{client_id}/consents/{created['id']}/revoke",
                           json={"reason": "Fictional: client changed her mind"},
                           headers=bearer(tokens["advocate"]))
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "revoked"
    decision = service.may_disclose(db, client_id=UUID(client_id), recipient_name=SHELTER,
                                    category="contact_details")
    assert (decision.allowed, decision.consent_id, decision.reason) == (
        False, None, "release revoked")
    # What was disclosed before the revocation was covered then.
    assert service.may_disclose(db, client_id=UUID(client_id), recipient_name=SHELTER,
                                category="contact_details", at=before).allowed
    again = client.post(f"/api/v1/clients/{client_id}/consents/{created['id']}/revoke",
                        json={"reason": "twice"}, headers=bearer(tokens["advocate"]))
    assert again.status_code == 409


def test_not_yet_effective_release_is_refused(client, agency, new_client, db) -> None:
    _, _, tokens, _ = agency
    client_id = new_client(client, tokens["advocate"])
    start = utcnow() + timedelta(days=7)
    record(client, tokens["advocate"], client_id, effective_from=start.isoformat())
    decision = service.may_disclose(db, client_id=UUID(client_id), recipient_name=SHELTER,
                                    category="safety_plan")
    assert (decision.allowed, decision.consent_id, decision.reason) == (
        False, None, "not yet effective")
    assert service.may_disclose(db, client_id=UUID(client_id), recipient_name=SHELTER,
                                category="safety_plan", at=start + timedelta(days=1)).allowed


def test_valid_release_allows_with_its_id(client, agency, new_client, db) -> None:
    _, _, tokens, app = agency
    client_id = new_client(client, tokens["advocate"])
    named = record(client, tokens["advocate"], client_id)
    to_app = record(client, tokens["advocate"], client_id, recipient_name=None,
                    recipient_app_id=str(app.id), categories=["risk_assessment"])
    # The same agency however it is spelled.
    decision = service.may_disclose(db, client_id=UUID(client_id),
                                    recipient_name="  fictional HARBOUR   shelter ",
                                    category="safety_plan")
    assert (decision.allowed, decision.consent_id) == (True, UUID(named["id"]))
    decision = service.may_disclose(db, client_id=UUID(client_id), recipient_app_id=app.id,
                                    category="risk_assessment")
    assert (decision.allowed, decision.consent_id) == (True, UUID(to_app["id"]))


def test_purged_client_discloses_nothing(client, agency, new_client, db) -> None:
    _, _, tokens, _ = agency
    client_id = new_client(client, tokens["advocate"])
    record(client, tokens["advocate"], client_id)
    db.get(Client, UUID(client_id)).purged_at = utcnow()
    db.commit()
    decision = service.may_disclose(db, client_id=UUID(client_id), recipient_name=SHELTER,
                                    category="contact_details")
    assert not decision.allowed


def test_may_disclose_refuses_to_guess(client, agency, new_client, db) -> None:
    _, _, tokens, app = agency
    client_id = UUID(new_client(client, tokens["advocate"]))
    with pytest.raises(ValueError):
        service.may_disclose(db, client_id=client_id, recipient_name=SHELTER, category="names")
    with pytest.raises(ValueError):
        service.may_disclose(db, client_id=client_id, category="identity")
    with pytest.raises(ValueError):
        service.may_disclose(db, client_id=client_id, recipient_name=SHELTER,
                             recipient_app_id=app.id, category="identity")


# --- recording: validation, conflicts, reach -----------------------------------------------


@pytest.mark.parametrize(("overrides", "field"), [
    ({"categories": []}, "categories"),
    ({"categories": ["contact_details", "bank_details"]}, "categories.1"),
    ({"how_given": "nodded"}, "how_given"),
    ({"expires_at": None}, "expires_at"),
    ({"expires_at": "2030-01-01T00:00:00"}, "expires_at"),  # no offset
    ({"purpose": ""}, "purpose"),
    ({"surprise": True}, "surprise"),
])
def test_schema_validation_names_the_field(client, agency, new_client, overrides, field) -> None:
    _, _, tokens, _ = agency
    client_id = new_client(client, tokens["advocate"])
    response = client.post(f"/api/v1/clients/{client_id}/consents",
                           json=release_body(**overrides), headers=bearer(tokens["advocate"]))
    assert response.status_code == 422, response.text
    assert field in fields(response)


def test_dates_are_checked(client, agency, new_client) -> None:
    _, _, tokens, _ = agency
    client_id = new_client(client, tokens["advocate"])
    now = utcnow()
    cases = [
        ({"effective_from": (now + timedelta(days=10)).isoformat(),
          "expires_at": (now + timedelta(days=5)).isoformat()}, "expires_at"),
        ({"expires_at": (now - timedelta(days=1)).isoformat()}, "expires_at"),
        ({"expires_at": (now + timedelta(days=366 + 1)).isoformat()}, "expires_at"),
        ({"given_at": (now + timedelta(days=1)).isoformat()}, "given_at"),
        ({"given_at": (now - timedelta(days=2)).isoformat(),
          "effective_from": (now - timedelta(days=3)).isoformat()}, "effective_from"),
    ]
    for overrides, field in cases:
        response = client.post(f"/api/v1/clients/{client_id}/consents",
                               json=release_body(**overrides), headers=bearer(tokens["advocate"]))
        assert response.status_code == 422, (overrides, response.text)
        assert fields(response) == {field}, overrides


def test_exactly_one_recipient(client, agency, new_client) -> None:
    _, _, tokens, app = agency
    client_id = new_client(client, tokens["advocate"])
    both = client.post(f"/api/v1/clients/{client_id}/consents",
                       json=release_body(recipient_app_id=str(app.id)),
                       headers=bearer(tokens["advocate"]))
    neither = client.post(f"/api/v1/clients/{client_id}/consents",
                          json=release_body(recipient_name=None),
                          headers=bearer(tokens["advocate"]))
    blank = client.post(f"/api/v1/clients/{client_id}/consents",
                        json=release_body(recipient_name="   "),
                        headers=bearer(tokens["advocate"]))
    for response in (both, neither, blank):
        assert response.status_code == 422 and "recipient_app_id" in fields(response)


def test_partner_app_of_another_agency_is_not_a_recipient(client, agency, new_client, db) -> None:
    _, _, tokens, _ = agency
    foreign, _ = make_partner_app(db, make_org(db), name="Fictional Foreign App")
    db.commit()
    client_id = new_client(client, tokens["advocate"])
    response = client.post(f"/api/v1/clients/{client_id}/consents",
                           json=release_body(recipient_name=None,
                                             recipient_app_id=str(foreign.id)),
                           headers=bearer(tokens["advocate"]))
    assert response.status_code == 422 and fields(response) == {"recipient_app_id"}
    assert "Foreign" not in response.text
    assert db.scalar(sa.select(sa.func.count()).select_from(ReleaseOfInformation).where(
        ReleaseOfInformation.client_id == UUID(client_id))) == 0
    assert not service.may_disclose(db, client_id=UUID(client_id), recipient_app_id=foreign.id,
                                    category="contact_details").allowed


def test_one_unexpired_release_per_recipient(client, agency, new_client) -> None:
    _, _, tokens, app = agency
    client_id = new_client(client, tokens["advocate"])
    first = record(client, tokens["advocate"], client_id)
    # The same agency spelled differently is the same recipient.
    conflict = record(client, tokens["advocate"], client_id, expect=409,
                      recipient_name="FICTIONAL harbour shelter")
    assert conflict["status"] == 409
    # A pending (not yet effective) release blocks too: it would overlap.
    to_app = record(client, tokens["advocate"], client_id, recipient_name=None,
                    recipient_app_id=str(app.id),
                    effective_from=(utcnow() + timedelta(days=3)).isoformat())
    record(client, tokens["advocate"], client_id, expect=409, recipient_name=None,
           recipient_app_id=str(app.id))
    del to_app
    assert client.post(f"/api/v1/clients/{client_id}/consents/{first['id']}/revoke",
                       json={"reason": "Fictional: replaced"},
                       headers=bearer(tokens["advocate"])).status_code == 200
    second = record(client, tokens["advocate"], client_id,
                    categories=["contact_details", "address"])
    listed = client.get(f"/api/v1/clients/{client_id}/consents",
                        headers=bearer(tokens["advocate"])).json()["items"]
    named = [r for r in listed if r["recipient_name"]]
    assert [r["id"] for r in named] == [second["id"], first["id"]]  # newest first
    assert [r["status"] for r in named] == ["active", "revoked"]


def test_revocation_needs_a_reason_and_the_right_client(client, agency, new_client) -> None:
    _, _, tokens, _ = agency
    client_id = new_client(client, tokens["advocate"])
    other_id = new_client(client, tokens["advocate"])
    created = record(client, tokens["advocate"], client_id)
    url = f"/api/v1/clients/{client_id}/consents/{created['id']}/revoke"
    for body in ({}, {"reason": ""}):
        response = client.post(url, json=body, headers=bearer(tokens["advocate"]))
        assert response.status_code == 422 and "reason" in fields(response)
    response = client.post(f"/api/v1/clients/{other_id}/consents/{created['id']}/revoke",
                           json={"reason": "Fictional: wrong client"},
                           headers=bearer(tokens["advocate"]))
    assert response.status_code == 404


def test_personal_text_is_encrypted_at_rest(client, agency, new_client, db) -> None:
    _, _, tokens, _ = agency
    client_id = new_client(client, tokens["advocate"])
    created = record(client, tokens["advocate"], client_id,
                     purpose="Fictional purpose: Zanzibar housing")
    client.post(f"/api/v1/clients/{client_id}/consents/{created['id']}/revoke",
                json={"reason": "Fictional reason: Quixotic change"},
                headers=bearer(tokens["advocate"]))
    row = db.execute(sa.text("SELECT * FROM release_of_information WHERE id = :id"),
                     {"id": UUID(created["id"]).hex if db.get_bind().dialect.name == "sqlite"
                      else UUID(created["id"])}).mappings().one()
    stored = " ".join(str(v) for v in row.values()).lower()
    assert_not_stored(stored, ("harbour shelter", "zanzibar", "quixotic"), ignore_case=True)
    read = client.get(f"/api/v1/clients/{client_id}/consents",
                      headers=bearer(tokens["advocate"])).json()["items"][0]
    assert read["recipient_name"] == SHELTER
    assert read["purpose"] == "Fictional purpose: Zanzibar housing"
    assert read["revocation_reason"] == "Fictional reason: Quixotic change"


def test_no_release_is_needed_to_open_or_serve_a_client(client, agency, new_client) -> None:
    _, _, tokens, _ = agency
    client_id = new_client(client, tokens["advocate"])
    assert client.get(f"/api/v1/clients/{client_id}/consents",
                      headers=bearer(tokens["advocate"])).json()["items"] == []


# --- who may --------------------------------------------------------------------------------


def test_who_may_record_and_read(client, agency, new_client) -> None:
    _, _, tokens, _ = agency
    client_id = new_client(client, tokens["advocate"])
    url = f"/api/v1/clients/{client_id}/consents"
    assert client.post(url, json=release_body(),
                       headers=bearer(tokens["auditor"])).status_code == 403
    assert client.post(url, json=release_body(),
                       headers=bearer(tokens["admin"])).status_code == 404
    assert client.post(url, json=release_body(),
                       headers=bearer(tokens["colleague"])).status_code == 404
    assert client.get(url, headers=bearer(tokens["colleague"])).status_code == 404
    assert client.get(url, headers=bearer(tokens["admin"])).status_code == 404
    assert client.get(url, headers=bearer(tokens["auditor"])).status_code == 403
    assert client.post(url, json=release_body()).status_code == 401
    created = record(client, tokens["advocate"], client_id)
    assert client.post(f"{url}/{created['id']}/revoke", json={"reason": "Fictional"},
                       headers=bearer(tokens["colleague"])).status_code == 404
    # A supervisor reaches every client of the agency.
    listed = client.get(url, headers=bearer(tokens["supervisor"]))
    assert [r["id"] for r in listed.json()["items"]] == [created["id"]]


def test_another_agency_finds_nothing(client, agency, new_client, db) -> None:
    _, _, tokens, _ = agency
    client_id = new_client(client, tokens["advocate"])
    created = record(client, tokens["advocate"], client_id)
    outsider = staff_token(db, make_user(db, make_org(db), "supervisor"))
    db.commit()
    url = f"/api/v1/clients/{client_id}/consents"
    assert client.get(url, headers=bearer(outsider)).status_code == 404
    assert client.post(url, json=release_body(recipient_name="Fictional Outsider"),
                       headers=bearer(outsider)).status_code == 404
    assert client.post(f"{url}/{created['id']}/revoke", json={"reason": "Fictional"},
                       headers=bearer(outsider)).status_code == 404


def test_reads_and_writes_are_audited(client, agency, new_client, db) -> None:
    _, people, tokens, _ = agency
    client_id = new_client(client, tokens["advocate"])
    created = record(client, tokens["advocate"], client_id)
    client.get(f"/api/v1/clients/{client_id}/consents", headers=bearer(tokens["supervisor"]))
    client.post(f"/api/v1/clients/{client_id}/consents/{created['id']}/revoke",
                json={"reason": "Fictional"}, headers=bearer(tokens["advocate"]))
    events = db.execute(sa.select(AuditEvent.action, AuditEvent.actor_id).where(
        AuditEvent.object_id.in_([created["id"], client_id]),
        AuditEvent.action.like("consent.%"))).all()
    seen = {(action, actor) for action, actor in events}
    assert ("consent.recorded", str(people["advocate"].id)) in seen
    assert ("consent.listed", str(people["supervisor"].id)) in seen
    assert ("consent.read", str(people["supervisor"].id)) in seen
    assert ("consent.revoked", str(people["advocate"].id)) in seen


def test_listing_is_paginated(client, agency, new_client) -> None:
    _, _, tokens, _ = agency
    client_id = new_client(client, tokens["advocate"])
    ids = [record(client, tokens["advocate"], client_id,
                  recipient_name=f"Fictional Agency {n}")["id"] for n in range(3)]
    url = f"/api/v1/clients/{client_id}/consents"
    first = client.get(url, params={"limit": 2}, headers=bearer(tokens["advocate"])).json()
    assert first["next_cursor"]
    second = client.get(url, params={"limit": 2, "cursor": first["next_cursor"]},
                        headers=bearer(tokens["advocate"])).json()
    assert [r["id"] for r in first["items"] + second["items"]] == ids[::-1]
    assert second["next_cursor"] is None
    other = new_client(client, tokens["advocate"])
    replay = client.get(f"/api/v1/clients/{other}/consents",
                        params={"cursor": first["next_cursor"]},
                        headers=bearer(tokens["advocate"]))
    assert replay.status_code == 400
