"""A client's incident list reads what it shows and nothing more: the current revisions'
clear columns with each incident's author in one statement, the same few statements at
any page size, never a ciphertext and nothing decrypted; the lines still say who recorded
and who last revised each incident, on the API and on the dashboard."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlmodel import Session

from app.core.access import Actor
from app.incidents import service
from app.incidents.schemas import IncidentCreate
from tests.incidents.conftest import days_ago, incident_body
from tests.support.costs import counting
from tests.support.identity import bearer

# Authentication, the client's reach, the page, its categories, and the audit chain's
# lock, events and head.
PAGE_STATEMENTS_AT_MOST = 7


def record(db: Session, user: Any, client_id: str, count: int) -> None:
    """``count`` incidents of the client, a day apart, through the incidents service."""
    actor = Actor(kind="user", id=user.id, org_id=user.org_id, role=user.role)
    for n in range(count):
        body = incident_body(occurred={"precision": "exact", "start": days_ago(n + 1),
                                       "time_zone": "America/Chicago"})
        service.record_incident(db, actor, UUID(client_id), IncidentCreate.model_validate(body))
    db.commit()


def test_a_page_costs_the_same_few_statements_at_10_and_50_and_reads_no_ciphertext(
        client, agency, client_id, db, engine, monkeypatch) -> None:
    _, people, tokens = agency
    record(db, people["advocate"], client_id, 51)
    costs = {}
    for limit in (10, 50):
        with counting(engine, db, monkeypatch) as cost:
            response = client.get(f"/api/v1/clients/{client_id}/incidents",
                                  params={"limit": limit}, headers=bearer(tokens["advocate"]))
        assert response.status_code == 200, response.text
        assert len(response.json()["items"]) == limit and response.json()["next_cursor"]
        costs[limit] = cost
    assert costs[10].statements == costs[50].statements, costs
    assert costs[50].statements <= PAGE_STATEMENTS_AT_MOST, costs[50].texts
    # A list line shows no narrative: nothing is decrypted, and no ciphertext is even read.
    assert costs[50].decrypted == 0
    for text in costs[50].texts:
        assert "incident_revision.content" not in text, text
        assert "incident_revision.reason" not in text, text


def test_a_list_line_says_who_recorded_and_who_last_revised(client, agency,
                                                           client_id) -> None:
    _, people, tokens = agency
    made = client.post(f"/api/v1/clients/{client_id}/incidents", json=incident_body(),
                       headers=bearer(tokens["advocate"])).json()
    other = client.post(f"/api/v1/clients/{client_id}/incidents", json=incident_body(
        occurred={"precision": "date", "start": days_ago(30)[:10], "time_zone": "UTC"}),
        headers=bearer(tokens["advocate"])).json()
    revised = client.post(f"/api/v1/incidents/{made['id']}/revisions", json=incident_body(
        categories=["threats"]) | {"reason": "Fictional: the category was wrong",
                                   "based_on_revision": 1},
        headers=bearer(tokens["supervisor"]))
    assert revised.status_code == 201, revised.text
    listed = client.get(f"/api/v1/clients/{client_id}/incidents",
                        headers=bearer(tokens["advocate"])).json()["items"]
    assert [line["id"] for line in listed] == [made["id"], other["id"]]
    for line in listed:  # each line is the incident's own summary, field for field
        read = client.get(f"/api/v1/incidents/{line['id']}",
                          headers=bearer(tokens["advocate"])).json()
        assert line == {name: read[name] for name in line}
    assert listed[0]["revision"] == 2 and listed[0]["categories"] == ["threats"]
    assert listed[0]["recorded_by"] == str(people["advocate"].id)
    assert listed[0]["revised_by"] == str(people["supervisor"].id)
    assert listed[0]["recorded_at"] == made["recorded_at"] < listed[0]["revised_at"]


def test_the_dashboard_list_names_who_recorded_each_incident(client, agency, client_id,
                                                             db) -> None:
    from tests.dashboard.helpers import sign_in

    _, people, tokens = agency
    for who, days in (("advocate", 3), ("supervisor", 9)):
        made = client.post(f"/api/v1/clients/{client_id}/incidents", json=incident_body(
            occurred={"precision": "exact", "start": days_ago(days),
                      "time_zone": "America/Chicago"}), headers=bearer(tokens[who]))
        assert made.status_code == 201, made.text
    sign_in(client, db, people["advocate"])
    page = client.get(f"/dashboard/clients/{client_id}/incidents")
    assert page.status_code == 200, page.text
    rows = page.text.split('<table id="incidents"', 1)[1].split("</table>", 1)[0]
    authors = [line.rsplit(" by ", 1)[1].split("<", 1)[0] for line in rows.splitlines()
               if " by " in line]
    assert authors == ["you", people["supervisor"].display_name]  # the signed-in advocate: you
