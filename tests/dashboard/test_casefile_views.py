"""Case-file pages through the real app (no browser): incidents, evidence, protective orders,
court dates, the timeline, the plan's print and the agency's plan template — reach, CSRF,
field errors and what they store."""

from __future__ import annotations

import hashlib
import os
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from app.clients import service as clients
from app.clients.models import Client
from app.core.access import Actor
from app.dashboard.web import DASHBOARD_CSP
from app.db import utcnow
from app.evidence.models import CustodyEvent, Evidence
from app.identity.models import StaffUser
from app.incidents import schemas as incident_schemas
from app.incidents import service as incidents
from app.incidents.models import Incident, IncidentRevision
from app.legal import service as legal
from app.legal.models import CourtDate, ProtectiveOrder
from app.safety_plans import service as plans
from tests.dashboard.helpers import csrf_from, events, page_csrf, sign_in
from tests.support.identity import make_org, make_user
from tests.support.privacy import assert_not_stored

NOT_FOUND = "There is nothing at this address."
ACCOUNT = "Fictional account: he shouted and broke the kitchen door at nine"
OBSERVED = "Fictional observation: bruise on the left forearm, client shaking"


def actor_of(user: StaffUser) -> Actor:
    return Actor(kind="user", id=user.id, org_id=user.org_id, role=user.role)


def make_client(db: Session, advocate: StaffUser, **personal: Any) -> Client:
    personal = {"preferred_name": "Sam Fictional",
                "safe_contact": {"time_zone": "America/Chicago", "channels": []}} | personal
    return clients.create_client(db, actor_of(advocate), personal=personal).client


def make_incident(db: Session, user: StaffUser, client: Client, **fields: Any) -> UUID:
    body = {"occurred": {"precision": "exact", "start": "2026-03-01T21:30",
                         "time_zone": "America/Chicago"},
            "categories": ["physical"], "client_account": ACCOUNT} | fields
    record = incidents.record_incident(db, actor_of(user), client.id,
                                       incident_schemas.IncidentCreate.model_validate(body))
    return record.incident.id


def count(db: Session, model: Any, **where: Any) -> int:
    query = sa.select(sa.func.count()).select_from(model)
    for name, value in where.items():
        query = query.where(getattr(model, name) == value)
    return int(db.scalar(query) or 0)


def field_error(html: str, name: str) -> str:
    match = re.search(rf'<p class="error-message" id="{re.escape(name)}-error">'
                      r'<span class="visually-hidden">Error: </span>([^<]*)</p>', html)
    return match.group(1) if match else ""


def jpeg(size: int = 48 * 1024) -> bytes:
    return b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + os.urandom(size - 11)


@pytest.fixture
def agency(db: Session) -> dict[str, Any]:
    org = make_org(db)
    people = {role: make_user(db, org, role) for role in ("admin", "supervisor", "advocate",
                                                          "auditor")}
    people["colleague"] = make_user(db, org, "advocate")
    people["stranger"] = make_user(db, make_org(db), "advocate")
    db.commit()
    mine = make_client(db, people["advocate"])
    theirs = make_client(db, people["colleague"])
    elsewhere = make_client(db, people["stranger"])
    db.commit()
    return {"org": org, **people, "client": mine, "theirs": theirs, "elsewhere": elsewhere}


INCIDENT_FORM = {
    "occurred.precision": "exact", "occurred.start_date": "2026-03-01",
    "occurred.start_time": "21:30", "occurred.end_date": "", "occurred.end_time": "",
    "occurred.time_zone": "America/Chicago",
    "place": "Fictional flat, 4 Nowhere Row",
    "client_account": ACCOUNT, "advocate_observations": OBSERVED,
    "categories": ["physical", "property_damage"],
    "injuries": "Fictional bruise on the left forearm", "medical_care": "",
    "witnesses.0.name": "Fictional neighbour Ada", "witnesses.0.contact": "Flat 5",
    "witnesses.0.note": "Heard shouting through the wall",
    "witnesses.1.name": "", "witnesses.1.contact": "", "witnesses.1.note": "",
    "police.involved": "yes", "police.agency": "Fictional County Police",
    "police.report_number": "FCP-2026-000123", "police.officer": "Officer 4521",
    "children_present": "no", "weapons_involved": "",
    "respondent_identifiers.0.kind": "phone",
    "respondent_identifiers.0.value": "+1 555 0100 999",
    "respondent_identifiers.0.platform": "",
    "respondent_identifiers.1.kind": "phone", "respondent_identifiers.1.value": "",
    "respondent_identifiers.1.platform": "",
}


def base(client: Client) -> str:
    return f"/dashboard/clients/{client.id}"


# --- who reaches what --------------------------------------------------------------------


def _records_of(db: Session, user: StaffUser, client: Client) -> dict[str, UUID]:
    """An incident with a file, an order and a court date of ``client``."""
    incident_id = make_incident(db, user, client)
    order = legal.record_order(db, actor_of(user), client.id, order_type="temporary")
    hearing = legal.record_court_date(db, actor_of(user), client.id, kind="custody",
                                      starts_at=utcnow() + timedelta(days=10),
                                      time_zone="America/Chicago")
    plans.create_version(db, actor_of(user), client.id, content={},
                         review_date=utcnow().date() + timedelta(days=30))
    db.commit()
    return {"incident": incident_id, "order": order.order.id, "hearing": hearing.hearing.id}


