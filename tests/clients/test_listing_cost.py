"""A caseload page costs the same few SQL statements whatever its size, and opens only the
field it shows (the preferred name); purged clients and altered data behave as before."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from app.clients import service as clients
from app.clients.models import Client
from app.core import keys
from app.core.access import Actor
from app.core.audit import AuditEvent
from app.identity.models import StaffUser
from tests.clients.test_api import FICTIONAL, agency  # noqa: F401 - fixture
from tests.support.costs import Cost, counting
from tests.support.identity import bearer

PAGE_STATEMENTS_AT_MOST = 8


def actor_of(user: StaffUser) -> Actor:
    return Actor(kind="user", id=user.id, org_id=user.org_id, role=user.role)


def open_cases(db: Session, advocate: StaffUser, count: int) -> list[Client]:
    """``count`` clients in ``advocate``'s caseload with every personal field filled."""
    personal = FICTIONAL | {"safe_contact": {"time_zone": "Europe/London", "channels": []},
                            "other_party": {"name": "Fictional Other Person"},
                            "household": {"children": [{"name": "Fictional Child"}],
                                          "pets": []}}
    made = [clients.create_client(db, actor_of(advocate),
                                  personal=personal | {"preferred_name": f"Fictional {n:03d}"}
                                  ).client for n in range(count)]
    db.commit()
    return made


def page_cost(engine: Engine, db: Session, monkeypatch: pytest.MonkeyPatch,
              ask: Callable[[], Any]) -> tuple[Cost, Any]:
    with counting(engine, db, monkeypatch) as cost:
        answer = ask()
    return cost, answer


@pytest.mark.parametrize("who", ["advocate", "supervisor"])
def test_an_api_caseload_page_costs_the_same_statements_at_10_and_50(
        client, agency, db, engine, monkeypatch, who) -> None:  # noqa: F811
    _, people, tokens = agency
    open_cases(db, people["advocate"], 50)
    costs = {}
    for limit in (10, 50):
        cost, response = page_cost(engine, db, monkeypatch, lambda limit=limit: client.get(
            "/api/v1/clients", params={"limit": limit}, headers=bearer(tokens[who])))
        assert response.status_code == 200, response.text
        items = response.json()["items"]
        assert len(items) == limit
        assert all(item["preferred_name"].startswith("Fictional ") for item in items)
        costs[limit] = cost
    assert costs[10].statements == costs[50].statements, costs
    assert costs[50].statements <= PAGE_STATEMENTS_AT_MOST, costs
    # The page shows one personal field: nothing else is decrypted.
    assert (costs[10].decrypted, costs[50].decrypted) == (10, 50)


def test_the_name_search_page_decrypts_only_the_names_it_shows(
        client, agency, db, engine, monkeypatch) -> None:  # noqa: F811
    _, people, tokens = agency
    wanted = open_cases(db, people["advocate"], 3)[1]
    cost, response = page_cost(engine, db, monkeypatch, lambda: client.post(
        "/api/v1/clients/search", json={"name": FICTIONAL["legal_name"], "limit": 2},
        headers=bearer(tokens["advocate"])))
    assert response.status_code == 200
    assert len(response.json()["items"]) == 2 and response.json()["next_cursor"]
    assert cost.decrypted == 2 and cost.statements <= PAGE_STATEMENTS_AT_MOST
    one = client.post("/api/v1/clients/search", json={"name": "Fictional 001"},
                      headers=bearer(tokens["advocate"])).json()["items"]
    assert [item["id"] for item in one] == [str(wanted.id)]


def test_a_purged_client_leaves_the_page_and_an_anonymous_one_stays(
        client, agency, db) -> None:  # noqa: F811
    _, people, tokens = agency
    first, second = open_cases(db, people["advocate"], 2)
    anonymous = clients.create_client(db, actor_of(people["advocate"]), personal={}).client
    clients.purge_client(db, actor_of(people["supervisor"]), first.id)
    db.commit()
    page = client.get("/api/v1/clients", headers=bearer(tokens["advocate"]))
    assert page.status_code == 200
    names = {item["id"]: item["preferred_name"] for item in page.json()["items"]}
    assert names == {str(second.id): "Fictional 001", str(anonymous.id): None}


def test_a_key_destroyed_under_a_listed_client_answers_not_found(
        client, agency, db) -> None:  # noqa: F811
    """As a read of that client does: the page is refused, nothing of it is shown."""
    _, people, tokens = agency
    cases = open_cases(db, people["advocate"], 3)
    keys.shred_client_key(db, cases[2].id)  # shredded, not (yet) marked purged
    db.commit()
    page = client.get("/api/v1/clients", headers=bearer(tokens["advocate"]))
    assert page.status_code == 404
    assert "Fictional" not in page.text


def test_an_altered_name_on_the_page_is_an_integrity_failure(client, agency, db) -> None:  # noqa: F811
    _, people, tokens = agency
    a, b = open_cases(db, people["advocate"], 2)
    moved = db.scalar(sa.select(Client.preferred_name).where(Client.id == a.id))
    db.execute(sa.update(Client).where(Client.id == b.id).values(preferred_name=moved))
    db.commit()
    page = client.get("/api/v1/clients", headers=bearer(tokens["advocate"]))
    assert page.status_code == 500
    assert page.json()["type"] == "urn:advocase:problem:integrity-failure"
    assert "Fictional" not in page.text
    failure = db.scalars(sa.select(AuditEvent).where(
        AuditEvent.action == "integrity.failure")).one()
    assert failure.details["route"] == "/api/v1/clients"
    # Nothing of the refused page was recorded as listed.
    assert not db.scalars(sa.select(AuditEvent).where(
        AuditEvent.action == "client.listed", AuditEvent.object_id == str(a.id))).all()
