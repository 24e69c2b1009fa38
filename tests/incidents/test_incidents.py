"""Incidents over HTTP: bad input and reach refused first; then records that read back
exactly, encryption at rest, revisions that never change once saved, field-level diffs,
retraction, listing and the audit trail."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from app.core.access import Actor
from app.core.audit import AuditEvent
from app.core.errors import Forbidden, NotFound
from app.db import utcnow
from app.incidents import service
from app.incidents.models import Incident, IncidentRevision, IncidentRevisionCategory
from tests.incidents.conftest import (
    ACCOUNT,
    PLACE,
    REPORT_NUMBER,
    SECRETS,
    days_ago,
    incident_body,
)
from tests.support.identity import bearer, make_partner_app
from tests.support.privacy import assert_not_stored


def post(http, token: str, client_id: str, payload: dict, expect: int = 201) -> dict:
    response = http.post(f"/api/v1/clients/{client_id}/incidents", json=payload,
                         headers=bearer(token))
    assert response.status_code == expect, response.text
    return response.json()


def revise(http, token: str, incident_id: str, payload: dict, *, reason: str = "Fictional: "
           "the client remembered the time better", based_on: int = 1,
           expect: int = 201) -> dict:
    response = http.post(f"/api/v1/incidents/{incident_id}/revisions",
                         json=payload | {"reason": reason, "based_on_revision": based_on},
                         headers=bearer(token))
    assert response.status_code == expect, response.text
    return response.json()


def fields(response) -> set[str]:
    assert response.headers["content-type"].startswith("application/problem+json")
    return {e["field"] for e in response.json().get("errors", [])}


def count(db: Session, model: Any = Incident) -> int:
    return db.scalar(sa.select(sa.func.count()).select_from(model))


def when(precision: str, start: str, end: str | None = None,
         time_zone: str = "America/Chicago") -> dict:
    return {"occurred": {"precision": precision, "start": start, "end": end,
                         "time_zone": time_zone}}


def tomorrow() -> str:
    return (utcnow() + timedelta(days=2)).date().isoformat()


# --- refusals: bad input ------------------------------------------------------------------


BAD_INPUT = [
    pytest.param(when("exact", days_ago(3), time_zone="Mars/Olympus_Mons"),
                 "occurred.time_zone", id="unknown time zone"),
    pytest.param(when("exact", days_ago(3), time_zone="localtime"), "occurred.time_zone",
                 id="not an IANA name"),
    pytest.param(when("range", days_ago(3), days_ago(5)), "occurred.end",
                 id="range ends before it starts"),
    pytest.param(when("range", days_ago(3), days_ago(3)), "occurred.end",
                 id="range ends as it starts"),
    pytest.param(when("range", days_ago(3)), "occurred.end", id="range without an end"),
    pytest.param(when("date", days_ago(3)), "occurred.start", id="date only with a time"),
    pytest.param(when("date", days_ago(3)[:10], days_ago(2)[:10]), "occurred.end",
                 id="date with an end"),
    pytest.param(when("exact", days_ago(3)[:10]), "occurred.start", id="exact without a time"),
    pytest.param(when("exact", days_ago(3), days_ago(2)), "occurred.end", id="exact with an end"),
    pytest.param(when("exact", (utcnow() + timedelta(hours=2)).isoformat()), "occurred.start",
                 id="future instant"),
    pytest.param(when("date", tomorrow()), "occurred.start", id="future date"),
    pytest.param(when("range", days_ago(3), tomorrow()), "occurred.end", id="future range end"),
    pytest.param(when("range", tomorrow(), tomorrow()), "occurred.start",
                 id="future range start"),
    pytest.param(when("exact", "2025-03-09T02:30", time_zone="America/New_York"),
                 "occurred.start", id="local time skipped by the clock change"),
    pytest.param(when("exact", "yesterday evening"), "occurred.start", id="not a time"),
    pytest.param(when("date", "2025-02-30"), "occurred.start", id="no such day"),
    pytest.param(when("date", "1899-12-31"), "occurred.start", id="before 1900"),
    pytest.param(when("sometime", days_ago(3)), "occurred.precision", id="unknown precision"),
    pytest.param({"categories": ["physical", "gaslighting"]}, "categories.1",
                 id="unknown category"),
    pytest.param({"categories": []}, "categories", id="no category"),
    pytest.param({"categories": ["threats", "threats"]}, "categories", id="category twice"),
    pytest.param({"surprise": True}, "surprise", id="unknown field"),
    pytest.param({"police": {"involved": True, "badge": "x"}}, "police.badge",
                 id="unknown nested field"),
    pytest.param({"respondent_identifiers": [{"kind": "fax", "value": "x"}]},
                 "respondent_identifiers.0.kind", id="unknown identifier kind"),
    pytest.param({"client_account": "x" * 20001}, "client_account", id="account too long"),
]


@pytest.mark.parametrize(("change", "field"), BAD_INPUT)
def test_bad_input_is_refused_naming_the_field(client, agency, client_id, db, change,
                                               field) -> None:
    _, _, tokens = agency
    response = client.post(f"/api/v1/clients/{client_id}/incidents",
                           json=incident_body(**change), headers=bearer(tokens["advocate"]))
    assert response.status_code == 422, response.text
    assert fields(response) == {field}
    assert count(db) == 0 and count(db, IncidentRevision) == 0
    for secret in SECRETS:  # a refusal never echoes what was sent
        assert secret not in response.text


def test_missing_occurrence_and_categories_are_refused(client, agency, client_id, db) -> None:
    _, _, tokens = agency
    body = {k: v for k, v in incident_body().items() if k not in ("occurred", "categories")}
    response = client.post(f"/api/v1/clients/{client_id}/incidents", json=body,
                           headers=bearer(tokens["advocate"]))
    assert response.status_code == 422 and fields(response) == {"occurred", "categories"}
    assert count(db) == 0


@pytest.mark.parametrize(("extra", "field"), [
    ({"based_on_revision": 1}, "reason"),
    ({"based_on_revision": 1, "reason": "   "}, "reason"),
    ({"based_on_revision": 1, "reason": "x" * 501}, "reason"),
    ({"reason": "Fictional correction"}, "based_on_revision"),
    ({"reason": "Fictional correction", "based_on_revision": 0}, "based_on_revision"),
])
def test_a_revision_needs_a_reason_and_its_base(client, agency, client_id, db, extra,
                                                field) -> None:
    _, _, tokens = agency
    made = post(client, tokens["advocate"], client_id, incident_body())
    response = client.post(f"/api/v1/incidents/{made['id']}/revisions",
                           json=incident_body(place="Fictional elsewhere") | extra,
                           headers=bearer(tokens["advocate"]))
    assert response.status_code == 422 and fields(response) == {field}
    assert count(db, IncidentRevision) == 1


def test_a_stale_edit_is_refused_not_merged(client, agency, client_id, db) -> None:
    _, _, tokens = agency
    made = post(client, tokens["advocate"], client_id, incident_body())
    revise(client, tokens["advocate"], made["id"], incident_body(place="Fictional park A"))
    # A colleague still looking at revision 1 saves: refused, nothing lost.
    revise(client, tokens["supervisor"], made["id"], incident_body(place="Fictional park B"),
           based_on=1, expect=409)
    current = client.get(f"/api/v1/incidents/{made['id']}",
                         headers=bearer(tokens["advocate"])).json()
    assert current["revision"] == 2 and current["place"] == "Fictional park A"


def test_an_edit_that_changes_nothing_is_refused(client, agency, client_id, db) -> None:
    _, _, tokens = agency
    made = post(client, tokens["advocate"], client_id, incident_body())
    response = client.post(f"/api/v1/incidents/{made['id']}/revisions",
                           json=incident_body() | {"reason": "Fictional", "based_on_revision": 1},
                           headers=bearer(tokens["advocate"]))
    assert response.status_code == 422 and fields(response) == {"body"}
    assert count(db, IncidentRevision) == 1


def test_a_retraction_needs_a_reason(client, agency, client_id, db) -> None:
    _, _, tokens = agency
    made = post(client, tokens["advocate"], client_id, incident_body())
    for payload, field in (({}, "reason"), ({"reason": "  "}, "reason"),
                           ({"reason": "Fictional", "extra": 1}, "extra")):
        response = client.post(f"/api/v1/incidents/{made['id']}/retract", json=payload,
                               headers=bearer(tokens["advocate"]))
        assert response.status_code == 422 and fields(response) == {field}
    assert count(db, IncidentRevision) == 1


def test_a_retracted_incident_is_neither_revised_nor_retracted_again(client, agency,
                                                                      client_id) -> None:
    _, _, tokens = agency
    made = post(client, tokens["advocate"], client_id, incident_body())
    retracted = client.post(f"/api/v1/incidents/{made['id']}/retract",
                            json={"reason": "Fictional: entered for the wrong client"},
                            headers=bearer(tokens["advocate"]))
    assert retracted.status_code == 200, retracted.text
    again = client.post(f"/api/v1/incidents/{made['id']}/retract",
                        json={"reason": "Fictional: again"}, headers=bearer(tokens["advocate"]))
    assert again.status_code == 409
    revise(client, tokens["advocate"], made["id"], incident_body(place="Fictional elsewhere"),
           based_on=2, expect=409)


@pytest.mark.parametrize(("query", "field"), [
    ({"category": "gaslighting"}, "category.0"),
    ({"occurred_from": "2026-01-01T00:00:00"}, "occurred_from"),
    ({"occurred_from": "2026-02-01T00:00:00Z", "occurred_to": "2026-01-01T00:00:00Z"},
     "occurred_to"),
])
def test_bad_list_filters_are_refused(client, agency, client_id, query, field) -> None:
    _, _, tokens = agency
    response = client.get(f"/api/v1/clients/{client_id}/incidents", params=query,
                          headers=bearer(tokens["advocate"]))
    assert response.status_code == 422 and fields(response) == {field}


# --- refusals: reach ----------------------------------------------------------------------


def _routes(incident_id: str, client_id: str) -> list[tuple[str, str, dict | None]]:
    return [
        ("GET", f"/api/v1/incidents/{incident_id}", None),
        ("GET", f"/api/v1/incidents/{incident_id}/revisions", None),
        ("POST", f"/api/v1/incidents/{incident_id}/revisions",
         incident_body(place="Fictional other place") | {"reason": "Fictional",
                                                          "based_on_revision": 1}),
        ("POST", f"/api/v1/incidents/{incident_id}/retract", {"reason": "Fictional"}),
        ("GET", f"/api/v1/clients/{client_id}/incidents", None),
        ("POST", f"/api/v1/clients/{client_id}/incidents", incident_body()),
    ]


@pytest.mark.parametrize(("who", "status"), [
    ("colleague", 404),  # same agency, not in their caseload
    ("stranger", 404),   # another agency's supervisor
    ("admin", 404),      # runs accounts, reads no case without emergency access
    ("auditor", 403),    # reads the audit trail, not client records
])
def test_outside_reach_nothing_is_found_or_written(client, agency, client_id, db, who,
                                                   status) -> None:
    _, _, tokens = agency
    made = post(client, tokens["advocate"], client_id, incident_body())
    before = count(db, IncidentRevision)
    for method, path, payload in _routes(made["id"], client_id):
        response = client.request(method, path, json=payload, headers=bearer(tokens[who]))
        assert response.status_code == status, (method, path, response.text)
        for secret in SECRETS:
            assert secret not in response.text
    assert count(db, IncidentRevision) == before and count(db) == 1


def test_partner_apps_never_reach_incidents(client, agency, client_id, db) -> None:
    org, _, tokens = agency
    made = post(client, tokens["advocate"], client_id, incident_body())
    partner, secret = make_partner_app(db, org, scopes=("referrals:read", "referrals:write",
                                                        "resources:read", "resources:write"))
    db.commit()
    token = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                        auth=(partner.client_id, secret)).json()["access_token"]
    for method, path, payload in _routes(made["id"], client_id):
        response = client.request(method, path, json=payload, headers=bearer(token))
        assert response.status_code == 403, (method, path, response.text)
    actor = Actor(kind="partner_app", id=partner.id, org_id=org.id,
                  scopes=frozenset({"referrals:read"}))
    with pytest.raises(NotFound):
        service.get_incident(db, actor, UUID(made["id"]))


def test_emergency_access_reads_but_does_not_write(client, agency, client_id, db) -> None:
    _, people, tokens = agency
    made = post(client, tokens["advocate"], client_id, incident_body())
    grant = client.post(f"/api/v1/clients/{client_id}/break-glass",
                        json={"reason": "Fictional: client called the hotline at night"},
                        headers=bearer(tokens["admin"]))
    assert grant.status_code == 201, grant.text
    read = client.get(f"/api/v1/incidents/{made['id']}", headers=bearer(tokens["admin"]))
    assert read.status_code == 200 and read.json()["place"] == PLACE
    write = client.post(f"/api/v1/incidents/{made['id']}/retract",
                        json={"reason": "Fictional"}, headers=bearer(tokens["admin"]))
    assert write.status_code == 403
    admin = people["admin"]
    actor = Actor(kind="user", id=admin.id, org_id=admin.org_id, role=admin.role)
    with pytest.raises(Forbidden):
        service.get_incident(db, actor, UUID(made["id"]), for_write=True)


def test_a_purged_client_keeps_its_rows_and_they_are_gone_for_good(client, agency, client_id,
                                                                   db) -> None:
    _, _, tokens = agency
    made = post(client, tokens["advocate"], client_id, incident_body())
    revise(client, tokens["advocate"], made["id"], incident_body(place="Fictional park"))
    purged = client.delete(f"/api/v1/clients/{client_id}", headers=bearer(tokens["supervisor"]))
    assert purged.status_code == 204, purged.text
    assert count(db) == 1 and count(db, IncidentRevision) == 2  # nothing deleted...
    for who in ("advocate", "supervisor"):  # ...and nothing readable
        assert client.get(f"/api/v1/incidents/{made['id']}",
                          headers=bearer(tokens[who])).status_code == 404


# --- recording and reading ----------------------------------------------------------------


def test_an_incident_reads_back_exactly_as_recorded(client, agency, client_id, db) -> None:
    _, people, tokens = agency
    body = incident_body()
    response = client.post(f"/api/v1/clients/{client_id}/incidents", json=body,
                           headers=bearer(tokens["advocate"]))
    assert response.status_code == 201, response.text
    made = response.json()
    assert response.headers["location"] == f"/api/v1/incidents/{made['id']}"
    read = client.get(response.headers["location"], headers=bearer(tokens["advocate"])).json()
    assert read == made
    for name in ("place", "client_account", "advocate_observations", "injuries",
                 "medical_care", "witnesses", "police", "children_present", "weapons_involved",
                 "respondent_identifiers", "categories"):
        assert read[name] == body[name], name
    assert read["revision"] == 1 and read["retracted"] is False and read["reason"] is None
    assert read["client_id"] == client_id
    assert read["recorded_by"] == read["revised_by"] == str(people["advocate"].id)
    occurred = read["occurred"]
    local = datetime.fromisoformat(body["occurred"]["start"])
    assert occurred["precision"] == "exact" and occurred["time_zone"] == "America/Chicago"
    assert datetime.fromisoformat(occurred["start"]).replace(tzinfo=None) == local
    assert occurred["end"] is None and occurred["end_utc"] is None
    recorded = datetime.fromisoformat(read["recorded_at"])
    assert abs(recorded - utcnow()) < timedelta(minutes=1)  # server time, not the client's


@pytest.mark.parametrize(("occurred", "start", "end"), [
    ({"precision": "date", "start": "2025-07-04", "time_zone": "Europe/Berlin"},
     "2025-07-04", None),
    ({"precision": "range", "start": "2025-07-01", "end": "2025-07-03",
      "time_zone": "Europe/Berlin"}, "2025-07-01T00:00:00+02:00", "2025-07-04T00:00:00+02:00"),
    ({"precision": "range", "start": "2025-07-01T22:00", "end": "2025-07-02T01:30",
      "time_zone": "Europe/Berlin"}, "2025-07-01T22:00:00+02:00", "2025-07-02T01:30:00+02:00"),
    ({"precision": "exact", "start": "2025-07-01T20:00:00Z", "time_zone": "Europe/Berlin"},
     "2025-07-01T22:00:00+02:00", None),
])
def test_each_precision_keeps_the_client_time_zone(client, agency, client_id, occurred, start,
                                                   end) -> None:
    _, _, tokens = agency
    made = post(client, tokens["advocate"], client_id, incident_body(occurred=occurred))
    assert made["occurred"]["start"] == start and made["occurred"]["end"] == end
    assert made["occurred"]["time_zone"] == "Europe/Berlin"
    if occurred["precision"] == "date":  # the whole local day, in UTC
        assert made["occurred"]["start_utc"] == "2025-07-03T22:00:00Z"
        assert made["occurred"]["end_utc"] == "2025-07-04T22:00:00Z"


def test_personal_content_is_not_stored_in_plaintext(client, agency, client_id, db) -> None:
    _, _, tokens = agency
    made = post(client, tokens["advocate"], client_id, incident_body())
    revise(client, tokens["advocate"], made["id"], incident_body(injuries="Fictional: a cut"),
           reason="Fictional reason mentioning Fictional neighbour Marguerite Okonkwo")
    client.get(f"/api/v1/incidents/{made['id']}", headers=bearer(tokens["advocate"]))
    client.get(f"/api/v1/incidents/{made['id']}/revisions", headers=bearer(tokens["advocate"]))
    stored = []
    for model in (Incident, IncidentRevision, IncidentRevisionCategory, AuditEvent):
        stored += [str(dict(row._mapping)) for row in db.execute(sa.select(model.__table__))]
    raw = " ".join(stored)
    assert_not_stored(raw, SECRETS + ("Fictional: a cut", "mentioning Fictional"))
    assert "c1." in raw and "physical" in raw  # ciphertext, and the categories in clear


def test_a_ciphertext_opens_only_in_its_own_row(client, agency, client_id, db) -> None:
    _, _, tokens = agency
    first = post(client, tokens["advocate"], client_id, incident_body())
    second = post(client, tokens["advocate"], client_id, incident_body(place="Fictional B"))
    rows = {r.incident_id: r for r in db.scalars(sa.select(IncidentRevision))}
    a, b = rows[UUID(first["id"])], rows[UUID(second["id"])]
    from app.core import keys

    with pytest.raises(keys.DecryptionError):
        keys.decrypt_json(db, org_id=b.org_id, client_id=b.client_id, table="incident_revision",
                          column="content", row_id=str(b.id), ciphertext=a.content)


# --- revisions, diffs, retraction ---------------------------------------------------------


def _raw_revisions(db: Session) -> dict[int, dict]:
    rows = db.execute(sa.select(IncidentRevision.__table__)).all()
    return {row.revision: dict(row._mapping) for row in rows}


def test_editing_keeps_every_earlier_revision_unchanged(client, agency, client_id, db) -> None:
    _, people, tokens = agency
    original = incident_body()
    made = post(client, tokens["advocate"], client_id, original)
    first_history = client.get(f"/api/v1/incidents/{made['id']}/revisions",
                               headers=bearer(tokens["advocate"])).json()["items"]
    stored_v1 = _raw_revisions(db)[1]
    second = incident_body(place="Fictional bus stop on Elm Road",
                           occurred={"precision": "exact", "start": days_ago(10, "22:15"),
                                     "time_zone": "America/Chicago"})
    revise(client, tokens["advocate"], made["id"], second)
    third = copy.deepcopy(second)
    third["witnesses"].append({"name": "Fictional shop keeper", "contact": "", "note": ""})
    revise(client, tokens["supervisor"], made["id"], third, based_on=2,
           reason="Fictional: a second witness came forward")
    assert _raw_revisions(db)[1] == stored_v1  # the stored row, byte for byte
    history = client.get(f"/api/v1/incidents/{made['id']}/revisions",
                         headers=bearer(tokens["advocate"])).json()["items"]
    assert [h["revision"] for h in history] == [1, 2, 3]
    assert history[0] == first_history[0]  # revision 1 reads exactly as before
    assert history[0]["place"] == PLACE and history[1]["place"] == second["place"]
    assert history[2]["created_by"] == str(people["supervisor"].id)
    assert history[2]["reason"] == "Fictional: a second witness came forward"
    current = client.get(f"/api/v1/incidents/{made['id']}",
                         headers=bearer(tokens["advocate"])).json()
    assert current["revision"] == 3 and current["witnesses"] == third["witnesses"]
    assert current["recorded_by"] == str(people["advocate"].id)  # the author stays
    assert current["revised_by"] == str(people["supervisor"].id)


def test_the_history_shows_exactly_what_changed(client, agency, client_id) -> None:
    _, _, tokens = agency
    made = post(client, tokens["advocate"], client_id, incident_body())
    revise(client, tokens["advocate"], made["id"], incident_body(
        place="Fictional bus stop on Elm Road", categories=["physical", "stalking"],
        weapons_involved=True,
        police={"involved": True, "agency": "Fictional County Sheriff",
                "report_number": REPORT_NUMBER, "officer": "Fictional Officer Wendt"}))
    client.post(f"/api/v1/incidents/{made['id']}/retract",
                json={"reason": "Fictional: the client asked to withdraw it"},
                headers=bearer(tokens["advocate"]))
    history = client.get(f"/api/v1/incidents/{made['id']}/revisions",
                         headers=bearer(tokens["advocate"])).json()["items"]
    assert history[0]["changes"] == []
    changes = {(c["path"], c["kind"]): c for c in history[1]["changes"]}
    assert set(changes) == {("place", "changed"), ("categories", "removed"),
                            ("categories", "added"), ("weapons_involved", "changed"),
                            ("police.officer", "changed")}
    assert changes["place", "changed"] == {
        "path": "place", "before": PLACE, "after": "Fictional bus stop on Elm Road",
        "kind": "changed"}
    assert changes["categories", "removed"] == {"path": "categories", "before": "threats",
                                                "after": None, "kind": "removed"}
    assert changes["categories", "added"] == {"path": "categories", "before": None,
                                              "after": "stalking", "kind": "added"}
    assert history[2]["changes"] == [{"path": "retracted", "before": False, "after": True,
                                      "kind": "changed"}]
    assert history[2]["reason"] == "Fictional: the client asked to withdraw it"


def test_a_category_added_in_the_middle_is_one_change(client, agency, client_id) -> None:
    # Categories are kept in a fixed order, so "threats" lands between "physical" and
    # "stalking": compared place by place, both of the later ones would seem to change.
    _, _, tokens = agency
    made = post(client, tokens["advocate"], client_id,
                incident_body(categories=["physical", "stalking"]))
    revise(client, tokens["advocate"], made["id"],
           incident_body(categories=["stalking", "threats", "physical"]))
    history = client.get(f"/api/v1/incidents/{made['id']}/revisions",
                         headers=bearer(tokens["advocate"])).json()["items"]
    assert history[1]["categories"] == ["physical", "threats", "stalking"]
    assert history[1]["changes"] == [{"path": "categories", "before": None,
                                      "after": "threats", "kind": "added"}]


def test_history_pages_still_diff_against_the_revision_before(client, agency,
                                                              client_id) -> None:
    _, _, tokens = agency
    made = post(client, tokens["advocate"], client_id, incident_body())
    for n in range(2, 5):
        revise(client, tokens["advocate"], made["id"], incident_body(place=f"Fictional {n}"),
               based_on=n - 1)
    seen, cursor = [], None
    while True:
        page = client.get(f"/api/v1/incidents/{made['id']}/revisions",
                          params={"limit": 1} | ({"cursor": cursor} if cursor else {}),
                          headers=bearer(tokens["advocate"])).json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [h["revision"] for h in seen] == [1, 2, 3, 4]
    assert [c["path"] for h in seen[1:] for c in h["changes"]] == ["place"] * 3
    assert seen[3]["changes"][0]["before"] == "Fictional 3"


def test_a_retracted_incident_stays_visible_marked(client, agency, client_id, db) -> None:
    org, people, tokens = agency
    made = post(client, tokens["advocate"], client_id, incident_body())
    kept = post(client, tokens["advocate"], client_id, incident_body(place="Fictional kept"))
    retracted = client.post(f"/api/v1/incidents/{made['id']}/retract",
                            json={"reason": "Fictional: recorded twice"},
                            headers=bearer(tokens["advocate"])).json()
    assert retracted["retracted"] is True and retracted["revision"] == 2
    assert retracted["reason"] == "Fictional: recorded twice"
    assert retracted["place"] == PLACE and retracted["client_account"] == ACCOUNT
    for who in ("advocate", "supervisor"):
        read = client.get(f"/api/v1/incidents/{made['id']}", headers=bearer(tokens[who]))
        assert read.status_code == 200 and read.json()["retracted"] is True
        listed = client.get(f"/api/v1/clients/{client_id}/incidents",
                            headers=bearer(tokens[who])).json()["items"]
        assert {i["id"]: i["retracted"] for i in listed} == {made["id"]: True,
                                                              kept["id"]: False}
    active = client.get(f"/api/v1/clients/{client_id}/incidents",
                        params={"include_retracted": "false"},
                        headers=bearer(tokens["advocate"])).json()["items"]
    assert [i["id"] for i in active] == [kept["id"]]
    assert count(db, IncidentRevision) == 3  # nothing removed
    event = db.scalars(sa.select(AuditEvent).where(AuditEvent.action == "incident.retracted")
                       ).one()
    assert event.object_id == made["id"] and event.actor_id == str(people["advocate"].id)
    assert event.details["revision"] == 2


# --- listing ------------------------------------------------------------------------------


def test_the_list_is_newest_occurrence_first_and_filters(client, agency, client_id,
                                                         db) -> None:
    _, _, tokens = agency
    chicago = "America/Chicago"
    old = post(client, tokens["advocate"], client_id, incident_body(
        occurred={"precision": "date", "start": days_ago(40)[:10], "time_zone": chicago},
        categories=["stalking"]))
    new = post(client, tokens["advocate"], client_id, incident_body(
        occurred={"precision": "exact", "start": days_ago(2), "time_zone": chicago},
        categories=["financial", "threats"]))
    middle = post(client, tokens["advocate"], client_id, incident_body(
        occurred={"precision": "range", "start": days_ago(20)[:10], "end": days_ago(15)[:10],
                  "time_zone": chicago}, categories=["physical"]))
    other_client = post(client, tokens["supervisor"], client_id, incident_body())
    order = [new["id"], other_client["id"], middle["id"], old["id"]]

    def listed(**params) -> list[str]:
        response = client.get(f"/api/v1/clients/{client_id}/incidents", params=params,
                              headers=bearer(tokens["advocate"]))
        assert response.status_code == 200, response.text
        items = response.json()["items"]
        for item in items:  # a list line carries no narrative
            assert "place" not in item and "client_account" not in item
        return [i["id"] for i in items]

    assert listed() == order
    walked, cursor = [], None
    while True:
        page = client.get(f"/api/v1/clients/{client_id}/incidents",
                          params={"limit": 1} | ({"cursor": cursor} if cursor else {}),
                          headers=bearer(tokens["advocate"])).json()
        walked += [i["id"] for i in page["items"]]
        if not (cursor := page["next_cursor"]):
            break
    assert walked == order
    assert listed(category="stalking") == [old["id"]]
    assert listed(category=["stalking", "financial"]) == [new["id"], old["id"]]
    # A period catches every incident whose window overlaps it (the range, 20 to 15 days ago).
    start = (utcnow() - timedelta(days=17)).isoformat()
    end = (utcnow() - timedelta(days=5)).isoformat()
    assert listed(occurred_from=start, occurred_to=end) == [other_client["id"], middle["id"]]
    # A revision moves the incident: lists go by what the incident says now.
    revise(client, tokens["advocate"], old["id"], incident_body(
        occurred={"precision": "exact", "start": days_ago(1), "time_zone": chicago},
        categories=["stalking"]))
    assert listed()[0] == old["id"]
    events = db.scalars(sa.select(AuditEvent.object_id).where(
        AuditEvent.action == "incident.listed")).all()
    assert set(events) == set(order)


# --- the audit trail ----------------------------------------------------------------------


def test_every_read_and_write_is_audited_without_content(client, agency, client_id,
                                                         db) -> None:
    _, people, tokens = agency
    made = post(client, tokens["advocate"], client_id, incident_body())
    revise(client, tokens["advocate"], made["id"], incident_body(place="Fictional park"))
    client.get(f"/api/v1/incidents/{made['id']}", headers=bearer(tokens["supervisor"]))
    client.get(f"/api/v1/incidents/{made['id']}/revisions", headers=bearer(tokens["advocate"]))
    events = db.scalars(sa.select(AuditEvent).where(AuditEvent.object_id == made["id"])
                        .order_by(AuditEvent.seq)).all()
    assert [e.action for e in events] == ["incident.created", "incident.revised",
                                          "incident.read", "incident.revisions_read"]
    read = events[2]
    assert read.actor_id == str(people["supervisor"].id) and read.object_type == "incident"
    assert read.details == {"client_id": client_id, "revision": 2, "retracted": False}
    assert events[3].details["from_revision"] == 1 and events[3].details["to_revision"] == 2


# --- for other modules --------------------------------------------------------------------


def _actor(user) -> Actor:
    return Actor(kind="user", id=user.id, org_id=user.org_id, role=user.role)


def test_timeline_entries(client, agency, client_id, db) -> None:
    from app.clients.models import Client

    _, people, tokens = agency
    made = post(client, tokens["advocate"], client_id, incident_body(
        occurred={"precision": "date", "start": "2025-07-04", "time_zone": "Europe/Berlin"},
        categories=["threats", "physical"]))
    later = post(client, tokens["advocate"], client_id, incident_body())
    client.post(f"/api/v1/incidents/{later['id']}/retract", json={"reason": "Fictional"},
                headers=bearer(tokens["advocate"]))
    the_client = db.get(Client, UUID(client_id))
    entries = service.timeline_entries(db, _actor(people["advocate"]), the_client, start=None,
                                       end=None)
    assert entries[0] == {"kind": "incident", "id": UUID(made["id"]),
                          "at": datetime(2025, 7, 3, 22, tzinfo=UTC), "precision": "date",
                          "categories": ["physical", "threats"], "retracted": False,
                          "revision": 1}
    assert entries[1]["id"] == UUID(later["id"])
    assert entries[1]["retracted"] is True and entries[1]["revision"] == 2
    only_2025 = service.timeline_entries(db, _actor(people["advocate"]), the_client,
                                         start=datetime(2025, 1, 1, tzinfo=UTC),
                                         end=datetime(2026, 1, 1, tzinfo=UTC))
    assert [e["id"] for e in only_2025] == [UUID(made["id"])]
    with pytest.raises(NotFound):
        service.timeline_entries(db, _actor(people["colleague"]), the_client, start=None,
                                 end=None)


def test_get_incident_reach(client, agency, client_id, db) -> None:
    _, people, tokens = agency
    made = post(client, tokens["advocate"], client_id, incident_body())
    incident_id = UUID(made["id"])
    found = service.get_incident(db, _actor(people["advocate"]), incident_id, for_write=True)
    assert isinstance(found, Incident) and found.client_id == UUID(client_id)
    assert service.get_incident(db, _actor(people["supervisor"]), incident_id).id == incident_id
    for who in ("colleague", "stranger", "admin", "auditor"):
        with pytest.raises(NotFound):
            service.get_incident(db, _actor(people[who]), incident_id)


def test_a_period_starting_where_a_window_ends_does_not_catch_it(client, agency,
                                                                 client_id) -> None:
    _, _, tokens = agency
    day = days_ago(10)[:10]
    made = post(client, tokens["advocate"], client_id, incident_body(
        occurred={"precision": "date", "start": day, "time_zone": "UTC"}))

    def listed(start: str) -> list[str]:
        response = client.get(f"/api/v1/clients/{client_id}/incidents",
                              params={"occurred_from": start},
                              headers=bearer(tokens["advocate"]))
        assert response.status_code == 200, response.text
        return [i["id"] for i in response.json()["items"]]

    following = (date.fromisoformat(day) + timedelta(days=1)).isoformat()
    assert listed(f"{day}T23:59:59Z") == [made["id"]]
    assert listed(f"{following}T00:00:00Z") == []  # the day's window ends there, exclusive