def _pages(ids: dict[str, UUID], evidence_id: UUID | None) -> list[str]:
    pages = ["/incidents", "/incidents/new", f"/incidents/{ids['incident']}",
             f"/incidents/{ids['incident']}/correct", f"/incidents/{ids['incident']}/evidence",
             "/orders", "/orders/new", f"/orders/{ids['order']}", "/court-dates",
             "/court-dates/new", f"/court-dates/{ids['hearing']}", "/timeline",
             "/plan/print?format=pdf"]
    if evidence_id:
        pages += [f"/evidence/{evidence_id}", f"/evidence/{evidence_id}/content"]
    return pages


def _upload(web, client: Client, incident_id: UUID, token: str | None, content: bytes,
            fields: dict[str, str] | None = None, json: bool = False) -> Any:
    data = {} if token is None else {"csrf_token": token}
    data |= {"description": "Fictional photo of the broken kitchen door"} | (fields or {})
    headers = {"Accept": "application/json"} if json else {}
    return web.post(f"{base(client)}/incidents/{incident_id}/evidence", data=data,
                    files={"file": ("fictional-door.jpg", content, "image/jpeg")},
                    headers=headers)


def test_a_colleagues_or_another_agencys_case_file_is_not_found(web, db, agency) -> None:
    theirs = _records_of(db, agency["colleague"], agency["theirs"])
    elsewhere = _records_of(db, agency["stranger"], agency["elsewhere"])
    sign_in(web, db, agency["colleague"])
    token = page_csrf(web, f"{base(agency['theirs'])}/incidents/{theirs['incident']}/evidence")
    uploaded = _upload(web, agency["theirs"], theirs["incident"], token, jpeg())
    assert uploaded.status_code == 303
    evidence_id = UUID(uploaded.headers["location"].split("/")[-1].split("?")[0])
    web.cookies.clear()
    sign_in(web, db, agency["advocate"])
    for client, ids, file_id in ((agency["theirs"], theirs, evidence_id),
                                 (agency["elsewhere"], elsewhere, None)):
        for page in _pages(ids, file_id):
            response = web.get(base(client) + page)
            assert response.status_code == 404, page
            assert NOT_FOUND in response.text and "Sam Fictional" not in response.text
            assert ACCOUNT not in response.text
    # Someone else's record under one's own client's address is not found either.
    mine = base(agency["client"])
    for page in _pages(theirs, evidence_id)[2:5] + [f"/orders/{theirs['order']}",
                                                    f"/court-dates/{theirs['hearing']}",
                                                    f"/evidence/{evidence_id}",
                                                    f"/evidence/{evidence_id}/content"]:
        response = web.get(mine + page)
        assert response.status_code == 404, page
        assert ACCOUNT not in response.text
    views = count(db, CustodyEvent, evidence_id=evidence_id, action="view")
    downloads = count(db, CustodyEvent, evidence_id=evidence_id, action="download")
    assert (views, downloads) == (0, 0)


def test_writes_to_a_colleagues_case_file_are_not_found_and_store_nothing(web, db,
                                                                         agency) -> None:
    ids = _records_of(db, agency["colleague"], agency["theirs"])
    sign_in(web, db, agency["advocate"])
    token = page_csrf(web, f"{base(agency['client'])}/incidents/new")
    path = base(agency["theirs"])
    posts = {
        "/incidents/new": INCIDENT_FORM,
        f"/incidents/{ids['incident']}/correct": {**INCIDENT_FORM, "reason": "Fictional",
                                                  "based_on_revision": "1"},
        f"/incidents/{ids['incident']}/retract": {"reason": "Fictional reason"},
        "/orders/new": {"order_type": "final", "status": "requested"},
        f"/orders/{ids['order']}": {"order_type": "final", "status": "requested"},
        "/court-dates/new": {"kind": "custody", "status": "scheduled",
                             "starts_on": "2027-01-05", "starts_time": "09:00",
                             "time_zone": "America/Chicago"},
    }
    for suffix, data in posts.items():
        response = web.post(path + suffix, data={"csrf_token": token, **data})
        assert response.status_code == 404, suffix
        assert NOT_FOUND in response.text
    upload = _upload(web, agency["theirs"], ids["incident"], token, jpeg())
    assert upload.status_code == 404
    assert count(db, Incident, client_id=agency["theirs"].id) == 1
    assert count(db, IncidentRevision, client_id=agency["theirs"].id) == 1
    assert count(db, ProtectiveOrder, client_id=agency["theirs"].id) == 1
    assert count(db, CourtDate, client_id=agency["theirs"].id) == 1
    assert count(db, Evidence, client_id=agency["theirs"].id) == 0
    assert db.scalar(sa.select(ProtectiveOrder.order_type).where(
        ProtectiveOrder.id == ids["order"])) == "temporary"


