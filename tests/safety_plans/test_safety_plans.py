"""Safety plans: refused outside reach and for bad input first; then versions that never
change once saved, the current plan, encryption at rest, diffs and the audit trail."""

from __future__ import annotations

import copy
from datetime import timedelta
from uuid import UUID

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from app.core import keys
from app.core.audit import AuditEvent
from app.db import utcnow
from app.safety_plans import service
from app.safety_plans.models import SafetyPlanVersion
from tests.support.identity import bearer
from tests.support.privacy import assert_not_stored

SECRET_PLACE = "Fictional Aunt Rosa's flat on Lindenweg"
SECRET_WORD = "pineapple-fictional"
REASON = "Fictional: I want my kids to grow up without fear"


def plan(**overrides) -> dict:
    """A whole plan, every field given, so what is read back must equal it exactly."""
    content = {
        "safe_places": [{"place": SECRET_PLACE, "how_to_get_there": "Fictional: bus 12"},
                        {"place": "Fictional library", "how_to_get_there": "Walk 10 min"}],
        "go_bag": [{"item": "Passport", "ready": True}, {"item": "Medication", "ready": False},
                   {"item": "Spare keys", "ready": False}],
        "important_contacts": [{"name": "Fictional hotline", "phone": "+1 555 0100",
                                "note": "24/7"}],
        "code_word": {"word": SECRET_WORD, "trusted_person": "Fictional neighbour",
                      "check_in_time": "18:30"},
        "children": "Fictional: school pick-up by grandmother only",
        "pets": "Fictional: dog to the foster network",
        "technology_safety": [{"item": "Passwords changed", "done": True},
                              {"item": "Stalkerware checked", "done": False}],
        "money": "Fictional: separate account opened",
        "housing_and_legal": "Fictional: protective order hearing pending",
        "contact_with_other_party": {"mode": "written_logistics_only",
                                     "notes": "Fictional: via lawyer"},
        "reasons_for_leaving": REASON,
        "notes": "",
    }
    return content | overrides


def body(content: dict | None = None, **overrides) -> dict:
    data = {"content": content if content is not None else plan(),
            "review_date": (utcnow().date() + timedelta(days=30)).isoformat(),
            "change_note": "Fictional: first plan"}
    return {k: v for k, v in (data | overrides).items() if v is not None}


def post(http, token: str, client_id: str, payload: dict, expect: int = 201) -> dict:
    response = http.post(f"/api/v1/clients/{client_id}/safety-plans", json=payload,
                         headers=bearer(token))
    assert response.status_code == expect, response.text
    return response.json()


def fields(response) -> set[str]:
    return {e["field"] for e in response.json().get("errors", [])}


def count(db: Session, client_id: str) -> int:
    return db.scalar(sa.select(sa.func.count()).select_from(SafetyPlanVersion).where(
        SafetyPlanVersion.client_id == UUID(client_id)))


# --- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize("days", [-1, -400])
def test_review_date_in_the_past_is_refused(client, agency, client_id, db, days) -> None:
    _, _, tokens = agency
    review = (utcnow().date() + timedelta(days=days)).isoformat()
    response = client.post(f"/api/v1/clients/{client_id}/safety-plans",
                           json=body(review_date=review), headers=bearer(tokens["advocate"]))
    assert response.status_code == 422 and fields(response) == {"review_date"}
    assert count(db, client_id) == 0


def test_review_date_more_than_a_year_ahead_is_refused(client, agency, client_id, db) -> None:
    _, _, tokens = agency
    today = utcnow().date()
    response = client.post(
        f"/api/v1/clients/{client_id}/safety-plans",
        json=body(review_date=(today + timedelta(days=366)).isoformat()),
        headers=bearer(tokens["advocate"]))
    assert response.status_code == 422 and fields(response) == {"review_date"}
    assert count(db, client_id) == 0
    # The edges are allowed: today, and exactly a year ahead.
    post(client, tokens["advocate"], client_id, body(review_date=today.isoformat()))
    post(client, tokens["advocate"], client_id,
         body(review_date=(today + timedelta(days=365)).isoformat()))


