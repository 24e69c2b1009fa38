"""Risk assessments through the API: scored from data, kept with instrument and version."""

from __future__ import annotations

from uuid import UUID

import sqlalchemy as sa

from app.clients.models import Client
from app.risk.models import RiskAssessment
from tests.clients.test_api import agency, create  # noqa: F401 - fixture
from tests.support.identity import bearer
from tests.support.privacy import assert_not_stored

EXAMPLE = "example-safety-screen"


def instrument(client, token) -> dict:
    response = client.get(f"/api/v1/risk-instruments/{EXAMPLE}", headers=bearer(token))
    assert response.status_code == 200
    return response.json()


def all_no(definition: dict) -> dict:
    answers = {}
    for item in definition["items"]:
        if item["type"] == "yes_no":
            answers[item["id"]] = False
        elif item["type"] == "choice":
            answers[item["id"]] = min(item["options"], key=lambda o: float(o["weight"]))["value"]
        elif item["type"] == "multi_choice":
            answers[item["id"]] = []
        else:
            answers[item["id"]] = item["min"]
    return answers


def test_instruments_are_listed_for_staff(client, agency) -> None:  # noqa: F811
    _, _, tokens = agency
    listed = client.get("/api/v1/risk-instruments", headers=bearer(tokens["advocate"]))
    assert listed.status_code == 200
    assert EXAMPLE in {i["id"] for i in listed.json()}


def test_low_assessment_is_kept_with_instrument_and_version(client, agency, db) -> None:  # noqa: F811
    _, _, tokens = agency
    definition = instrument(client, tokens["advocate"])
    created = create(client, tokens["advocate"])
    url = f"/api/v1/clients/{created['id']}/risk-assessments"
    response = client.post(url, json={"instrument_id": EXAMPLE, "answers": all_no(definition)},
                           headers=bearer(tokens["advocate"]))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["score"] == "0" and body["level"] == definition["levels"][0]["name"]
    assert body["instrument_version"] == definition["version"]
    assert body["is_highest_level"] is False
    stored = db.scalar(sa.select(RiskAssessment.answers))
    assert stored.startswith("c1.")
    assert_not_stored(stored, [item["id"] for item in definition["items"] if len(item["id"]) >= 8])
    history = client.get(url, headers=bearer(tokens["advocate"])).json()["items"]
    assert [h["id"] for h in history] == [body["id"]]
    assert history[0]["answers"] == body["answers"]


def test_critical_answer_reaches_the_highest_level_and_marks_urgent(client, agency, db) -> None:  # noqa: F811
    _, _, tokens = agency
    definition = instrument(client, tokens["advocate"])
    critical = next(i["id"] for i in definition["items"] if i.get("critical"))
    created = create(client, tokens["advocate"])
    answers = all_no(definition) | {critical: True}
    response = client.post(f"/api/v1/clients/{created['id']}/risk-assessments",
                           json={"instrument_id": EXAMPLE, "answers": answers},
                           headers=bearer(tokens["advocate"]))
    assert response.json()["is_highest_level"] is True
    assert response.json()["level"] == definition["levels"][-1]["name"]
    assert db.scalar(sa.select(Client.urgent).where(Client.id == UUID(created["id"]))) is True


def test_bad_answers_name_the_item(client, agency) -> None:  # noqa: F811
    _, _, tokens = agency
    definition = instrument(client, tokens["advocate"])
    created = create(client, tokens["advocate"])
    url = f"/api/v1/clients/{created['id']}/risk-assessments"
    first = definition["items"][0]["id"]
    missing = client.post(url, json={"instrument_id": EXAMPLE, "answers": {first: False}},
                          headers=bearer(tokens["advocate"]))
    assert missing.status_code == 422
    wrong = client.post(url, json={"instrument_id": EXAMPLE,
                                   "answers": all_no(definition) | {first: "perhaps"}},
                        headers=bearer(tokens["advocate"]))
    assert wrong.status_code == 422
    assert any(first in e["field"] for e in wrong.json()["errors"])
    assert "perhaps" not in wrong.text
    unknown = client.post(url, json={"instrument_id": "no-such", "answers": {}},
                          headers=bearer(tokens["advocate"]))
    assert unknown.status_code == 404


def test_agency_adds_an_instrument_and_malformed_ones_are_explained(client, agency) -> None:  # noqa: F811
    _, _, tokens = agency
    good = """
id: agency-screen
version: "1"
name: Fictional agency screen
licence: Fictional licence for tests
language: en
items:
  - {id: q1, text: "First fictional question?", type: yes_no, weight: 2}
  - {id: q2, text: "Second fictional question?", type: yes_no, weight: 3, critical: true}
scoring: {method: sum}
levels:
  - {name: low, min: 0, max: 2}
  - {name: high, min: 3}
"""
    assert client.post("/api/v1/risk-instruments", json={"definition": good},
                       headers=bearer(tokens["advocate"])).status_code == 403
    added = client.post("/api/v1/risk-instruments", json={"definition": good},
                        headers=bearer(tokens["supervisor"]))
    assert added.status_code == 201, added.text
    assert client.post("/api/v1/risk-instruments", json={"definition": good},
                       headers=bearer(tokens["supervisor"])).status_code == 409
    bad = good.replace("weight: 2", "weight: two")
    refused = client.post("/api/v1/risk-instruments",
                          json={"definition": bad.replace('version: "1"', 'version: "2"')},
                          headers=bearer(tokens["supervisor"]))
    assert refused.status_code == 422
    assert any("items[0]" in e["field"] for e in refused.json()["errors"])
    names = {i["id"] for i in client.get("/api/v1/risk-instruments",
                                         headers=bearer(tokens["advocate"])).json()}
    assert "agency-screen" in names


def test_outside_reach_is_not_found(client, agency) -> None:  # noqa: F811
    _, _, tokens = agency
    theirs = create(client, tokens["colleague"])
    url = f"/api/v1/clients/{theirs['id']}/risk-assessments"
    assert client.get(url, headers=bearer(tokens["advocate"])).status_code == 404
    assert client.post(url, json={"instrument_id": EXAMPLE, "answers": {}},
                       headers=bearer(tokens["advocate"])).status_code == 404