@pytest.mark.parametrize("role", ["admin", "auditor"])
def test_admins_and_auditors_have_no_case_file_pages(web, db, agency, role) -> None:
    ids = _records_of(db, agency["advocate"], agency["client"])
    sign_in(web, db, agency[role])
    for page in _pages(ids, None):
        response = web.get(base(agency["client"]) + page)
        assert response.status_code == 404, page
        assert ACCOUNT not in response.text
    token = page_csrf(web)
    response = web.post(f"{base(agency['client'])}/incidents/new",
                        data={"csrf_token": token, **INCIDENT_FORM})
    assert response.status_code == 404
    assert count(db, Incident, client_id=agency["client"].id) == 1
    assert events(db, "access.denied")


# --- forms need their CSRF token ---------------------------------------------------------


@pytest.mark.parametrize("token", [None, "", "0" * 64])
def test_case_file_forms_without_the_csrf_token_are_refused(web, db, agency, token) -> None:
    ids = _records_of(db, agency["advocate"], agency["client"])
    sign_in(web, db, agency["advocate"])
    csrf = {} if token is None else {"csrf_token": token}
    path = base(agency["client"])
    responses = [
        web.post(f"{path}/incidents/new", data={**csrf, **INCIDENT_FORM}),
        web.post(f"{path}/incidents/{ids['incident']}/correct",
                 data={**csrf, **INCIDENT_FORM, "reason": "Fictional reason",
                       "based_on_revision": "1"}),
        web.post(f"{path}/incidents/{ids['incident']}/retract",
                 data={**csrf, "reason": "Fictional reason"}),
        web.post(f"{path}/orders/new", data={**csrf, "order_type": "final",
                                             "status": "requested"}),
        web.post(f"{path}/orders/{ids['order']}", data={**csrf, "order_type": "final",
                                                        "status": "requested"}),
        web.post(f"{path}/court-dates/new", data={**csrf, "kind": "custody",
                                                  "status": "scheduled",
                                                  "starts_on": "2027-01-05",
                                                  "starts_time": "09:00",
                                                  "time_zone": "America/Chicago"}),
        _upload(web, agency["client"], ids["incident"], token, jpeg()),
    ]
    for response in responses:
        assert response.status_code == 403, response.url
        assert "This form could not be accepted" in response.text
    assert count(db, IncidentRevision, client_id=agency["client"].id) == 1
    assert count(db, ProtectiveOrder, client_id=agency["client"].id) == 1
    assert count(db, CourtDate, client_id=agency["client"].id) == 1
    assert count(db, Evidence, client_id=agency["client"].id) == 0
    assert events(db, "access.denied")[-1].details["reason"] == "csrf"


def test_an_upload_from_another_site_is_refused_before_reading_it(web, db, agency) -> None:
    incident_id = make_incident(db, agency["advocate"], agency["client"])
    db.commit()
    sign_in(web, db, agency["advocate"])
    token = page_csrf(web, f"{base(agency['client'])}/incidents/{incident_id}/evidence")
    response = web.post(f"{base(agency['client'])}/incidents/{incident_id}/evidence",
                        data={"csrf_token": token},
                        files={"file": ("fictional.jpg", jpeg(), "image/jpeg")},
                        headers={"Sec-Fetch-Site": "cross-site"})
    assert response.status_code == 403
    assert count(db, Evidence, client_id=agency["client"].id) == 0


# --- recording an incident ---------------------------------------------------------------


def test_recording_an_incident_stores_it_encrypted_and_shows_it(web, db, agency) -> None:
    sign_in(web, db, agency["advocate"])
    form = web.get(f"{base(agency['client'])}/incidents/new")
    assert form.status_code == 200
    assert form.headers["content-security-policy"] == DASHBOARD_CSP
    assert 'value="America/Chicago"' in form.text  # the client's own time zone
    html = form.text
    order = [html.index(f'id="{name}"') for name in (
        "occurred.precision", "place", "client_account", "advocate_observations",
        "categories", "injuries", "witnesses.0.name", "police.involved", "children_present",
        "weapons_involved", "respondent_identifiers.0.kind")]
    assert order == sorted(order)  # the facts in the order a court looks for them
    response = web.post(f"{base(agency['client'])}/incidents/new",
                        data={"csrf_token": csrf_from(html), **INCIDENT_FORM})
    assert response.status_code == 303, response.text[:3000]
    location = response.headers["location"]
    assert location.endswith("?done=incident-recorded") and "Fictional" not in location
    incident_id = UUID(location.split("/")[-1].split("?")[0])
    record = incidents.read_incident(db, actor_of(agency["advocate"]), incident_id)
    assert record.categories == ["physical", "property_damage"]
    assert record.content["client_account"] == ACCOUNT
    assert record.content["advocate_observations"] == OBSERVED
    assert record.content["witnesses"] == [{"name": "Fictional neighbour Ada",
                                            "contact": "Flat 5",
                                            "note": "Heard shouting through the wall"}]
    assert record.content["police"] == {"involved": True, "agency": "Fictional County Police",
                                        "report_number": "FCP-2026-000123",
                                        "officer": "Officer 4521"}
    assert record.content["respondent_identifiers"] == [
        {"kind": "phone", "value": "+1 555 0100 999", "platform": ""}]
    assert (record.revision.children_present, record.revision.weapons_involved) == (False, None)
    # 21:30 in Chicago on 1 March 2026 (CST, UTC-6) is 03:30 UTC the next day.
    assert record.revision.occurred_start == datetime(2026, 3, 2, 3, 30, tzinfo=UTC)
    stored = db.scalar(sa.select(IncidentRevision).where(
        IncidentRevision.incident_id == incident_id))
    assert_not_stored(" ".join(str(v) for v in stored.model_dump().values()),
                      [ACCOUNT, OBSERVED, "Fictional neighbour", "FCP-2026-000123",
                       "Fictional County"])
    page = web.get(location)
    assert page.status_code == 200
    assert "The incident is recorded." in page.text
    assert "2026-03-01 at 21:30 (America/Chicago)" in page.text
    assert ACCOUNT in page.text and OBSERVED in page.text
    assert page.text.index('id="client-account"') < page.text.index('id="advocate-observations"')
    assert "FCP-2026-000123" in page.text and "Fictional neighbour Ada" in page.text
    assert events(db, "incident.created") and events(db, "incident.read")
    listing = web.get(f"{base(agency['client'])}/incidents")
    assert f"/incidents/{incident_id}" in listing.text and "Physical, Property damage" in \
        listing.text
    assert ACCOUNT not in listing.text  # a list shows when and what kind, no narrative