@pytest.mark.parametrize(("payload", "field"), [
    (body(review_date=None) | {"review_date": None}, "review_date"),
    ({k: v for k, v in body().items() if k != "review_date"}, "review_date"),
    (body() | {"surprise": True}, "surprise"),
    (body(plan(address_of_shelter="Fictional")), "content.address_of_shelter"),
    (body(plan(go_bag=[{"item": "Cash", "ready": True, "where": "x"}])), "content.go_bag.0.where"),
    (body(plan(code_word={"word": "x", "trusted_person": "y", "check_in_time": "25:00"})),
     "content.code_word.check_in_time"),
    (body(plan(code_word={"word": "x", "trusted_person": "y", "check_in_time": "6pm"})),
     "content.code_word.check_in_time"),
    (body(plan(contact_with_other_party={"mode": "sometimes", "notes": ""})),
     "content.contact_with_other_party.mode"),
    (body(plan(reasons_for_leaving="x" * 4001)), "content.reasons_for_leaving"),
    (body(plan(go_bag=[{"item": "x", "ready": False}] * 51)), "content.go_bag"),
    (body(plan(safe_places=[{"place": "", "how_to_get_there": ""}])),
     "content.safe_places.0.place"),
    (body(change_note="x" * 501), "change_note"),
])
def test_invalid_plans_are_refused_naming_the_field(client, agency, client_id, db, payload,
                                                    field) -> None:
    _, _, tokens = agency
    response = client.post(f"/api/v1/clients/{client_id}/safety-plans", json=payload,
                           headers=bearer(tokens["advocate"]))
    assert response.status_code == 422, response.text
    assert field in fields(response)
    assert response.headers["content-type"].startswith("application/problem+json")
    assert SECRET_PLACE not in response.text and REASON not in response.text
    assert count(db, client_id) == 0


def test_outside_reach_is_not_found(client, agency, client_id, db) -> None:
    _, _, tokens = agency
    post(client, tokens["advocate"], client_id, body())
    base = f"/api/v1/clients/{client_id}/safety-plans"
    reads = [base, f"{base}/current", f"{base}/1", f"{base}/diff?from=1&to=1"]
    # The colleague (other caseload), another agency and the admin find nothing at all.
    for who in ("colleague", "stranger", "admin"):
        for path in reads:
            response = client.get(path, headers=bearer(tokens[who]))
            assert response.status_code == 404, (who, path, response.text)
            assert SECRET_PLACE not in response.text
        assert client.post(base, json=body(), headers=bearer(tokens[who])).status_code == 404
    # The auditor reads no client data (403), whether the client exists or not.
    for path in reads + [f"/api/v1/clients/{UUID(int=7)}/safety-plans/current"]:
        assert client.get(path, headers=bearer(tokens["auditor"])).status_code == 403
    assert client.post(base, json=body(), headers=bearer(tokens["auditor"])).status_code == 403
    assert client.get(f"/api/v1/clients/{UUID(int=7)}/safety-plans/current",
                      headers=bearer(tokens["advocate"])).status_code == 404
    assert client.get(base, headers={}).status_code == 401
    assert count(db, client_id) == 1


def test_no_plan_and_unknown_versions_are_not_found(client, agency, client_id) -> None:
    _, _, tokens = agency
    base = f"/api/v1/clients/{client_id}/safety-plans"
    headers = bearer(tokens["advocate"])
    assert client.get(f"{base}/current", headers=headers).status_code == 404
    assert client.get(f"{base}/diff", headers=headers).status_code == 404
    assert client.get(base, headers=headers).json() == {"items": [], "next_cursor": None}
    post(client, tokens["advocate"], client_id, body())
    assert client.get(f"{base}/2", headers=headers).status_code == 404
    assert client.get(f"{base}/diff?from=1&to=2", headers=headers).status_code == 404
    assert client.get(f"{base}/0", headers=headers).status_code == 422
    assert client.get(f"{base}/diff?from=0&to=1", headers=headers).status_code == 422


def test_a_taken_version_number_is_retried_once_then_409(client, agency, client_id, db,
                                                         monkeypatch) -> None:
    """A concurrent create that took our number: one retry with a fresh number, and when
    that is taken too, 409 — never two plans with one version."""
    _, _, tokens = agency
    post(client, tokens["advocate"], client_id, body())
    real = service._next_version
    calls: list[int] = []

    def stale_once(db_, client_):
        calls.append(1)
        return 1 if len(calls) == 1 else real(db_, client_)

    monkeypatch.setattr(service, "_next_version", stale_once)
    second = post(client, tokens["advocate"], client_id, body())
    assert second["version"] == 2 and len(calls) == 2

    monkeypatch.setattr(service, "_next_version", lambda db_, client_: 1)
    conflict = post(client, tokens["advocate"], client_id, body(), expect=409)
    assert conflict["status"] == 409 and SECRET_PLACE not in str(conflict)
    versions = db.scalars(sa.select(SafetyPlanVersion.version).where(
        SafetyPlanVersion.client_id == UUID(client_id))).all()
    assert sorted(versions) == [1, 2]


