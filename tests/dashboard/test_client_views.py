"""Client pages through the real app (no browser): reach, CSRF, forms and what they store."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from app.clients import service as clients
from app.clients.models import Client
from app.consents.models import ReleaseOfInformation
from app.core.access import Actor
from app.dashboard import clients as pages
from app.dashboard.web import DASHBOARD_CSP
from app.db import utcnow
from app.identity.models import StaffUser
from app.risk.models import RiskAssessment
from app.safety_plans import service as plans
from app.safety_plans.models import SafetyPlanVersion
from app.service_log.models import ServiceContact
from tests.dashboard.helpers import csrf_from, events, page_csrf, sign_in
from tests.support.identity import make_org, make_user
from tests.support.privacy import assert_not_stored

NOT_FOUND = "There is nothing at this address."


def actor_of(user: StaffUser) -> Actor:
    return Actor(kind="user", id=user.id, org_id=user.org_id, role=user.role)


def make_client(db: Session, advocate: StaffUser, **personal: Any) -> Client:
    """A client opened by ``advocate`` through the service (so it is in their caseload)."""
    personal = {"preferred_name": "Sam Fictional"} | personal
    return clients.create_client(db, actor_of(advocate), personal=personal).client


def make_plan(db: Session, user: StaffUser, client: Client, **content: Any) -> None:
    content = {"go_bag": [{"item": "Passports", "ready": False},
                          {"item": "Phone charger", "ready": False}]} | content
    plans.create_version(db, actor_of(user), client.id, content=content,
                         review_date=utcnow().date() + timedelta(days=30),
                         change_note="First plan")


def count(db: Session, model: Any, **where: Any) -> int:
    query = sa.select(sa.func.count()).select_from(model)
    for name, value in where.items():
        query = query.where(getattr(model, name) == value)
    return int(db.scalar(query) or 0)


def field_error(html: str, name: str) -> str:
    """The message shown next to the input ``name`` ("" when there is none)."""
    match = re.search(rf'<p class="error-message" id="{re.escape(name)}-error">'
                      r'<span class="visually-hidden">Error: </span>([^<]*)</p>', html)
    return match.group(1) if match else ""


@pytest.fixture
def agency(db: Session) -> dict[str, Any]:
    org = make_org(db)
    people = {role: make_user(db, org, role) for role in ("admin", "supervisor", "advocate",
                                                          "auditor")}
    people["colleague"] = make_user(db, org, "advocate")
    db.commit()
    return {"org": org, **people}


# --- who reaches what --------------------------------------------------------------------


def test_the_caseload_lists_only_my_clients_urgent_first(web, db, agency) -> None:
    calm = make_client(db, agency["advocate"], preferred_name="Quinn Fictional")
    urgent = make_client(db, agency["advocate"], preferred_name="Rowan Fictional")
    clients.update_client(db, actor_of(agency["advocate"]), urgent.id, personal={},
                          urgent=True)
    make_client(db, agency["colleague"], preferred_name="Parker Fictional")
    sign_in(web, db, agency["advocate"])
    page = web.get("/dashboard/clients")
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == DASHBOARD_CSP
    assert page.text.index(urgent.case_number) < page.text.index(calm.case_number)
    assert "Rowan Fictional" in page.text and "Quinn Fictional" in page.text
    assert "Parker Fictional" not in page.text
    assert '<a href="/dashboard/clients" aria-current="page">Clients</a>' in page.text
    listed = events(db, "client.listed")
    assert {e.object_id for e in listed} >= {str(calm.id), str(urgent.id)}


def test_the_caseload_filters_by_status_and_case_number(web, db, agency) -> None:
    first = make_client(db, agency["advocate"], preferred_name="Quinn Fictional")
    second = make_client(db, agency["advocate"], preferred_name="Rowan Fictional")
    clients.update_client(db, actor_of(agency["advocate"]), second.id, personal={},
                          status="active")
    sign_in(web, db, agency["advocate"])
    active = web.get("/dashboard/clients?status=active")
    assert second.case_number in active.text and first.case_number not in active.text
    by_number = web.get(f"/dashboard/clients?case_number={first.case_number}")
    assert first.case_number in by_number.text and second.case_number not in by_number.text
    wrong = web.get("/dashboard/clients?status=sleeping")
    assert wrong.status_code == 422 and field_error(wrong.text, "status") == "not a status"


def test_a_supervisor_filters_by_assigned_advocate(web, db, agency) -> None:
    mine = make_client(db, agency["advocate"])
    theirs = make_client(db, agency["colleague"])
    sign_in(web, db, agency["supervisor"])
    everyone = web.get("/dashboard/clients")
    assert mine.case_number in everyone.text and theirs.case_number in everyone.text
    assert 'id="advocate"' in everyone.text
    filtered = web.get(f"/dashboard/clients?advocate={agency['colleague'].id}")
    assert theirs.case_number in filtered.text and mine.case_number not in filtered.text


def test_name_search_is_posted_and_never_put_in_a_url(web, db, agency, monkeypatch) -> None:
    monkeypatch.setattr(pages, "CASELOAD_SIZE", 1)
    for _ in range(2):
        make_client(db, agency["advocate"], preferred_name="Morgan Fictional-Twin")
    make_client(db, agency["advocate"], legal_name="Alex Fictional-Legal")
    sign_in(web, db, agency["advocate"])
    token = page_csrf(web, "/dashboard/clients")
    found = web.post("/dashboard/clients/search", data={"csrf_token": token,
                                                        "name": "alex  fictional-legal"})
    assert found.status_code == 200
    assert found.text.count('<a href="/dashboard/clients/') == 1
    twins = web.post("/dashboard/clients/search", data={"csrf_token": token,
                                                        "name": "Morgan Fictional-Twin"})
    assert twins.text.count("Morgan Fictional-Twin</td>") == 1  # one per page
    assert 'name="cursor" value="' in twins.text  # the next page is a form, not a link
    assert not re.search(r'href="[^"]*Morgan', twins.text)
    cursor = re.search(r'name="cursor" value="([^"]+)"', twins.text).group(1)
    second = web.post("/dashboard/clients/search", data={
        "csrf_token": token, "name": "Morgan Fictional-Twin", "cursor": cursor})
    assert second.text.count("Morgan Fictional-Twin</td>") == 1
    empty = web.post("/dashboard/clients/search", data={"csrf_token": token, "name": " "})
    assert empty.status_code == 422 and field_error(empty.text, "name")


CLIENT_PAGES = ["", "/edit", "/plan", "/plan/versions", "/plan/versions/1", "/plan/diff",
                "/assessment", "/contacts"]


@pytest.mark.parametrize("suffix", CLIENT_PAGES)
def test_an_advocate_cannot_open_a_colleagues_client(web, db, agency, suffix) -> None:
    theirs = make_client(db, agency["colleague"])
    make_plan(db, agency["colleague"], theirs)
    sign_in(web, db, agency["advocate"])
    response = web.get(f"/dashboard/clients/{theirs.id}{suffix}")
    assert response.status_code == 404
    assert NOT_FOUND in response.text and "Sam Fictional" not in response.text


def test_writes_to_a_colleagues_client_are_not_found_and_store_nothing(web, db,
                                                                      agency) -> None:
    theirs = make_client(db, agency["colleague"])
    make_plan(db, agency["colleague"], theirs)
    sign_in(web, db, agency["advocate"])
    token = page_csrf(web, "/dashboard/clients")
    base = f"/dashboard/clients/{theirs.id}"
    posts = {
        "/edit": {"preferred_name": "Changed Fictional"},
        "/plan": {"review_date": (utcnow().date() + timedelta(days=9)).isoformat(),
                  "based_on": "1"},
        "/plan/go-bag": {"based_on": "1", "ready": "0"},
        "/assessment": {"instrument": "example-safety-screen:1.0"},
        "/consents": {"consent.recipient_name": "Fictional Legal Aid"},
        "/contacts": {"contact.kind": "in_person"},
    }
    for suffix, data in posts.items():
        response = web.post(base + suffix, data={"csrf_token": token, **data})
        assert response.status_code == 404, suffix
        assert NOT_FOUND in response.text
    assert count(db, SafetyPlanVersion, client_id=theirs.id) == 1
    assert count(db, ServiceContact, client_id=theirs.id) == 0
    assert count(db, ReleaseOfInformation, client_id=theirs.id) == 0


def test_another_agencys_client_is_not_found(web, db, agency) -> None:
    elsewhere = make_user(db, make_org(db), "advocate")
    stranger = make_client(db, elsewhere)
    sign_in(web, db, agency["supervisor"])
    assert web.get(f"/dashboard/clients/{stranger.id}").status_code == 404
    assert stranger.case_number not in web.get("/dashboard/clients").text
    assert web.get("/dashboard/clients/not-a-uuid").status_code == 404


@pytest.mark.parametrize("role", ["admin", "auditor"])
def test_admins_and_auditors_have_no_client_pages(web, db, agency, role) -> None:
    client = make_client(db, agency["advocate"])
    sign_in(web, db, agency[role])
    home = web.get("/dashboard")
    assert 'href="/dashboard/clients"' not in home.text
    for path in ("/dashboard/clients", "/dashboard/clients/new",
                 f"/dashboard/clients/{client.id}"):
        response = web.get(path)
        assert response.status_code == 404, path
        assert "Sam Fictional" not in response.text
    token = page_csrf(web)
    before = count(db, Client, org_id=agency["org"].id)
    created = web.post("/dashboard/clients/new", data={"csrf_token": token,
                                                       "preferred_name": "Nobody Fictional"})
    assert created.status_code == 404
    assert count(db, Client, org_id=agency["org"].id) == before
    assert events(db, "access.denied")


# --- forms need their CSRF token ---------------------------------------------------------


@pytest.mark.parametrize("token", [None, "", "0" * 64])
def test_forms_without_the_csrf_token_are_refused(web, db, agency, token) -> None:
    client = make_client(db, agency["advocate"])
    make_plan(db, agency["advocate"], client)
    sign_in(web, db, agency["advocate"])
    csrf = {} if token is None else {"csrf_token": token}
    before = count(db, Client, org_id=agency["org"].id)
    created = web.post("/dashboard/clients/new", data={**csrf, "preferred_name": "Fictional"})
    ticked = web.post(f"/dashboard/clients/{client.id}/plan/go-bag",
                      data={**csrf, "based_on": "1", "ready": "0"})
    logged = web.post(f"/dashboard/clients/{client.id}/contacts",
                      data={**csrf, "contact.kind": "in_person",
                            "contact.occurred_on": utcnow().date().isoformat()})
    searched = web.post("/dashboard/clients/search", data={**csrf, "name": "Sam Fictional"})
    for response in (created, ticked, logged, searched):
        assert response.status_code == 403
        assert "This form could not be accepted" in response.text
        assert "Sam Fictional" not in response.text
    assert count(db, Client, org_id=agency["org"].id) == before
    assert count(db, SafetyPlanVersion, client_id=client.id) == 1
    assert count(db, ServiceContact, client_id=client.id) == 0
    assert events(db, "access.denied")[-1].details["reason"] == "csrf"


# --- opening and editing a case ----------------------------------------------------------


NEW_CLIENT = {
    "preferred_name": "Robin Fictional",
    "legal_name": "Roberta Fictional-Example",
    "aliases": "Bobbie Fictional\nRo Example",
    "date_of_birth": "1990-04-01",
    "contact_details.0.kind": "phone", "contact_details.0.value": "+44 7700 900123",
    "contact_details.0.label": "safe phone",
    "contact_details.1.kind": "phone", "contact_details.1.value": "",
    "contact_details.1.label": "",
    "address": "1 Imaginary Lane, Nowhere",
    "notes": "Fictional note: prefers calls after six in the evening.",
    "safe_contact.time_zone": "Europe/London",
    "safe_contact.channels.0.safe": "on", "safe_contact.channels.0.code_word": "bluebell",
    "safe_contact.channels.0.windows.0.days": ["mon", "wed"],
    "safe_contact.channels.0.windows.0.start": "18:00",
    "safe_contact.channels.0.windows.0.end": "20:00",
    "household.children.0.first_name": "Kim", "household.children.0.age": "7",
    "household.children.0.custody_notes": "Fictional school pick-up on Fridays.",
    "household.pets.0.name": "Biscuit", "household.pets.0.species": "dog",
    "household.pets.0.notes": "",
    "other_party.name": "Pat Fictional-Other", "other_party.vehicle": "A fictional blue van",
    "status": "intake",
}


def test_opening_a_case_stores_everything_encrypted(web, db, agency) -> None:
    sign_in(web, db, agency["advocate"])
    form = web.get("/dashboard/clients/new")
    assert form.status_code == 200 and '<label for="preferred_name">' in form.text
    response = web.post("/dashboard/clients/new",
                        data={"csrf_token": csrf_from(form.text), **NEW_CLIENT})
    assert response.status_code == 303, response.text[:2000]
    location = response.headers["location"]
    assert location.endswith("?done=client-created") and "Robin" not in location
    client_id = UUID(location.split("/")[3].split("?")[0])
    record = clients.read_client(db, actor_of(agency["advocate"]), client_id)
    assert record.fields["legal_name"] == "Roberta Fictional-Example"
    assert record.fields["aliases"] == ["Bobbie Fictional", "Ro Example"]
    assert record.fields["contact_details"] == [
        {"kind": "phone", "value": "+44 7700 900123", "label": "safe phone"}]
    assert record.fields["safe_contact"]["time_zone"] == "Europe/London"
    assert record.fields["safe_contact"]["channels"] == [{
        "channel": "phone", "safe": True, "leave_message": False, "code_word": "bluebell",
        "windows": [{"days": ["mon", "wed"], "start": "18:00", "end": "20:00"}]}]
    assert record.fields["household"]["children"] == [
        {"first_name": "Kim", "age": 7, "custody_notes": "Fictional school pick-up on Fridays."}]
    assert record.fields["household"]["pets"][0]["name"] == "Biscuit"
    assert record.fields["other_party"]["vehicle"] == "A fictional blue van"
    assert record.assigned_user_ids == [agency["advocate"].id]
    stored = db.scalar(sa.select(Client).where(Client.id == client_id))
    assert_not_stored(" ".join(str(v) for v in stored.model_dump().values()),
                      ["Roberta Fictional", "Imaginary Lane", "bluebell", "Fictional school"])
    page = web.get(location)
    assert "The case is open." in page.text and "Robin Fictional" in page.text
    assert "Biscuit" in page.text and "bluebell" in page.text
    assert events(db, "client.created") and events(db, "client.household_updated")


def test_a_case_with_no_personal_data_is_fine(web, db, agency) -> None:
    sign_in(web, db, agency["advocate"])
    token = page_csrf(web, "/dashboard/clients/new")
    response = web.post("/dashboard/clients/new", data={"csrf_token": token})
    assert response.status_code == 303
    page = web.get(response.headers["location"])
    assert "No name given" in page.text and "Do not contact the client" in page.text


@pytest.mark.parametrize(("changes", "field", "message"), [
    ({"date_of_birth": "1990-13-45"}, "date_of_birth", "not a date"),
    ({"safe_contact.channels.0.windows.0.end": "17:00"},
     "safe_contact.channels.0.windows.0.end", "must be after start"),
    ({"safe_contact.time_zone": "Mars/Olympus_Mons"}, "safe_contact.time_zone",
     "not an IANA time zone name"),
    ({"household.children.0.age": "seven"}, "household.children.0.age", "valid integer"),
    ({"contact_details.1.value": "x" * 301}, "contact_details.1.value", "at most 300"),
    ({"status": "sleeping"}, "status", "Input should be"),
])
def test_bad_input_is_shown_next_to_the_field_and_nothing_is_stored(
        web, db, agency, changes, field, message) -> None:
    sign_in(web, db, agency["advocate"])
    token = page_csrf(web, "/dashboard/clients/new")
    before = count(db, Client, org_id=agency["org"].id)
    response = web.post("/dashboard/clients/new",
                        data={"csrf_token": token, **NEW_CLIENT, **changes})
    assert response.status_code == 422
    assert message in field_error(response.text, field), response.text[:3000]
    assert f'href="#{field}"' in response.text  # the summary links to the field
    assert f'id="{field}"' in response.text
    assert 'value="Roberta Fictional-Example"' in response.text  # typed values stay
    assert ">1 Imaginary Lane, Nowhere</textarea>" in response.text
    assert count(db, Client, org_id=agency["org"].id) == before
    assert not events(db, "client.created")


def test_an_error_on_a_later_row_lands_on_the_row_where_it_was_typed(web, db,
                                                                    agency) -> None:
    sign_in(web, db, agency["advocate"])
    token = page_csrf(web, "/dashboard/clients/new")
    response = web.post("/dashboard/clients/new", data={
        "csrf_token": token,
        "contact_details.0.kind": "phone", "contact_details.0.value": "",
        "contact_details.0.label": "",
        "contact_details.1.kind": "phone", "contact_details.1.value": "",
        "contact_details.1.label": "",
        "contact_details.2.kind": "email", "contact_details.2.value": "",
        "contact_details.2.label": "only a label"})
    assert response.status_code == 422
    assert field_error(response.text, "contact_details.2.value")


def test_editing_changes_only_what_changed(web, db, agency) -> None:
    client = make_client(db, agency["advocate"], legal_name="Taylor Fictional")
    sign_in(web, db, agency["advocate"])
    path = f"/dashboard/clients/{client.id}/edit"
    form = web.get(path)
    assert form.status_code == 200 and 'value="Taylor Fictional"' in form.text
    data = {"csrf_token": csrf_from(form.text), "preferred_name": "Sam Fictional",
            "legal_name": "Taylor Fictional", "safe_contact.time_zone": "UTC",
            "status": "active", "household.pets.0.name": "Pebble",
            "household.pets.0.species": "cat", "household.pets.0.notes": ""}
    response = web.post(path, data=data)
    assert response.status_code == 303
    assert response.headers["location"].endswith("?done=client-updated")
    updated = events(db, "client.updated")[-1]
    assert updated.details["changed"] == "status"
    assert events(db, "client.household_updated")
    assert web.post(path, data=data).headers["location"].endswith("?done=no-change")
    closing = web.post(path, data={**data, "status": "closed"})
    assert closing.status_code == 422
    assert field_error(closing.text, "closing_reason") == "required to close"
    db.refresh(client)
    assert client.status == "active"


def test_what_people_typed_is_escaped(web, db, agency) -> None:
    client = make_client(db, agency["advocate"], preferred_name='<script>alert("x")</script>')
    sign_in(web, db, agency["advocate"])
    for path in ("/dashboard/clients", f"/dashboard/clients/{client.id}"):
        page = web.get(path)
        assert "<script>" not in page.text and "&lt;script&gt;" in page.text


# --- the safety plan ---------------------------------------------------------------------


def test_ticking_a_go_bag_item_saves_a_new_version(web, db, agency) -> None:
    client = make_client(db, agency["advocate"])
    make_plan(db, agency["advocate"], client)
    sign_in(web, db, agency["advocate"])
    page = web.get(f"/dashboard/clients/{client.id}")
    assert 'id="go-bag-1"' in page.text
    response = web.post(f"/dashboard/clients/{client.id}/plan/go-bag",
                        data={"csrf_token": csrf_from(page.text), "based_on": "1",
                              "ready": ["1"]})
    assert response.status_code == 303
    assert response.headers["location"].endswith("?done=go-bag-saved#safety-plan")
    current = plans.read_plan(db, actor_of(agency["advocate"]), client.id)
    assert current.plan.version == 2
    assert [i["ready"] for i in current.content["go_bag"]] == [False, True]
    assert current.change_note == "Go-bag item marked ready"
    shown = web.get(f"/dashboard/clients/{client.id}")
    assert re.search(r'id="go-bag-1" name="ready" value="1" checked', shown.text)
    # A page opened before that change is refused rather than undoing it.
    stale = web.post(f"/dashboard/clients/{client.id}/plan/go-bag",
                     data={"csrf_token": csrf_from(page.text), "based_on": "1",
                           "ready": ["0"]})
    assert stale.status_code == 409 and "The plan was changed" in stale.text
    assert count(db, SafetyPlanVersion, client_id=client.id) == 2


def test_writing_a_plan_and_comparing_versions(web, db, agency) -> None:
    client = make_client(db, agency["advocate"])
    sign_in(web, db, agency["advocate"])
    path = f"/dashboard/clients/{client.id}/plan"
    form = web.get(path)
    assert form.status_code == 200 and 'value="Passports"' in form.text  # the template
    review = (utcnow().date() + timedelta(days=60)).isoformat()
    data = {"csrf_token": csrf_from(form.text), "based_on": "",
            "content.safe_places.0.place": "A fictional friend's flat",
            "content.safe_places.0.how_to_get_there": "Bus 12",
            "content.go_bag.0.item": "Passports", "content.go_bag.0.ready": "on",
            "content.go_bag.1.item": "Cash",
            "content.go_bag.2.item": "",
            "content.important_contacts.0.name": "Fictional Helpline",
            "content.important_contacts.0.phone": "0800 000 000",
            "content.important_contacts.0.note": "",
            "content.code_word.word": "sunflower", "content.code_word.trusted_person": "Jo",
            "content.code_word.check_in_time": "19:30",
            "content.contact_with_other_party.mode": "written_logistics_only",
            "content.reasons_for_leaving": "Fictional reasons.",
            "review_date": review, "change_note": "First plan with the client"}
    saved = web.post(path, data=data)
    assert saved.status_code == 303, saved.text[:3000]
    first = plans.read_plan(db, actor_of(agency["advocate"]), client.id)
    assert first.content["go_bag"] == [{"item": "Passports", "ready": True},
                                       {"item": "Cash", "ready": False}]
    assert first.content["code_word"]["check_in_time"] == "19:30"

    revise = web.get(path)
    assert "Revising version 1" in revise.text and 'value="sunflower"' in revise.text
    changed = {**data, "based_on": "1", "csrf_token": csrf_from(revise.text),
               "content.go_bag.1.ready": "on", "content.code_word.word": "daisy"}
    assert web.post(path, data=changed).status_code == 303
    # The same form sent again is based on version 1, which is no longer the latest.
    again = web.post(path, data=changed)
    assert again.status_code == 409 and 'value="daisy"' in again.text
    assert count(db, SafetyPlanVersion, client_id=client.id) == 2

    diff = web.get(f"/dashboard/clients/{client.id}/plan/diff")
    assert diff.status_code == 200
    assert "Changes from version 1 to version 2" in diff.text
    assert "Go-bag checklist › item 2 › ready" in diff.text
    assert "Code word and check-in › code word" in diff.text
    assert "sunflower" in diff.text and "daisy" in diff.text
    same = web.get(f"/dashboard/clients/{client.id}/plan/diff?from=2&to=2")
    assert "same version twice" in same.text
    assert web.get(f"/dashboard/clients/{client.id}/plan/diff?from=9").status_code == 404
    version = web.get(f"/dashboard/clients/{client.id}/plan/versions/1")
    assert "sunflower" in version.text and "First plan with the client" in version.text


@pytest.mark.parametrize(("changes", "field", "message"), [
    ({"review_date": ""}, "review_date", "Field required"),
    ({"review_date": "2001-01-01"}, "review_date", "in the past"),
    ({"content.safe_places.1.place": "", "content.safe_places.1.how_to_get_there": "Taxi"},
     "content.safe_places.1.place", "at least 1 character"),
    ({"content.code_word.check_in_time": "25:99"}, "content.code_word.check_in_time",
     "should match pattern"),
])
def test_a_bad_plan_is_explained_and_not_saved(web, db, agency, changes, field,
                                               message) -> None:
    client = make_client(db, agency["advocate"])
    sign_in(web, db, agency["advocate"])
    path = f"/dashboard/clients/{client.id}/plan"
    data = {"csrf_token": page_csrf(web, path), "based_on": "",
            "content.safe_places.0.place": "Fictional library",
            "content.safe_places.0.how_to_get_there": "",
            "content.safe_places.1.place": "", "content.safe_places.1.how_to_get_there": "",
            "review_date": (utcnow().date() + timedelta(days=5)).isoformat(), **changes}
    response = web.post(path, data=data)
    assert response.status_code == 422
    assert message in field_error(response.text, field), response.text[:3000]
    assert 'value="Fictional library"' in response.text
    assert count(db, SafetyPlanVersion, client_id=client.id) == 0


# --- risk, consents, service log -------------------------------------------------------


LOW_ANSWERS = {
    "answers.violence_trend": "none", "answers.threatened_to_kill": "no",
    "answers.breathing_restricted": "no", "answers.weapon_access": "no",
    "answers.weapon_threat": "no", "answers.separation": "planning",
    "answers.threats_to_children_or_pets": "no", "answers.controlling_behaviour": "yes",
    "answers.substance_misuse": "no", "answers.service_contacts": "1",
    "answers.own_fear": "a_little",
}


def test_recording_an_assessment_shows_in_the_risk_history(web, db, agency) -> None:
    client = make_client(db, agency["advocate"])
    sign_in(web, db, agency["advocate"])
    path = f"/dashboard/clients/{client.id}/assessment"
    form = web.get(f"{path}?instrument=example-safety-screen:1.0")
    assert form.status_code == 200
    assert 'id="answers.followed_or_watched-tracks_location"' in form.text
    response = web.post(path, data={"csrf_token": csrf_from(form.text),
                                    "instrument": "example-safety-screen:1.0",
                                    "answers.followed_or_watched": ["turns_up"],
                                    **LOW_ANSWERS})
    assert response.status_code == 303, response.text[:3000]
    row = db.scalar(sa.select(RiskAssessment).where(RiskAssessment.client_id == client.id))
    assert row.level == "low" and row.score == "6"
    page = web.get(response.headers["location"])
    assert "The risk assessment is recorded." in page.text
    assert re.search(r'<span class="level tone-0">Low</span>', page.text)
    assert '<rect x="' in page.text and "style=" not in page.text


def test_unanswered_items_are_marked_and_nothing_is_recorded(web, db, agency) -> None:
    client = make_client(db, agency["advocate"])
    sign_in(web, db, agency["advocate"])
    path = f"/dashboard/clients/{client.id}/assessment"
    answers = {k: v for k, v in LOW_ANSWERS.items() if k != "answers.own_fear"}
    response = web.post(path, data={"csrf_token": page_csrf(web, path),
                                    "instrument": "example-safety-screen:1.0",
                                    **answers, "answers.service_contacts": "many"})
    assert response.status_code == 422
    assert field_error(response.text, "answers.service_contacts") == "must be a whole number"
    response = web.post(path, data={"csrf_token": page_csrf(web, path),
                                    "instrument": "example-safety-screen:1.0", **answers})
    assert response.status_code == 422
    assert field_error(response.text, "answers.own_fear") == "is required"
    assert 'id="answers.separation-planning" name="answers.separation" value="planning" ' \
           'checked' in response.text
    assert count(db, RiskAssessment, client_id=client.id) == 0
    unknown = web.get(f"{path}?instrument=no-such-screen:1")
    assert unknown.status_code == 422 and field_error(unknown.text, "instrument")


def test_a_release_is_recorded_and_revoked(web, db, agency) -> None:
    client = make_client(db, agency["advocate"])
    sign_in(web, db, agency["advocate"])
    base = f"/dashboard/clients/{client.id}"
    token = page_csrf(web, base)
    ends = (utcnow().date() + timedelta(days=90)).isoformat()
    data = {"csrf_token": token, "consent.recipient_name": "Fictional Legal Aid",
            "consent.purpose": "Help with a fictional protection order",
            "consent.categories": ["identity", "contact_details"],
            "consent.how_given": "written", "consent.given_on": utcnow().date().isoformat(),
            "consent.expires_on": ends}
    missing = web.post(f"{base}/consents", data={**data, "consent.categories": [],
                                                 "consent.expires_on": ""})
    assert missing.status_code == 422
    assert field_error(missing.text, "consent.expires_on")
    assert field_error(missing.text, "consent.categories")
    assert 'value="Fictional Legal Aid"' in missing.text
    recorded = web.post(f"{base}/consents", data=data)
    assert recorded.status_code == 303, recorded.text[:3000]
    twice = web.post(f"{base}/consents", data=data)
    assert twice.status_code == 409
    assert field_error(twice.text, "consent.recipient_name") == "an unexpired release exists"
    release = db.scalar(sa.select(ReleaseOfInformation).where(
        ReleaseOfInformation.client_id == client.id))
    assert release.categories == ["contact_details", "identity"]
    page = web.get(base)
    assert "Fictional Legal Aid" in page.text and "In force" in page.text
    short = web.post(f"{base}/consents/{release.id}/revoke",
                     data={"csrf_token": token, "reason": "no"})
    assert short.status_code == 422 and field_error(short.text, f"revoke-{release.id}")
    revoked = web.post(f"{base}/consents/{release.id}/revoke",
                       data={"csrf_token": token, "reason": "The client asked to stop."})
    assert revoked.status_code == 303
    db.refresh(release)
    assert release.revoked_at is not None
    assert "Revoked: The client asked to stop." in web.get(base).text


def test_a_contact_is_added_to_the_service_log(web, db, agency) -> None:
    client = make_client(db, agency["advocate"])
    sign_in(web, db, agency["advocate"])
    base = f"/dashboard/clients/{client.id}"
    token = page_csrf(web, base)
    bad = web.post(f"{base}/contacts", data={
        "csrf_token": token, "contact.kind": "séance", "contact.occurred_on": "",
        "contact.duration_minutes": "2000", "contact.notes": "Fictional call notes"})
    assert bad.status_code == 422
    for name in ("contact.kind", "contact.occurred_on", "contact.duration_minutes"):
        assert field_error(bad.text, name), name
    assert ">Fictional call notes</textarea>" in bad.text
    assert count(db, ServiceContact, client_id=client.id) == 0
    good = web.post(f"{base}/contacts", data={
        "csrf_token": token, "contact.kind": "hotline_call",
        "contact.occurred_on": utcnow().date().isoformat(),
        "contact.duration_minutes": "25", "contact.notes": "Fictional call notes"})
    assert good.status_code == 303
    page = web.get(base)
    assert "Hotline call" in page.text and "Fictional call notes" in page.text
    assert web.get(f"{base}/contacts").status_code == 200