@pytest.mark.parametrize(("changes", "field", "message"), [
    ({"occurred.start_date": ""}, "occurred.start_date", "give the date"),
    ({"occurred.start_time": ""}, "occurred.start_time", "give the time"),
    ({"occurred.precision": "date"}, "occurred.start_time", "only the day is known"),
    ({"occurred.precision": "range"}, "occurred.end_date", "give the latest day"),
    ({"occurred.precision": "range", "occurred.end_date": "2026-02-01"}, "occurred.end_date",
     "must be after the start"),
    ({"occurred.start_date": "2999-01-01"}, "occurred.start_date", "in the future"),
    ({"occurred.start_date": "01/03/2026"}, "occurred.start_date", "not a date"),
    ({"occurred.start_time": "9pm"}, "occurred.start_time", "not a time"),
    ({"occurred.time_zone": "Mars/Olympus_Mons"}, "occurred.time_zone",
     "not an IANA time zone name"),
    ({"categories": []}, "categories", "at least 1"),
    ({"categories": ["gossip"]}, "categories", "Input should be"),
    ({"police.involved": "perhaps"}, "police.involved", "choose yes, no or not known"),
    ({"witnesses.1.note": "x" * 4001}, "witnesses.1.note", "at most 4000"),
    ({"respondent_identifiers.1.platform": "Fictigram"}, "respondent_identifiers.1.value",
     "at least 1"),
])
def test_bad_incident_input_is_shown_next_to_the_field_and_nothing_is_stored(
        web, db, agency, changes, field, message) -> None:
    sign_in(web, db, agency["advocate"])
    token = page_csrf(web, f"{base(agency['client'])}/incidents/new")
    response = web.post(f"{base(agency['client'])}/incidents/new",
                        data={"csrf_token": token, **INCIDENT_FORM, **changes})
    assert response.status_code == 422
    assert message in field_error(response.text, field), response.text[:4000]
    assert f'href="#{field}"' in response.text
    assert ACCOUNT in response.text  # what was typed is kept in the form
    assert count(db, Incident, client_id=agency["client"].id) == 0


# --- the incident page: corrections and retraction ---------------------------------------


def test_a_correction_is_a_new_revision_with_its_changes_highlighted(web, db,
                                                                     agency) -> None:
    incident_id = make_incident(db, agency["advocate"], agency["client"],
                                place="Fictional car park")
    db.commit()
    sign_in(web, db, agency["advocate"])
    path = f"{base(agency['client'])}/incidents/{incident_id}"
    form = web.get(f"{path}/correct")
    assert form.status_code == 200
    assert 'value="Fictional car park"' in form.text
    assert 'name="based_on_revision" value="1"' in form.text
    assert 'id="occurred.start_time" name="occurred.start_time" type="time" value="21:30"' \
        in form.text
    token = csrf_from(form.text)
    data = {**INCIDENT_FORM, "place": "Fictional car park", "client_account": ACCOUNT,
            "advocate_observations": "", "categories": ["physical"], "injuries": "",
            "witnesses.0.name": "", "witnesses.0.contact": "", "witnesses.0.note": "",
            "police.involved": "", "police.agency": "", "police.report_number": "",
            "police.officer": "", "children_present": "", "weapons_involved": "",
            "respondent_identifiers.0.value": "", "based_on_revision": "1"}
    unchanged = web.post(f"{path}/correct", data={"csrf_token": token, **data,
                                                  "reason": "Fictional check"})
    assert unchanged.status_code == 422 and "Nothing differs" in unchanged.text
    no_reason = web.post(f"{path}/correct", data={"csrf_token": token, **data,
                                                  "place": "Fictional bus stop"})
    assert no_reason.status_code == 422
    assert field_error(no_reason.text, "reason") == "say why the incident is corrected"
    assert count(db, IncidentRevision, incident_id=incident_id) == 1
    saved = web.post(f"{path}/correct", data={
        "csrf_token": token, **data, "place": "Fictional bus stop, Nowhere Road",
        "reason": "The client remembered the place better"})
    assert saved.status_code == 303
    assert saved.headers["location"].endswith("?done=incident-corrected")
    assert count(db, IncidentRevision, incident_id=incident_id) == 2
    page = web.get(saved.headers["location"])
    assert "Revision 2" in page.text and "The client remembered the place better" in page.text
    changes = re.search(r'<table class="changes" id="changes-2">.*?</table>', page.text,
                        re.S).group(0)
    assert "<th scope=\"row\">Place</th>" in changes
    assert "<del>Fictional car park</del>" in changes
    assert "<ins>Fictional bus stop, Nowhere Road</ins>" in changes
    assert events(db, "incident.revised") and events(db, "incident.revisions_read")