def test_the_database_refuses_a_duplicate_version(agency, client_id, db) -> None:
    """The last line of defence, whatever the service does: unique (client_id, version)."""
    org, people, _ = agency

    def row() -> SafetyPlanVersion:
        return SafetyPlanVersion(org_id=org.id, client_id=UUID(client_id), version=1,
                                 content="x", review_date=utcnow().date(),
                                 created_by=people["advocate"].id)

    db.add(row())
    db.flush()
    with pytest.raises(IntegrityError), db.begin_nested():
        db.add(row())
        db.flush()


# --- versions -----------------------------------------------------------------------------


def test_three_edits_make_three_versions_and_earlier_ones_never_change(
        client, agency, client_id, db) -> None:
    _, people, tokens = agency
    headers = bearer(tokens["advocate"])
    base = f"/api/v1/clients/{client_id}/safety-plans"
    first = plan()
    second = copy.deepcopy(first)
    second["go_bag"][1]["ready"] = True  # medication packed
    third = copy.deepcopy(second)
    third["go_bag"][2]["ready"] = True  # spare keys packed
    third["safe_places"].append({"place": "Fictional shelter", "how_to_get_there": "Hotline"})
    third["code_word"]["check_in_time"] = None

    made = [post(client, tokens["advocate"], client_id, body(first, change_note=None))]
    stored_v1 = db.execute(sa.select(SafetyPlanVersion.content, SafetyPlanVersion.review_date,
                                     SafetyPlanVersion.created_at).where(
        SafetyPlanVersion.client_id == UUID(client_id))).one()
    made += [post(client, tokens["supervisor"], client_id, body(second)),
             post(client, tokens["advocate"], client_id,
                  body(third, change_note="Fictional: moved to shelter"))]
    assert [m["version"] for m in made] == [1, 2, 3]

    current = client.get(f"{base}/current", headers=headers).json()
    assert current["version"] == 3 and current["content"] == third
    assert current["change_note"] == "Fictional: moved to shelter"
    for version, posted in ((1, first), (2, second), (3, third)):
        got = client.get(f"{base}/{version}", headers=headers).json()
        assert got["content"] == posted, version
        assert got["client_id"] == client_id
    assert client.get(f"{base}/1", headers=headers).json()["change_note"] is None
    assert client.get(f"{base}/2", headers=headers).json()["created_by"] == str(
        people["supervisor"].id)
    # Decrypted straight from the rows, too, and version 1's ciphertext was never rewritten.
    rows = db.scalars(sa.select(SafetyPlanVersion).where(
        SafetyPlanVersion.client_id == UUID(client_id)).order_by(SafetyPlanVersion.version))
    assert [service.open_plan(db, r).content for r in rows] == [first, second, third]
    assert db.execute(sa.select(SafetyPlanVersion.content, SafetyPlanVersion.review_date,
                                SafetyPlanVersion.created_at).where(
        SafetyPlanVersion.client_id == UUID(client_id),
        SafetyPlanVersion.version == 1)).one() == stored_v1

    listed = client.get(base, headers=headers).json()
    assert [i["version"] for i in listed["items"]] == [3, 2, 1]
    assert set(listed["items"][0]) == {"version", "review_date", "created_at", "created_by"}
    assert SECRET_PLACE not in str(listed)


