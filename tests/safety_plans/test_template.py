"""The agency's starting template for new plans: refused for bad input, for staff who may
not change it and across agencies first; then saved, read back, replaced and audited."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from app.core.audit import AuditEvent
from app.safety_plans import service
from app.safety_plans.models import SafetyPlanTemplate
from tests.support.identity import bearer

URL = "/api/v1/safety-plan-template"


def template(**overrides) -> dict:
    return {"go_bag": ["Fictional documents folder", "Fictional spare glasses"],
            "technology_safety": ["Fictional: router password changed"]} | overrides


def fields(response) -> set[str]:
    return {e["field"] for e in response.json().get("errors", [])}


def saved(db: Session) -> int:
    return db.scalar(sa.select(sa.func.count()).select_from(SafetyPlanTemplate))


def template_events(db: Session) -> list[AuditEvent]:
    return list(db.scalars(sa.select(AuditEvent).where(
        AuditEvent.action == "safety_plan_template.updated").order_by(AuditEvent.seq)))


def builtin() -> dict:
    return {"go_bag": [{"item": i, "ready": False} for i in service.DEFAULT_GO_BAG],
            "technology_safety": [{"item": i, "done": False}
                                  for i in service.DEFAULT_TECHNOLOGY_SAFETY],
            "updated_at": None, "updated_by": None}


# --- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(("payload", "field"), [
    (template(go_bag=["Cash", "   "]), "go_bag.1"),
    (template(go_bag=[""]), "go_bag.0"),
    (template(go_bag=["x" * 201]), "go_bag.0"),
    (template(technology_safety=["Passwords\nchanged"]), "technology_safety.0"),
    (template(technology_safety=["Tab\tinside"]), "technology_safety.0"),
    (template(go_bag=[f"Fictional item {n}" for n in range(51)]), "go_bag"),
    (template(go_bag=["Cash", "Spare keys", "  cash "]), "go_bag"),
    (template(technology_safety=["Two-factor on", "TWO-FACTOR   ON"]), "technology_safety"),
    (template(go_bag=[{"item": "Cash", "ready": False}]), "go_bag.0"),
    (template(go_bag="Cash"), "go_bag"),
    (template(go_bag=None), "go_bag"),
    ({"go_bag": ["Cash"]}, "technology_safety"),
    (template(surprise=True), "surprise"),
])
def test_invalid_templates_are_refused_naming_the_field(client, agency, db, payload,
                                                        field) -> None:
    _, _, tokens = agency
    response = client.put(URL, json=payload, headers=bearer(tokens["supervisor"]))
    assert response.status_code == 422, response.text
    assert field in fields(response), response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert saved(db) == 0 and template_events(db) == []


def test_duplicates_are_named_by_position_not_text(client, agency) -> None:
    _, _, tokens = agency
    response = client.put(URL, json=template(go_bag=["Fictional X", "Cash", "fictional x"]),
                          headers=bearer(tokens["supervisor"]))
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["field"] == "go_bag" and "0 and 2" in error["message"]
    assert "Fictional" not in response.text


@pytest.mark.parametrize("who", ["advocate", "auditor", "colleague"])
def test_only_supervisors_and_admins_change_it(client, agency, db, who) -> None:
    _, _, tokens = agency
    response = client.put(URL, json=template(), headers=bearer(tokens[who]))
    assert response.status_code == 403, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert saved(db) == 0 and template_events(db) == []
    assert client.put(URL, json=template()).status_code == 401
    assert client.get(URL, headers=bearer(tokens["advocate"])).json() == builtin()


def test_another_agency_neither_sees_nor_changes_ours(client, agency, db) -> None:
    org, people, tokens = agency
    ours = client.put(URL, json=template(), headers=bearer(tokens["supervisor"]))
    assert ours.status_code == 200
    # The other agency still starts from the built-in template …
    assert client.get(URL, headers=bearer(tokens["stranger"])).json() == builtin()
    # … and saving its own leaves ours as it was.
    theirs = client.put(URL, json=template(go_bag=["Fictional other-agency item"]),
                        headers=bearer(tokens["stranger"]))
    assert theirs.status_code == 200
    mine = client.get(URL, headers=bearer(tokens["advocate"])).json()
    assert [i["item"] for i in mine["go_bag"]] == template()["go_bag"]
    assert mine["updated_by"] == str(people["supervisor"].id)
    rows = {r.org_id: r.go_bag for r in db.scalars(sa.select(SafetyPlanTemplate))}
    assert rows == {org.id: template()["go_bag"],
                    people["stranger"].org_id: ["Fictional other-agency item"]}


# --- saving and reading -------------------------------------------------------------------


def test_without_a_saved_template_the_builtin_one_applies(client, agency) -> None:
    _, _, tokens = agency
    for who in ("advocate", "supervisor", "admin"):
        assert client.get(URL, headers=bearer(tokens[who])).json() == builtin()


def test_saved_template_is_what_staff_start_from_and_can_be_replaced(client, agency,
                                                                   db) -> None:
    _, people, tokens = agency
    first = client.put(URL, json=template(go_bag=["  Fictional   documents folder ",
                                                  "Fictional spare glasses"]),
                       headers=bearer(tokens["supervisor"]))
    assert first.status_code == 200, first.text
    body = first.json()
    # Surrounding and doubled spaces are tidied away.
    assert body["go_bag"] == [{"item": "Fictional documents folder", "ready": False},
                              {"item": "Fictional spare glasses", "ready": False}]
    assert body["technology_safety"] == [{"item": "Fictional: router password changed",
                                          "done": False}]
    assert body["updated_by"] == str(people["supervisor"].id) and body["updated_at"]
    assert client.get(URL, headers=bearer(tokens["advocate"])).json() == body

    # An admin replaces it as a whole; empty sections are allowed.
    second = client.put(URL, json={"go_bag": ["Fictional cash"], "technology_safety": []},
                        headers=bearer(tokens["admin"]))
    assert second.status_code == 200, second.text
    read = client.get(URL, headers=bearer(tokens["advocate"])).json()
    assert read["go_bag"] == [{"item": "Fictional cash", "ready": False}]
    assert read["technology_safety"] == []
    assert read["updated_by"] == str(people["admin"].id)
    assert read["updated_at"] >= body["updated_at"]
    assert saved(db) == 1

    # Fifty items of 200 characters is the limit, not over it.
    items = [f"{n:03d} " + "x" * 196 for n in range(50)]
    assert client.put(URL, json=template(go_bag=items),
                      headers=bearer(tokens["supervisor"])).status_code == 200


def test_every_change_is_audited_with_counts_not_text(client, agency, db) -> None:
    _, people, tokens = agency
    client.put(URL, json=template(), headers=bearer(tokens["supervisor"]))
    client.put(URL, json=template(technology_safety=[]), headers=bearer(tokens["admin"]))
    events = template_events(db)
    assert [(e.actor_id, e.details) for e in events] == [
        (str(people["supervisor"].id), {"go_bag_items": 2, "technology_safety_items": 1}),
        (str(people["admin"].id), {"go_bag_items": 2, "technology_safety_items": 0}),
    ]
    assert {e.object_id for e in events} == {str(people["supervisor"].org_id)}
    assert "Fictional" not in str([(e.details, e.object_type) for e in events])