def test_a_correction_on_a_stale_revision_shows_the_conflict_and_saves_nothing(
        web, db, agency) -> None:
    incident_id = make_incident(db, agency["advocate"], agency["client"],
                                place="Fictional car park")
    db.commit()
    sign_in(web, db, agency["advocate"])
    path = f"{base(agency['client'])}/incidents/{incident_id}"
    form = web.get(f"{path}/correct")
    # A colleague (a supervisor) saves revision 2 while the form is open.
    body = {"occurred": {"precision": "exact", "start": "2026-03-01T21:30",
                         "time_zone": "America/Chicago"},
            "categories": ["physical", "threats"], "client_account": ACCOUNT,
            "place": "Fictional car park"}
    incidents.revise_incident(db, actor_of(agency["supervisor"]), incident_id,
                              incident_schemas.IncidentFields.model_validate(body),
                              reason="Threats added", based_on_revision=1)
    db.commit()
    data = {**INCIDENT_FORM, "place": "Fictional bus stop", "reason": "Better place",
            "based_on_revision": "1"}
    response = web.post(f"{path}/correct", data={"csrf_token": csrf_from(form.text), **data})
    assert response.status_code == 409
    assert "Revision 2 was saved after you opened this form" in response.text
    conflict = re.search(r'<table id="changes-since".*?</table>', response.text, re.S).group(0)
    assert "<ins>Threats</ins>" in conflict
    assert 'name="based_on_revision" value="2"' in response.text
    assert 'value="Fictional bus stop"' in response.text  # what was typed is kept
    assert count(db, IncidentRevision, incident_id=incident_id) == 2
    again = web.post(f"{path}/correct", data={"csrf_token": csrf_from(form.text), **data,
                                              "based_on_revision": "2"})
    assert again.status_code == 303
    assert count(db, IncidentRevision, incident_id=incident_id) == 3


def test_a_correction_without_its_base_revision_is_refused(web, db, agency) -> None:
    incident_id = make_incident(db, agency["advocate"], agency["client"])
    db.commit()
    sign_in(web, db, agency["advocate"])
    path = f"{base(agency['client'])}/incidents/{incident_id}"
    token = page_csrf(web, path)
    response = web.post(f"{path}/correct", data={"csrf_token": token, **INCIDENT_FORM,
                                                 "reason": "Fictional reason"})
    assert response.status_code == 422
    assert 'name="based_on_revision" value=""' in response.text
    assert count(db, IncidentRevision, incident_id=incident_id) == 1


def test_a_retracted_incident_stays_listed_and_marked(web, db, agency) -> None:
    incident_id = make_incident(db, agency["advocate"], agency["client"])
    db.commit()
    sign_in(web, db, agency["advocate"])
    path = f"{base(agency['client'])}/incidents/{incident_id}"
    token = page_csrf(web, path)
    empty = web.post(f"{path}/retract", data={"csrf_token": token, "reason": "  "})
    assert empty.status_code == 422
    assert "say why the incident is retracted" in field_error(empty.text, "retract-reason")
    done = web.post(f"{path}/retract", data={"csrf_token": token,
                                             "reason": "Recorded for the wrong client"})
    assert done.status_code == 303 and done.headers["location"].endswith(
        "?done=incident-retracted")
    page = web.get(done.headers["location"])
    assert 'id="retracted"' in page.text and "Recorded for the wrong client" in page.text
    assert ACCOUNT in page.text  # nothing is removed
    assert "Correct this incident" not in page.text and 'action="' + path + '/retract"' \
        not in page.text
    assert web.get(f"{path}/correct").status_code == 409
    again = web.post(f"{path}/retract", data={"csrf_token": token, "reason": "Twice"})
    assert again.status_code == 409 and "already retracted" in again.text
    listing = web.get(f"{base(agency['client'])}/incidents")
    assert '<tr class="retracted">' in listing.text and "Retracted</strong>" in listing.text
    assert count(db, IncidentRevision, incident_id=incident_id) == 2


