"""The client timeline: every kind of entry in time order, filters, pages, reach, audit."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from app.core import keys
from app.core.audit import AuditEvent
from app.db import utcnow
from app.incidents.models import Incident, IncidentRevision, IncidentRevisionCategory
from app.legal import service as legal
from app.risk import service as risk
from app.safety_plans import service as safety_plans
from tests.consents.factories import make_client
from tests.legal.factories import Agency, fields, partner_headers
from tests.support.identity import bearer

NOW = utcnow().replace(microsecond=0)
TODAY = NOW.date()
SECRETS = ("Fictional Appeals Court", "Fictional-Case-7781", "Fictional: sheriff served",
           "Fictional Riverside Court", "Fictional go-bag passport")


def url(client_id: str) -> str:
    return f"/api/v1/clients/{client_id}/timeline"


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def make_incident(db: Session, agency: Agency, client_id: str, *, at: datetime,
                  precision: str = "exact", categories: tuple[str, ...] = ("physical",),
                  retracted: bool = False) -> str:
    """An incident written as the incidents module stores one: a head row, then its
    revisions (a retracted one has a second, retracting revision with a reason)."""
    org_id, client = agency.org.id, UUID(client_id)
    by = agency.people["advocate"].id
    incident = Incident(org_id=org_id, client_id=client, created_by=by)
    db.add(incident)
    db.flush()
    for number in (1, 2) if retracted else (1,):
        revision = IncidentRevision(
            org_id=org_id, client_id=client, incident_id=incident.id, revision=number,
            created_by=by, retracted=number == 2, occurred_start=at,
            # Exclusive ends, as the incidents module stores them: a date ends at the next
            # midnight; the ranges here last a day too.
            occurred_end=None if precision == "exact" else at + timedelta(days=1),
            occurred_precision=precision, occurred_time_zone="Europe/Dublin", content="")
        place = {"org_id": org_id, "client_id": client, "table": "incident_revision",
                 "row_id": str(revision.id)}
        revision.content = keys.encrypt_json(db, value={"account": "Fictional account"},
                                             column="content", **place) or ""
        if number == 2:
            revision.reason = keys.encrypt_field(db, plaintext="Fictional: entered twice",
                                                 column="reason", **place)
        db.add(revision)
        db.flush()
        for category in categories:
            db.add(IncidentRevisionCategory(revision_id=revision.id, category=category,
                                            org_id=org_id))
        db.flush()
    return str(incident.id)


def make_assessment(db: Session, agency: Agency, client_id: str, at: datetime) -> str:
    row, _ = risk.record_assessment(db, agency.actor("supervisor"), UUID(client_id),
                                    instrument_id="example-safety-screen", version=None,
                                    answers={"threatened_to_kill": True}, partial=True)
    row.assessed_at = at
    db.flush()
    return str(row.id)


def make_plan(db: Session, agency: Agency, client_id: str, at: datetime) -> tuple[str, int]:
    made = safety_plans.create_version(
        db, agency.actor(), UUID(client_id), review_date=TODAY + timedelta(days=30),
        content={"go_bag": [{"item": "Fictional go-bag passport", "ready": True}]})
    made.plan.created_at = at
    db.flush()
    return str(made.plan.id), made.plan.version


def make_hearing(db: Session, agency: Agency, client_id: str, at: datetime, **extra) -> str:
    return str(legal.record_court_date(
        db, agency.actor(), UUID(client_id), kind=extra.pop("kind", "custody"), starts_at=at,
        time_zone="Europe/London", court="Fictional Riverside Court", **extra).hearing.id)


def make_order(db: Session, agency: Agency, client_id: str, **fields: Any) -> str:
    return str(legal.record_order(db, agency.actor(), UUID(client_id),
                                  court="Fictional Appeals Court",
                                  case_number="Fictional-Case-7781",
                                  notes="Fictional: sheriff served", **fields).order.id)


@pytest.fixture
def story(db: Session, agency: Agency) -> list[tuple[str, str, datetime, datetime]]:
    """A client's history with an entry of every kind, and (kind, id, at, end) of each in
    the order the timeline must show them (``end``: where an incident's occurrence window
    ends, ``at`` for anything else)."""
    c = agency.client_id
    day_45 = TODAY - timedelta(days=45)
    entries: list[tuple[str, str, datetime, datetime]] = []

    def add(kind: str, made: str, at: datetime, end: datetime | None = None) -> None:
        entries.append((kind, made, at, end or at))

    first = make_incident(db, agency, c, at=NOW - timedelta(days=60),
                          categories=("threats", "physical"))
    add("incident", first, NOW - timedelta(days=60))
    # At the midnight an order is issued, an incident too: incidents come first.
    same_moment = make_incident(db, agency, c, at=midnight(day_45), precision="date",
                                categories=("stalking",), retracted=True)
    add("incident", same_moment, midnight(day_45), midnight(day_45) + timedelta(days=1))
    order = make_order(db, agency, c, order_type="temporary", status="granted",
                       issued_on=day_45, expires_on=TODAY + timedelta(days=60))
    add("protective_order_issued", order, midnight(day_45))
    # An order that runs one day: issued, then expiry, at the same midnight.
    one_day = TODAY - timedelta(days=30)
    short = make_order(db, agency, c, order_type="emergency", status="expired",
                       issued_on=one_day, expires_on=one_day)
    add("protective_order_issued", short, midnight(one_day))
    add("protective_order_expiry", short, midnight(one_day))
    add("risk_assessment", make_assessment(db, agency, c, NOW - timedelta(days=29)),
        NOW - timedelta(days=29))
    plan, _ = make_plan(db, agency, c, NOW - timedelta(days=28))
    add("safety_plan_version", plan, NOW - timedelta(days=28))
    held = NOW - timedelta(days=20)
    add("court_date", make_hearing(db, agency, c, held, status="held",
                                   protective_order_id=UUID(order)), held)
    add("incident", make_incident(db, agency, c, at=NOW - timedelta(days=10),
                                  precision="range", categories=("technology_facilitated",)),
        NOW - timedelta(days=10), NOW - timedelta(days=9))
    plan2, _ = make_plan(db, agency, c, NOW - timedelta(days=3))
    add("safety_plan_version", plan2, NOW - timedelta(days=3))
    coming = NOW + timedelta(days=10)
    add("court_date", make_hearing(db, agency, c, coming, kind="protective_order_hearing"),
        coming)
    add("protective_order_expiry", order, midnight(TODAY + timedelta(days=60)))
    # Without dates there is nothing to show; a denied order never runs to its expiry.
    make_order(db, agency, c, order_type="final", status="requested")
    denied = make_order(db, agency, c, order_type="final", status="requested",
                        expires_on=TODAY + timedelta(days=400))
    legal.update_order(db, agency.actor(), UUID(c), UUID(denied), {"status": "denied"})
    db.commit()
    return entries


def read(api, agency: Agency, token: str = "advocate", **params: Any) -> Any:
    response = api.get(url(agency.client_id), params=params, headers=bearer(agency.tokens[token]))
    assert response.status_code == 200, response.text
    return response.json()


def walk(api, agency: Agency, **params: Any) -> list[dict]:
    items, cursor = [], None
    while True:
        page = read(api, agency, **params, **({"cursor": cursor} if cursor else {}))
        assert len(page["items"]) <= params.get("limit", 50)
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


# --- refusals first -----------------------------------------------------------------------


@pytest.mark.parametrize(("params", "field"), [
    ({"kind": "horoscope"}, "kind"),
    ({"kind": "court_date,horoscope"}, "kind"),
    ({"from": "2026-03-01T10:00:00"}, "from"),  # naive
    ({"from": "the beginning"}, "from"),
    ({"to": "2026-13-45"}, "to"),
    ({"from": "2026-03-10", "to": "2026-03-01"}, "to"),
    ({"from": "2026-03-10T12:00:00Z", "to": "2026-03-10T12:00:00Z"}, "to"),
    ({"limit": 0}, "limit"),
    ({"limit": 201}, "limit"),
])
def test_bad_filters_name_the_parameter(client, agency: Agency, params, field) -> None:
    response = client.get(url(agency.client_id), params=params,
                          headers=bearer(agency.tokens["advocate"]))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in fields(response)
    assert "horoscope" not in response.text


def test_another_caseload_or_agency_finds_nothing(client, agency: Agency, db: Session) -> None:
    theirs = make_client(db, agency.org, agency.people["colleague"])
    db.commit()
    for token, target in ((agency.tokens["advocate"], theirs),
                          (agency.tokens["stranger"], agency.client_id),
                          (agency.tokens["admin"], agency.client_id),
                          (agency.tokens["colleague"], agency.client_id)):
        assert client.get(url(target), headers=bearer(token)).status_code == 404
    for headers in (partner_headers(client, agency), bearer(agency.tokens["auditor"])):
        assert client.get(url(agency.client_id), headers=headers).status_code == 403
    assert client.get(url(agency.client_id)).status_code == 401
    assert client.get(url(str(uuid4())),
                      headers=bearer(agency.tokens["supervisor"])).status_code == 404


def test_a_cursor_is_bound_to_its_client_and_filters(client, agency: Agency, story,
                                                     db: Session) -> None:
    page = read(client, agency, limit=2)
    other = make_client(db, agency.org, agency.people["advocate"])
    db.commit()
    token = bearer(agency.tokens["advocate"])
    cursor = page["next_cursor"]
    assert client.get(url(other), params={"cursor": cursor}, headers=token).status_code == 400
    for params in ({"kind": "incident"}, {"from": "2020-01-01"}, {"to": "2099-01-01"}):
        response = client.get(url(agency.client_id), params=params | {"cursor": cursor},
                              headers=token)
        assert response.status_code == 400, params


# --- what works ---------------------------------------------------------------------------


def test_every_kind_in_time_order(client, agency: Agency, story) -> None:
    items = read(client, agency, limit=200)["items"]
    assert [(i["kind"], i["id"], i["at"]) for i in items] == [
        (kind, made, rfc3339(at)) for kind, made, at, _ in story]
    by_kind = {(i["kind"], i["id"]): i for i in items}
    first, retracted, ranged = (i for i in items if i["kind"] == "incident")
    assert first["summary"] == {"categories": ["physical", "threats"], "retracted": False,
                                "revision": 1}
    assert first["precision"] == "exact"
    assert retracted["summary"]["retracted"] is True and retracted["summary"]["revision"] == 2
    assert retracted["precision"] == "date" and ranged["precision"] == "range"
    hearing = next(i for i in items if i["kind"] == "court_date")
    assert hearing["summary"] == {"hearing_kind": "custody", "status": "held",
                                  "protective_order_id": story[2][1]}
    issued = by_kind[("protective_order_issued", story[2][1])]
    assert issued["summary"] == {"order_type": "temporary", "status": "granted"}
    assert issued["precision"] == "date"
    assessment = next(i for i in items if i["kind"] == "risk_assessment")
    assert assessment["summary"]["instrument_id"] == "example-safety-screen"
    assert set(assessment["summary"]) == {"instrument_id", "instrument_version", "level",
                                          "is_highest_level", "complete"}
    plans = [i["summary"] for i in items if i["kind"] == "safety_plan_version"]
    assert [p["version"] for p in plans] == [1, 2]


def test_nothing_narrative_or_encrypted_is_shown(client, agency: Agency, story) -> None:
    response = client.get(url(agency.client_id), headers=bearer(agency.tokens["advocate"]))
    for secret in SECRETS + ("Fictional account", "entered twice"):
        assert secret not in response.text


@pytest.mark.parametrize("limit", [1, 2, 3, 5])
def test_pages_join_up_to_the_whole(client, agency: Agency, story, limit: int) -> None:
    whole = read(client, agency, limit=200)["items"]
    assert walk(client, agency, limit=limit) == whole
    only = walk(client, agency, limit=limit, kind="incident,court_date")
    assert only == [i for i in whole if i["kind"] in ("incident", "court_date")]


def test_filters_by_kind(client, agency: Agency, story) -> None:
    def kinds(**params: Any) -> list[str]:
        return [i["kind"] for i in read(client, agency, limit=200, **params)["items"]]

    assert kinds(kind="risk_assessment") == ["risk_assessment"]
    repeated = client.get(url(agency.client_id), params=[
        ("kind", "court_date"), ("kind", "safety_plan_version")],
        headers=bearer(agency.tokens["advocate"])).json()["items"]
    assert [i["kind"] for i in repeated] == ["safety_plan_version", "court_date",
                                             "safety_plan_version", "court_date"]
    assert kinds(kind="protective_order") == ["protective_order_issued",
                                              "protective_order_issued",
                                              "protective_order_expiry",
                                              "protective_order_expiry"]
    assert kinds(kind="protective_order_expiry") == ["protective_order_expiry"] * 2
    assert kinds(kind="incident, incident") == ["incident"] * 3


def test_filters_by_period(client, agency: Agency, story) -> None:
    def shown(**params: Any) -> list[tuple[str, str]]:
        return [(i["kind"], i["id"]) for i in read(client, agency, limit=200,
                                                   **params)["items"]]

    def expected(start: datetime, end: datetime) -> list[tuple[str, str]]:
        # Incidents by their period rule (the window overlaps), the rest by their moment.
        return [(k, i) for k, i, at, until in story
                if at < end and (until >= start if k == "incident" else at >= start)]

    day_45, day_30 = TODAY - timedelta(days=45), TODAY - timedelta(days=30)
    # Whole days: from the start of the first to the end of the last.
    assert shown(**{"from": day_45.isoformat(), "to": day_30.isoformat()}) == expected(
        midnight(day_45), midnight(day_30 + timedelta(days=1)))
    # Moments: from included, to excluded; a date's entries sit at its midnight.
    start, end = midnight(day_45), midnight(day_30)
    assert shown(**{"from": rfc3339(start), "to": rfc3339(end)}) == expected(start, end)
    # A second past midnight: the order issued then is out, the incident of that day is in.
    start = midnight(day_45) + timedelta(seconds=1)
    assert shown(**{"from": rfc3339(start)}) == expected(start, datetime.max.replace(tzinfo=UTC))
    assert walk(client, agency, limit=1, **{"from": rfc3339(start)}) == read(
        client, agency, **{"from": rfc3339(start)})["items"]
    # Offsets are honoured: 01:00+01:00 is midnight UTC.
    local = (midnight(day_30) + timedelta(hours=1)).replace(tzinfo=None).isoformat() + "+01:00"
    assert shown(to=local) == expected(datetime.min.replace(tzinfo=UTC), midnight(day_30))
    upcoming = shown(**{"from": rfc3339(NOW)})
    assert upcoming == [(k, i) for k, i, at, _ in story if at >= NOW]
    assert walk(client, agency, limit=1, **{"from": day_45.isoformat(),
                                            "to": day_30.isoformat()}) == read(
        client, agency, **{"from": day_45.isoformat(), "to": day_30.isoformat()})["items"]


def test_an_incident_belongs_to_a_period_it_overlaps(client, agency: Agency, story) -> None:
    ranged = next(made for kind, made, at, _ in story
                  if kind == "incident" and at == NOW - timedelta(days=10))
    start = NOW - timedelta(days=10) + timedelta(hours=12)  # inside its one-day window
    items = read(client, agency, **{"from": rfc3339(start), "kind": "incident"})["items"]
    assert [i["id"] for i in items] == [ranged]


def test_each_read_is_audited_once(client, agency: Agency, story, db: Session) -> None:
    def timeline_events() -> list[AuditEvent]:
        return list(db.scalars(sa.select(AuditEvent).where(
            AuditEvent.action == "timeline.read",
            AuditEvent.object_id == agency.client_id).order_by(AuditEvent.seq)))

    assert timeline_events() == []
    walk(client, agency, limit=4, kind="court_date,safety_plan_version,risk_assessment")
    read(client, agency, token="supervisor", **{"from": "2020-01-01"})
    events = timeline_events()
    assert len(events) == 3
    assert [e.details["count"] for e in events] == [4, 1, len(story)]
    assert [e.details["page"] for e in events] == ["first", "next", "first"]
    assert events[0].details["kinds"] == "court_date,risk_assessment,safety_plan_version"
    assert events[2].actor_id == str(agency.people["supervisor"].id)
    assert events[2].details["from"] == "2020-01-01T00:00:00+00:00"
    assert all(e.details["to"] is None for e in events)
