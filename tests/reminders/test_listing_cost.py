"""A page of reminders costs the same few SQL statements however many clients it names
(their clients and data keys are read once for the page), and still opens each note."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session

from app.clients import service as clients_service
from app.core import keys
from app.db import utcnow
from app.reminders import service
from app.reminders.schemas import ReminderCreate
from tests.reminders.conftest import NOTE, Agency, actor_of
from tests.support.costs import counting
from tests.support.identity import bearer, staff_token


def _remind(db: Session, agency: Agency, clients: int) -> None:
    actor = actor_of(agency.advocate)
    for n in range(clients):
        client = clients_service.create_client(
            db, actor, personal={"preferred_name": f"Fictional Listing {n:03d}"}).client
        service.create_reminder(db, actor, ReminderCreate(
            due_at=utcnow() + timedelta(hours=n + 1), client_id=client.id, note=NOTE))
    db.commit()


def _listing(client: TestClient, token: str) -> list[dict]:
    response = client.get("/api/v1/reminders?mine=true&limit=50", headers=bearer(token))
    assert response.status_code == 200, response.text
    return response.json()["items"]


def test_a_shredded_clients_note_is_not_shown_and_the_rest_still_open(
        client: TestClient, db: Session, agency: Agency) -> None:
    _remind(db, agency, 3)
    token = staff_token(db, agency.advocate)
    db.commit()
    first = _listing(client, token)
    shredded = first[0]
    keys.shred_client_key(db, service._find(db, actor_of(agency.advocate),
                                            UUID(shredded["id"])).client_id)
    db.commit()
    keys.clear_key_caches()
    listed = {item["id"]: item for item in _listing(client, token)}
    assert listed[shredded["id"]]["note"] is None
    assert [item["note"] for item in first[1:]] == [NOTE, NOTE]
    assert all(listed[item["id"]]["note"] == NOTE for item in first[1:])


def test_listing_cost_does_not_grow_with_the_clients_on_the_page(
        client: TestClient, db: Session, engine: Engine, agency: Agency,
        monkeypatch: pytest.MonkeyPatch) -> None:
    _remind(db, agency, 2)
    token = staff_token(db, agency.advocate)
    db.commit()
    with counting(engine, db, monkeypatch) as few:
        assert len(_listing(client, token)) == 2
    _remind(db, agency, 10)
    with counting(engine, db, monkeypatch) as many:
        items = _listing(client, token)
    assert len(items) == 12
    assert all(item["note"] == NOTE and item["case_number"] for item in items)
    assert many.statements == few.statements, (few, many)
    assert many.decrypted == 12