def test_the_incident_list_filters_by_category_and_period(web, db, agency) -> None:
    early = make_incident(db, agency["advocate"], agency["client"])
    late = make_incident(db, agency["advocate"], agency["client"], categories=["stalking"],
                         occurred={"precision": "date", "start": "2026-05-10",
                                   "time_zone": "America/Chicago"})
    db.commit()
    sign_in(web, db, agency["advocate"])
    path = f"{base(agency['client'])}/incidents"
    both = web.get(path).text
    assert both.index(str(late)) < both.index(str(early))  # most recent first
    stalking = web.get(f"{path}?category=stalking").text
    assert str(late) in stalking and str(early) not in stalking
    march = web.get(f"{path}?from=2026-03-01&to=2026-03-31").text
    assert str(early) in march and str(late) not in march
    wrong = web.get(f"{path}?from=2026-04-01&to=2026-03-01")
    assert wrong.status_code == 422 and field_error(wrong.text, "to")
    bad = web.get(f"{path}?category=gossip")
    assert bad.status_code == 422 and field_error(bad.text, "category")


# --- evidence ----------------------------------------------------------------------------


def test_uploading_evidence_as_a_plain_form_shows_its_sha256(web, db, agency) -> None:
    incident_id = make_incident(db, agency["advocate"], agency["client"])
    db.commit()
    sign_in(web, db, agency["advocate"])
    form = web.get(f"{base(agency['client'])}/incidents/{incident_id}/evidence")
    assert form.status_code == 200
    html = form.text
    # The token and the typed fields come before the file: they are read first.
    assert html.index('name="csrf_token"') < html.index('name="description"') \
        < html.index('name="file"')
    assert 'enctype="multipart/form-data"' in html and "evidence-upload.js" in html
    content = jpeg()
    response = _upload(web, agency["client"], incident_id, csrf_from(html), content, fields={
        "captured_on": "2026-03-02", "captured_time": "08:15",
        "captured_zone": "America/Chicago", "captured_by": "Fictional client",
        "capture_device": "Fictional phone Z-1", "source_notes": "Taken the next morning"})
    assert response.status_code == 303, response.text[:3000]
    location = response.headers["location"]
    assert location.endswith("?done=evidence-uploaded")
    evidence_id = UUID(location.split("/")[-1].split("?")[0])
    stored = db.scalar(sa.select(Evidence).where(Evidence.id == evidence_id))
    assert stored.sha256 == hashlib.sha256(content).hexdigest()
    assert stored.incident_id == incident_id and stored.content_type == "image/jpeg"
    assert stored.captured_at == datetime(2026, 3, 2, 14, 15, tzinfo=UTC)
    assert_not_stored(" ".join(str(v) for v in stored.model_dump().values()),
                      ["Fictional photo of the broken", "fictional-door",
                       "Taken the next morning"])
    page = web.get(location)
    assert page.status_code == 200
    assert f'<code class="sha" id="evidence-sha256">{stored.sha256}</code>' in page.text
    assert "fictional-door.jpg" in page.text and "Taken the next morning" in page.text
    image = f'{base(agency["client"])}/evidence/{evidence_id}/content?purpose=case_work'
    assert f'<img src="{image}"' in page.text
    custody = re.search(r'<table id="custody".*?</table>', page.text, re.S).group(0)
    assert "Uploaded" in custody and "Viewed" in custody and "Case work" in custody
    shown = web.get(image)
    assert shown.status_code == 200 and shown.content == content
    assert shown.headers["content-disposition"].startswith("inline;")
    assert shown.headers["content-security-policy"] == "default-src 'none'; sandbox; " \
                                                      "frame-ancestors 'none'"
    assert shown.headers["etag"] == f'"{stored.sha256}"'
    again = web.get(image, headers={"If-None-Match": f'"{stored.sha256}"'})
    assert again.status_code == 304
    downloaded = web.get(f"{base(agency['client'])}/evidence/{evidence_id}/content"
                         "?download=true&purpose=court_preparation")
    assert downloaded.headers["content-disposition"] == (
        f'attachment; filename="evidence-{evidence_id}.jpg"')
    purposes = list(db.scalars(sa.select(CustodyEvent.purpose).where(
        CustodyEvent.evidence_id == evidence_id, CustodyEvent.action == "download")))
    assert sorted(purposes) == ["case_work", "case_work", "court_preparation"]
    incident_page = web.get(f"{base(agency['client'])}/incidents/{incident_id}")
    assert stored.sha256 in incident_page.text


def test_uploading_evidence_by_script_is_answered_in_json(web, db, agency) -> None:
    incident_id = make_incident(db, agency["advocate"], agency["client"])
    db.commit()
    sign_in(web, db, agency["advocate"])
    token = page_csrf(web, f"{base(agency['client'])}/incidents/{incident_id}/evidence")
    content = b"Fictional text message saved as plain text: see you at nine.\n" * 50
    response = _upload(web, agency["client"], incident_id, token, content, json=True)
    assert response.status_code == 201, response.text
    answer = response.json()
    assert answer["sha256"] == hashlib.sha256(content).hexdigest()
    assert answer["type"] == "plain text" and answer["evidence_url"].startswith(
        f"{base(agency['client'])}/evidence/")
    refused = _upload(web, agency["client"], incident_id, token, b"\x00\x01\x02" * 1000,
                      json=True)
    assert refused.status_code == 415
    assert refused.json()["errors"][0]["field"] == "file"
    assert count(db, Evidence, client_id=agency["client"].id) == 1