def test_listing_is_paginated_newest_first(client, agency, client_id) -> None:
    _, _, tokens = agency
    headers = bearer(tokens["advocate"])
    for _ in range(5):
        post(client, tokens["advocate"], client_id, body())
    base = f"/api/v1/clients/{client_id}/safety-plans"
    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get(base, params=params, headers=headers).json()
        seen += [i["version"] for i in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [5, 4, 3, 2, 1]


def test_plan_text_is_not_stored_in_plaintext(client, agency, client_id, db) -> None:
    _, _, tokens = agency
    created = post(client, tokens["advocate"], client_id,
                   body(change_note="Fictional: changed after the court date"))
    table = SafetyPlanVersion.__table__
    row = db.execute(sa.select(table).where(table.c.client_id == UUID(client_id))
                     ).mappings().all()
    assert len(row) == 1
    raw = " ".join(str(v) for v in row[0].values())
    assert_not_stored(raw, (SECRET_PLACE, SECRET_WORD, REASON, "Passport", "court date",
                            "Fictional: bus 12", "written_logistics_only", "555 0100"))
    # Bound to its row: the ciphertext does not open as another row's plan.
    plan_row = db.scalar(sa.select(SafetyPlanVersion))
    other = SafetyPlanVersion(org_id=plan_row.org_id, client_id=plan_row.client_id, version=9,
                              content=plan_row.content, review_date=plan_row.review_date,
                              created_by=plan_row.created_by)
    with pytest.raises(keys.DecryptionError):
        service.open_plan(db, other)
    assert created["content"]["safe_places"][0]["place"] == SECRET_PLACE


# --- diff ---------------------------------------------------------------------------------


def test_diff_lists_exactly_the_changed_paths(client, agency, client_id) -> None:
    _, _, tokens = agency
    headers = bearer(tokens["advocate"])
    base = f"/api/v1/clients/{client_id}/safety-plans"
    first = plan()
    second = copy.deepcopy(first)
    second["go_bag"][2]["ready"] = True
    third = copy.deepcopy(second)
    third["technology_safety"].append({"item": "Location sharing checked", "done": True})
    third["important_contacts"] = []
    for content in (first, second, third):
        post(client, tokens["advocate"], client_id, body(content))

    one_tick = client.get(f"{base}/diff", params={"from": 1, "to": 2}, headers=headers).json()
    assert one_tick == {"from_version": 1, "to_version": 2, "changes": [
        {"path": "go_bag[2].ready", "before": False, "after": True, "kind": "changed"}]}

    whole = client.get(f"{base}/diff?from=1&to=3", headers=headers).json()
    assert whole["changes"] == [
        {"path": "go_bag[2].ready", "before": False, "after": True, "kind": "changed"},
        {"path": "important_contacts[0]", "before": first["important_contacts"][0],
         "after": None, "kind": "removed"},
        {"path": "technology_safety[2]", "before": None,
         "after": {"item": "Location sharing checked", "done": True}, "kind": "added"},
    ]
    # Defaults: to = current, from = the version before it; backwards works too.
    latest = client.get(f"{base}/diff", headers=headers).json()
    assert (latest["from_version"], latest["to_version"]) == (2, 3)
    assert [c["path"] for c in latest["changes"]] == ["important_contacts[0]",
                                                      "technology_safety[2]"]
    back = client.get(f"{base}/diff?from=2&to=1", headers=headers).json()
    assert back["changes"] == [{"path": "go_bag[2].ready", "before": True, "after": False,
                                "kind": "changed"}]
    same = client.get(f"{base}/diff?from=3&to=3", headers=headers).json()
    assert same["changes"] == []


# --- audit and template -------------------------------------------------------------------


def test_every_read_and_write_is_audited_without_plan_text(client, agency, client_id,
                                                           db) -> None:
    org, people, tokens = agency
    headers = bearer(tokens["supervisor"])
    base = f"/api/v1/clients/{client_id}/safety-plans"
    created = post(client, tokens["supervisor"], client_id, body())
    post(client, tokens["supervisor"], client_id, body())
    client.get(f"{base}/current", headers=headers)
    client.get(f"{base}/1", headers=headers)
    client.get(f"{base}/diff?from=1&to=2", headers=headers)
    client.get(base, headers=headers)
    events = db.execute(sa.select(AuditEvent.action, AuditEvent.actor_id, AuditEvent.details)
                        .where(AuditEvent.action.like("safety_plan.%"),
                               AuditEvent.org_id == org.id)
                        .order_by(AuditEvent.seq)).all()
    assert [e.action for e in events] == [
        "safety_plan.created", "safety_plan.created", "safety_plan.read", "safety_plan.read",
        "safety_plan.diff_read", "safety_plan.listed"]
    assert {e.actor_id for e in events} == {str(people["supervisor"].id)}
    assert [e.details["version"] for e in events[:4]] == [1, 2, 2, 1]
    assert SECRET_PLACE not in str(events) and SECRET_WORD not in str(events)
    assert created["version"] == 1


def test_template_is_a_starting_checklist(client, agency) -> None:
    _, _, tokens = agency
    response = client.get("/api/v1/safety-plan-template", headers=bearer(tokens["advocate"]))
    assert response.status_code == 200
    template = response.json()
    assert {"item": "Passports", "ready": False} in template["go_bag"]
    assert {"item": "Stalkerware checked", "done": False} in template["technology_safety"]
    assert all(not i["ready"] for i in template["go_bag"])
    assert client.get("/api/v1/safety-plan-template",
                      headers=bearer(tokens["auditor"])).status_code == 403
    assert client.get("/api/v1/safety-plan-template").status_code == 401