@pytest.mark.parametrize(("content", "fields", "status", "field", "message"), [
    (b"\x00\x01\x02" * 1000, {}, 415, "file", "file type not accepted"),
    (b"", {}, 422, "file", "the file is empty"),
    (None, {"captured_on": "2026-03-02"}, 422, "captured_time", "give the time"),
    (None, {"captured_on": "2026-03-02", "captured_time": "08:00",
            "captured_zone": "Mars/Olympus_Mons"}, 422, "captured_zone", "not an IANA"),
    (None, {"captured_on": "2999-03-02", "captured_time": "08:00"}, 422, "captured_on",
     "in the future"),
    (None, {"description": "x" * 4001}, 422, "description", "at most 4000"),
])
def test_a_refused_upload_is_explained_and_keeps_nothing(web, db, agency, content, fields,
                                                         status, field, message) -> None:
    incident_id = make_incident(db, agency["advocate"], agency["client"])
    db.commit()
    sign_in(web, db, agency["advocate"])
    token = page_csrf(web, f"{base(agency['client'])}/incidents/{incident_id}/evidence")
    response = _upload(web, agency["client"], incident_id, token,
                       jpeg() if content is None else content, fields=fields)
    assert response.status_code == status
    assert message in field_error(response.text, field), response.text[:4000]
    assert f'href="#{field}"' in response.text
    assert count(db, Evidence, client_id=agency["client"].id) == 0


def test_the_token_must_come_before_the_file(web, db, agency) -> None:
    incident_id = make_incident(db, agency["advocate"], agency["client"])
    db.commit()
    sign_in(web, db, agency["advocate"])
    token = page_csrf(web, f"{base(agency['client'])}/incidents/{incident_id}/evidence")
    boundary = "fictional-boundary-1234"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="x.jpg"\r\nContent-Type: image/jpeg\r\n\r\n').encode() + jpeg() + (
        f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n'
        f'{token}\r\n--{boundary}--\r\n').encode()
    response = web.post(f"{base(agency['client'])}/incidents/{incident_id}/evidence",
                        content=body,
                        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert response.status_code == 403
    assert count(db, Evidence, client_id=agency["client"].id) == 0


# --- protective orders and court dates ---------------------------------------------------


def test_protective_orders_are_recorded_and_changed(web, db, agency) -> None:
    sign_in(web, db, agency["advocate"])
    path = f"{base(agency['client'])}/orders"
    form = web.get(f"{path}/new")
    token = csrf_from(form.text)
    order = {"order_type": "temporary", "status": "granted", "court": "Fictional County Court",
             "case_number": "FC-2026-0042", "issued_on": "", "expires_on": "",
             "conditions": "Stay 100 metres away\r\nNo contact by phone\r\n", "notes": ""}
    missing = web.post(f"{path}/new", data={"csrf_token": token, **order})
    assert missing.status_code == 422
    assert field_error(missing.text, "issued_on") == "required when granted"
    assert count(db, ProtectiveOrder, client_id=agency["client"].id) == 0
    today = utcnow().date()
    order["issued_on"] = (today - timedelta(days=3)).isoformat()
    order["expires_on"] = (today + timedelta(days=180)).isoformat()
    created = web.post(f"{path}/new", data={"csrf_token": token, **order})
    assert created.status_code == 303 and created.headers["location"].endswith(
        "?done=order-recorded")
    listing = web.get(created.headers["location"])
    assert "Fictional County Court" in listing.text and "In force" in listing.text
    row = db.scalar(sa.select(ProtectiveOrder).where(
        ProtectiveOrder.client_id == agency["client"].id))
    assert_not_stored(str(row.model_dump()), ["Fictional County Court", "FC-2026-0042",
                                              "Stay 100 metres"])
    record = legal.read_order(db, actor_of(agency["advocate"]), agency["client"].id, row.id)
    assert record.conditions == ["Stay 100 metres away", "No contact by phone"]
    edit = web.get(f"{path}/{row.id}")
    assert edit.status_code == 200 and 'value="FC-2026-0042"' in edit.text
    unchanged = web.post(f"{path}/{row.id}", data={"csrf_token": token, **order})
    assert unchanged.headers["location"].endswith("?done=no-change")
    backwards = web.post(f"{path}/{row.id}", data={"csrf_token": token, **order,
                                                   "status": "requested"})
    assert backwards.status_code == 422
    assert "from granted" in field_error(backwards.text, "status")
    dismissed = web.post(f"{path}/{row.id}", data={"csrf_token": token, **order,
                                                   "status": "dismissed",
                                                   "notes": "Fictional: dismissed at review"})
    assert dismissed.status_code == 303
    db.expire_all()
    assert db.get(ProtectiveOrder, row.id).status == "dismissed"
    update = events(db, "protective_order.updated")[-1]
    assert update.details["fields"] == "notes,status"


def test_court_dates_are_kept_in_the_courts_time_zone(web, db, agency) -> None:
    sign_in(web, db, agency["advocate"])
    path = f"{base(agency['client'])}/court-dates"
    form = web.get(f"{path}/new")
    assert 'value="America/Chicago"' in form.text
    token = csrf_from(form.text)
    hearing = {"kind": "protective_order_hearing", "status": "scheduled",
               "starts_on": "2027-03-14", "starts_time": "02:30",
               "time_zone": "America/Chicago", "court": "Fictional Family Court",
               "protective_order_id": "", "notes": "", "outcome": ""}
    gap = web.post(f"{path}/new", data={"csrf_token": token, **hearing})
    assert gap.status_code == 422  # the clocks go forward at 02:00 that night
    assert "does not exist" in field_error(gap.text, "starts_time")
    zone = web.post(f"{path}/new", data={"csrf_token": token, **hearing,
                                         "time_zone": "Mars/Olympus_Mons"})
    assert field_error(zone.text, "time_zone") == "not an IANA time zone name"
    machine = web.post(f"{path}/new", data={"csrf_token": token, **hearing,
                                            "time_zone": "localtime"})
    assert field_error(machine.text, "time_zone") == "not an IANA time zone name"
    assert count(db, CourtDate, client_id=agency["client"].id) == 0
    hearing["starts_time"] = "09:30"
    created = web.post(f"{path}/new", data={"csrf_token": token, **hearing})
    assert created.status_code == 303
    row = db.scalar(sa.select(CourtDate).where(CourtDate.client_id == agency["client"].id))
    assert row.starts_at == datetime(2027, 3, 14, 14, 30, tzinfo=UTC)  # CDT, UTC-5
    listing = web.get(created.headers["location"])
    assert "2027-03-14 09:30" in listing.text and "Fictional Family Court" in listing.text
    moved = web.post(f"{path}/{row.id}", data={"csrf_token": token, **hearing,
                                               "starts_on": "2027-04-02"})
    assert moved.status_code == 303
    assert events(db, "court_date.updated")[-1].details["rescheduled"] is True


# --- the timeline ------------------------------------------------------------------------


def test_the_timeline_shows_every_kind_in_time_order_with_filters(web, db, agency) -> None:
    incident_id = make_incident(db, agency["advocate"], agency["client"])
    legal.record_court_date(db, actor_of(agency["advocate"]), agency["client"].id,
                            kind="custody", starts_at=datetime(2026, 4, 1, 15, tzinfo=UTC),
                            time_zone="America/Chicago")
    legal.record_order(db, actor_of(agency["advocate"]), agency["client"].id,
                       order_type="emergency", status="granted",
                       issued_on=datetime(2026, 3, 5).date())
    db.commit()
    sign_in(web, db, agency["advocate"])
    path = f"{base(agency['client'])}/timeline"
    page = web.get(path)
    assert page.status_code == 200
    html = page.text
    positions = [html.index(text) for text in (
        f"/incidents/{incident_id}", "Emergency order — Granted", "Custody — Scheduled")]
    assert positions == sorted(positions)
    only_court = web.get(f"{path}?kind=court_date").text
    assert "Custody — Scheduled" in only_court and f"/incidents/{incident_id}" not in only_court
    april = web.get(f"{path}?from=2026-04-01&to=2026-04-30").text
    assert "Custody — Scheduled" in april and "Emergency order" not in april
    bad = web.get(f"{path}?kind=gossip")
    assert bad.status_code == 422 and field_error(bad.text, "kind")
    assert events(db, "timeline.read")


# --- the safety plan: the agency's template and the discreet print -----------------------


def test_a_first_plan_starts_from_the_agencys_own_template(web, db, agency) -> None:
    plans.update_template(db, actor_of(agency["supervisor"]),
                          go_bag=["Fictional agency item: library card"],
                          technology_safety=["Fictional agency step: check the car"])
    db.commit()
    sign_in(web, db, agency["advocate"])
    form = web.get(f"{base(agency['client'])}/plan")
    assert 'value="Fictional agency item: library card"' in form.text
    assert 'value="Fictional agency step: check the car"' in form.text
    assert 'value="Passports"' not in form.text


def test_a_discreet_copy_of_the_plan_is_printed_from_the_dashboard(web, db, agency) -> None:
    sign_in(web, db, agency["advocate"])
    path = base(agency["client"])
    assert web.get(f"{path}/plan/print?format=pdf").status_code == 404  # no plan yet
    plans.create_version(db, actor_of(agency["advocate"]), agency["client"].id,
                         content={"code_word": {"word": "sunflower", "trusted_person": ""}},
                         review_date=utcnow().date() + timedelta(days=30))
    db.commit()
    page = web.get(path)
    assert f'href="{path}/plan/print?format=pdf"' in page.text
    pdf = web.get(f"{path}/plan/print?format=pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.headers["content-disposition"] == 'inline; filename="plan.pdf"'
    html = web.get(f"{path}/plan/print?format=html")
    assert "sunflower" in html.text
    assert html.headers["content-security-policy"].startswith("default-src 'none'; style-src")
    assert web.get(f"{path}/plan/print?format=doc").status_code == 422
    printed = events(db, "safety_plan.printed")
    assert [e.details["format"] for e in printed] == ["pdf", "html"]
