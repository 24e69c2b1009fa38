"""Directory, referral and webhook-delivery pages through the real app (no browser): reach
(another agency's listing form, referral or app, another advocate's client: 404), the
confidential address, the preview showing nothing a release does not cover, CSRF, and
forms refused with an error by the field and nothing changed."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from app.consents import service as consents
from app.core import deferred
from app.core.access import Actor
from app.db import utcnow
from app.identity.models import Org, StaffUser
from app.referrals.models import Referral, ReferralTransition
from app.referrals.service import CATEGORIES
from app.resources.models import Resource
from app.webhooks import service as webhooks
from app.webhooks import targets
from app.webhooks.models import DeliveryState, WebhookDelivery
from tests.dashboard.helpers import csrf_from, events, page_csrf, sign_in
from tests.dashboard.referral_records import (
    CONFIDENTIAL_ADDRESS,
    actor_of,
    make_listing,
    make_referral_of,
)
from tests.dashboard.test_client_views import field_error, make_client
from tests.referrals.factories import NEEDLES, NEVER, make_app, make_full_client
from tests.support.identity import make_org, make_user

NOT_FOUND = "There is nothing at this address."
PUBLIC = "https://93.184.215.14/hooks/advocase"  # a public address literal: no DNS needed


@pytest.fixture
def agency(db: Session) -> dict[str, Any]:
    org = make_org(db)
    people: dict[str, Any] = {role: make_user(db, org, role)
                              for role in ("admin", "supervisor", "advocate", "auditor")}
    people["colleague"] = make_user(db, org, "advocate")
    other = make_org(db)
    people["stranger"] = make_user(db, other, "supervisor")
    people["stranger_advocate"] = make_user(db, other, "advocate")
    db.commit()
    return {"org": org, "other_org": other, **people}


@pytest.fixture
def sent_tasks() -> Iterator[list[tuple[str, list[Any], dict[str, Any]]]]:
    sent: list[tuple[str, list[Any], dict[str, Any]]] = []
    deferred.set_sender(lambda name, args, options: sent.append((name, args, options)))
    try:
        yield sent
    finally:
        deferred.set_sender(None)


def count(db: Session, model: Any, **where: Any) -> int:
    query = sa.select(sa.func.count()).select_from(model)
    for name, value in where.items():
        query = query.where(getattr(model, name) == value)
    return int(db.scalar(query) or 0)


def status_of(db: Session, referral_id: UUID) -> str:
    db.expire_all()
    referral = db.get(Referral, referral_id)
    assert referral is not None
    return referral.status


def release_to(db: Session, supervisor: StaffUser, client_id: UUID, name: str,
               categories: list[str]) -> UUID:
    """A release of the client's data to an outside agency named as the directory names it."""
    made = consents.record_release(
        db, actor_of(supervisor), client_id, recipient_name=name,
        purpose="Fictional: arrange a place", categories=categories, how_given="written",
        expires_at=utcnow() + timedelta(days=90))
    db.commit()
    return made.release.id


# --- reach: 404 outside it -----------------------------------------------------------------


def test_another_agencys_listing_has_no_forms_here(web, db, agency) -> None:
    theirs = make_listing(db, agency["stranger"], name="Fictional Faraway Refuge")
    db.commit()
    sign_in(web, db, agency["supervisor"])
    token = page_csrf(web)
    assert web.get(f"/dashboard/resources/{theirs.id}").status_code == 200  # shared directory
    for path in (f"/dashboard/resources/{theirs.id}/edit", f"/dashboard/resources/{uuid4()}",
                 "/dashboard/resources/not-a-uuid"):
        response = web.get(path)
        assert response.status_code == 404 and NOT_FOUND in response.text, path
    before = (theirs.name, theirs.beds_available)
    for path, data in ((f"/dashboard/resources/{theirs.id}/edit",
                        {"name": "Renamed by a stranger", "categories": "shelter"}),
                       (f"/dashboard/resources/{theirs.id}/capacity",
                        {"beds_available": "0"})):
        response = web.post(path, data={"csrf_token": token, **data})
        assert response.status_code == 404, path
    db.expire_all()
    assert (db.get(Resource, theirs.id).name, db.get(Resource, theirs.id).beds_available) \
        == before
    # The page has no edit link for them either.
    assert f"/dashboard/resources/{theirs.id}/edit" not in web.get(
        f"/dashboard/resources/{theirs.id}").text


def test_another_agencys_referral_is_not_found(web, db, agency) -> None:
    their_client = make_client(db, agency["stranger_advocate"])
    theirs = make_referral_of(db, agency["stranger_advocate"], their_client.id)
    mine = make_client(db, agency["advocate"])
    db.commit()
    sign_in(web, db, agency["supervisor"])
    token = page_csrf(web)
    for base in (f"/dashboard/clients/{their_client.id}/referrals/{theirs}",
                 f"/dashboard/clients/{mine.id}/referrals/{theirs}"):
        for rest in ("", "/preview"):
            response = web.get(base + rest)
            assert response.status_code == 404 and NOT_FOUND in response.text, base + rest
        for action, data in (("send", {"reason": "Fictional"}),
                             ("withdraw", {"reason": "Fictional stranger"})):
            assert web.post(f"{base}/{action}", data={"csrf_token": token, **data}
                            ).status_code == 404
    assert web.get(f"/dashboard/clients/{their_client.id}/referrals").status_code == 404
    assert status_of(db, theirs) == "draft"
    listed = web.get("/dashboard/referrals")
    assert str(theirs) not in listed.text


def test_a_client_of_another_advocate_is_not_found(web, db, agency) -> None:
    client = make_client(db, agency["colleague"])
    referral_id = make_referral_of(db, agency["colleague"], client.id)
    listing = make_listing(db, agency["supervisor"])
    db.commit()
    sign_in(web, db, agency["advocate"])
    token = page_csrf(web)
    base = f"/dashboard/clients/{client.id}/referrals"
    for path in (base, f"{base}/new", f"{base}/new?resource={listing.id}",
                 f"{base}/{referral_id}", f"{base}/{referral_id}/preview"):
        response = web.get(path)
        assert response.status_code == 404 and NOT_FOUND in response.text, path
    before = count(db, Referral)
    response = web.post(f"{base}/new", data={"csrf_token": token,
                                             "resource_id": str(listing.id),
                                             "reason": "Fictional: not my client"})
    assert response.status_code == 404
    assert count(db, Referral) == before
    assert str(referral_id) not in web.get("/dashboard/referrals").text


def test_pages_for_other_roles_do_not_exist(web, db, agency) -> None:
    sign_in(web, db, agency["advocate"])
    token = page_csrf(web)
    assert web.get("/dashboard/resources/new").status_code == 404
    response = web.post("/dashboard/resources/new", data={
        "csrf_token": token, "name": "Fictional Advocate Listing", "categories": "shelter"})
    assert response.status_code == 404
    assert count(db, Resource, name="Fictional Advocate Listing") == 0
    app, _ = make_app(db, agency["org"], "Fictional Shelter Software")
    db.commit()
    assert web.get(f"/dashboard/partner-apps/{app.id}/webhooks").status_code == 404


# --- the confidential address --------------------------------------------------------------


def test_a_confidential_address_only_for_the_owning_agencys_staff(web, db, agency) -> None:
    listing = make_listing(db, agency["supervisor"])
    open_listing = make_listing(db, agency["supervisor"], name="Fictional Open Clinic",
                                address="1 Fictional Public Square",
                                address_confidential=False)
    db.commit()
    sign_in(web, db, agency["stranger_advocate"])
    page = web.get(f"/dashboard/resources/{listing.id}")
    assert page.status_code == 200 and "Fictional Harbour Refuge" in page.text
    assert CONFIDENTIAL_ADDRESS not in page.text
    assert "Withheld: this address is confidential" in page.text
    assert CONFIDENTIAL_ADDRESS not in web.get("/dashboard/resources?q=harbour").text
    assert "1 Fictional Public Square" in web.get(
        f"/dashboard/resources/{open_listing.id}").text

    web.cookies.clear()
    sign_in(web, db, agency["advocate"])
    page = web.get(f"/dashboard/resources/{listing.id}")
    assert CONFIDENTIAL_ADDRESS in page.text and "never give it out" in page.text


# --- the preview shows nothing a release does not cover --------------------------------------


@pytest.mark.parametrize("covered", [[], ["contact_details"], ["identity", "household"]])
def test_the_preview_shows_only_what_a_release_covers(web, db, agency, covered) -> None:
    advocate = agency["advocate"]
    client_id = make_full_client(db, actor_of(advocate))
    listing = make_listing(db, agency["stranger"], name="Fictional Faraway Refuge")
    if covered:
        release_to(db, agency["supervisor"], client_id, "fictional faraway  refuge", covered)
    # Every category asked for (as the API allows); the dashboard offers only covered ones.
    referral_id = make_referral_of(db, advocate, client_id, listing,
                                   categories=list(CATEGORIES))
    db.commit()
    sign_in(web, db, advocate)
    page = web.get(f"/dashboard/clients/{client_id}/referrals/{referral_id}/preview")
    assert page.status_code == 200
    text = page.text
    for category, needles in NEEDLES.items():
        for needle in needles:
            shown = needle.replace("+", "&#43;") in text or needle in text
            assert shown == (category in covered), (category, needle)
    for needle in NEVER:  # the safe-contact code word, the other party, internal notes
        assert needle not in text
    assert "Fictional Lantern" in text  # the handoff's own code word goes
    payload = json.loads(re.search(r'<pre class="wrap" id="seen-payload">(.*?)</pre>', text,
                                   re.S).group(1).replace("&#34;", '"').replace("&#39;", "'")
                         .replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))
    assert payload["shared_categories"] == [c for c in CATEGORIES if c in covered]
    assert {k for k, v in payload["client"].items() if v is not None} == set(covered)
    withheld = re.findall(r"<li>([^<:]+): ", text.split('id="withheld"')[1].split("</ul>")[0])
    assert len(withheld) == len(CATEGORIES) - len(covered)
    assert "Client " not in page.text.split("<title>")[1].split("</title>")[0]
    assert events(db, "referral.previewed")


# --- forms: CSRF, reasons, what may be shared ------------------------------------------------


def test_send_without_csrf_is_refused(web, db, agency) -> None:
    client = make_client(db, agency["advocate"])
    referral_id = make_referral_of(db, agency["advocate"], client.id)
    db.commit()
    sign_in(web, db, agency["advocate"])
    path = f"/dashboard/clients/{client.id}/referrals/{referral_id}/send"
    transitions = count(db, ReferralTransition, referral_id=referral_id)
    for data in ({"reason": "Fictional: sending"},
                 {"reason": "Fictional: sending", "csrf_token": "forged" * 8}):
        response = web.post(path, data=data)
        assert response.status_code == 403
        assert "could not be accepted" in response.text
    response = web.post(path, data={"reason": "Fictional: sending",
                                    "csrf_token": page_csrf(web)},
                        headers={"sec-fetch-site": "cross-site"})
    assert response.status_code == 403
    assert status_of(db, referral_id) == "draft"
    assert count(db, ReferralTransition, referral_id=referral_id) == transitions
    assert events(db, "access.denied")


def test_withdraw_needs_a_reason(web, db, agency) -> None:
    client = make_client(db, agency["advocate"])
    referral_id = make_referral_of(db, agency["advocate"], client.id)
    db.commit()
    sign_in(web, db, agency["advocate"])
    page = f"/dashboard/clients/{client.id}/referrals/{referral_id}"
    token = page_csrf(web, page)
    transitions = count(db, ReferralTransition, referral_id=referral_id)
    for reason in ("", "  ", "no"):
        response = web.post(f"{page}/withdraw", data={"csrf_token": token, "reason": reason})
        assert response.status_code == 422
        assert field_error(response.text, "withdraw.reason").startswith("give the reason")
        assert 'aria-invalid="true"' in response.text
    assert status_of(db, referral_id) == "draft"
    assert count(db, ReferralTransition, referral_id=referral_id) == transitions

    response = web.post(f"{page}/withdraw", data={"csrf_token": token,
                                                  "reason": "Fictional: found a place"})
    assert response.status_code == 303
    assert response.headers["location"] == f"{page}?done=referral-withdrawn"
    assert status_of(db, referral_id) == "withdrawn"
    shown = web.get(response.headers["location"]).text
    assert "Fictional: found a place" in shown and "Withdraw the referral" not in shown


def test_the_form_offers_only_covered_categories_and_refuses_others(web, db, agency) -> None:
    advocate = agency["advocate"]
    client_id = make_full_client(db, actor_of(advocate))
    listing = make_listing(db, agency["stranger"], name="Fictional Faraway Refuge")
    consent_id = release_to(db, agency["supervisor"], client_id, "Fictional Faraway Refuge",
                            ["contact_details", "safety_plan"])
    db.commit()
    sign_in(web, db, advocate)
    path = f"/dashboard/clients/{client_id}/referrals/new"
    form = web.get(f"{path}?resource={listing.id}")
    assert form.status_code == 200
    offered = re.findall(r'name="categories" value="([a-z_]+)"', form.text)
    assert offered == ["contact_details"]
    assert "Covered by the release to Fictional Faraway Refuge" in form.text
    assert events(db, "consent.read")
    token = csrf_from(form.text)
    before = count(db, Referral)

    # A category no release covers (a crafted post), a reason too short, a code word of
    # the client's own safe contact, a window that ends before it starts: each by its field.
    bad = {"csrf_token": token, "resource_id": str(listing.id),
           "categories": ["contact_details", "address"], "reason": "no"}
    response = web.post(path, data=bad)
    assert response.status_code == 422
    assert field_error(response.text, "reason")
    response = web.post(path, data=bad | {"reason": "Fictional: needs a bed tonight"})
    assert response.status_code == 422
    assert "address" in field_error(response.text, "categories")
    response = web.post(path, data=bad | {
        "reason": "Fictional: needs a bed tonight", "categories": ["contact_details"],
        "handoff.code_word": NEVER[0]})
    assert response.status_code == 422
    assert "safe-contact code word" in field_error(response.text, "handoff.code_word")
    assert f'value="{NEVER[0]}"' in response.text  # kept as typed, for correcting
    response = web.post(path, data=bad | {
        "reason": "Fictional: needs a bed tonight", "categories": ["contact_details"],
        "handoff.code_word": "Fictional Beacon", "handoff.with_window": "on",
        "handoff.call_window.starts_at": "2030-05-02T10:00",
        "handoff.call_window.ends_at": "2030-05-01T10:00",
        "handoff.call_window.time_zone": "Not/AZone"})
    assert response.status_code == 422
    assert field_error(response.text, "handoff.call_window.time_zone")
    assert count(db, Referral) == before

    response = web.post(path, data=bad | {
        "reason": "Fictional: needs a bed tonight", "categories": ["contact_details"],
        "handoff.code_word": "Fictional Beacon", "handoff.with_window": "on",
        "handoff.call_window.starts_at": "2030-05-01T09:00",
        "handoff.call_window.ends_at": "2030-05-01T17:00",
        "handoff.call_window.time_zone": "Europe/Dublin"})
    assert response.status_code == 303, response.text[:2000]
    referral = db.scalars(sa.select(Referral).where(Referral.client_id == client_id)).one()
    assert response.headers["location"] == (
        f"/dashboard/clients/{client_id}/referrals/{referral.id}/preview?done=draft-saved")
    assert (referral.status, referral.categories) == ("draft", ["contact_details"])
    preview = web.get(response.headers["location"]).text
    assert NEEDLES["contact_details"][1] in preview and NEEDLES["address"][0] not in preview
    assert "2030-05-01 09:00 to 2030-05-01 17:00 (UTC+01:00)" in preview  # Dublin summer
    assert str(consent_id) not in response.headers["location"]

    send = web.post(f"/dashboard/clients/{client_id}/referrals/{referral.id}/send",
                    data={"csrf_token": token, "reason": "Fictional: checked the preview"})
    assert send.status_code == 303
    assert send.headers["location"].endswith("?done=referral-sent")
    assert status_of(db, referral.id) == "sent"
    page = web.get(send.headers["location"]).text
    assert "Fictional: checked the preview" in page and 'id="referral-status">Sent' in page


def test_without_a_release_the_referral_is_a_warm_handoff(web, db, agency) -> None:
    client = make_client(db, agency["advocate"])
    listing = make_listing(db, agency["supervisor"], name="Fictional Night Hotline")
    db.commit()
    sign_in(web, db, agency["advocate"])
    path = f"/dashboard/clients/{client.id}/referrals/new"
    form = web.get(f"{path}?resource={listing.id}")
    assert 'name="categories"' not in form.text and "warm handoff" in form.text
    response = web.post(path, data={"csrf_token": csrf_from(form.text),
                                    "resource_id": str(listing.id),
                                    "reason": "Fictional: talk tonight",
                                    "handoff.code_word": "Fictional Harbour Light"})
    assert response.status_code == 303
    referral = db.scalars(sa.select(Referral).where(Referral.client_id == client.id)).one()
    assert referral.categories == []
    preview = web.get(response.headers["location"]).text
    assert "Nothing: a warm handoff without personal data" in preview
    assert "Sam Fictional" not in preview


def test_staff_record_the_answer_of_an_agency_without_a_partner_app(web, db, agency) -> None:
    client = make_client(db, agency["advocate"])
    referral_id = make_referral_of(db, agency["advocate"], client.id)
    db.commit()
    sign_in(web, db, agency["advocate"])
    base = f"/dashboard/clients/{client.id}/referrals/{referral_id}"
    token = page_csrf(web, base)
    web.post(f"{base}/send", data={"csrf_token": token, "reason": "Fictional: sent"})
    page = web.get(base).text
    assert re.findall(r'name="action" value="(\w+)"', page) == ["accept", "decline"]
    response = web.post(f"{base}/answer", data={"csrf_token": token, "action": "complete",
                                                "reason": "Fictional: said yes"})
    assert response.status_code == 409  # sent cannot become completed
    response = web.post(f"{base}/answer", data={"csrf_token": token, "action": "accept",
                                                "reason": ""})
    assert response.status_code == 422 and field_error(response.text, "answer.reason")
    assert status_of(db, referral_id) == "sent"
    response = web.post(f"{base}/answer", data={"csrf_token": token, "action": "accept",
                                                "reason": "Fictional: they called back"})
    assert response.status_code == 303 and status_of(db, referral_id) == "accepted"


def test_lists_of_referrals(web, db, agency) -> None:
    mine = make_client(db, agency["advocate"])
    theirs = make_client(db, agency["colleague"])
    draft = make_referral_of(db, agency["advocate"], mine.id)
    other = make_referral_of(db, agency["colleague"], theirs.id)
    db.commit()
    sign_in(web, db, agency["advocate"])
    listed = web.get("/dashboard/referrals").text
    assert str(draft) in listed and str(other) not in listed
    assert mine.case_number in listed and "Sam Fictional" not in listed
    assert str(draft) not in web.get("/dashboard/referrals?status=sent").text
    assert str(draft) in web.get("/dashboard/referrals?status=draft").text
    response = web.get("/dashboard/referrals?status=lost")
    assert response.status_code == 422 and field_error(response.text, "status")
    assert web.get("/dashboard/referrals?cursor=not-a-cursor").status_code == 400
    assert str(draft) in web.get(f"/dashboard/clients/{mine.id}/referrals").text
    assert events(db, "referral.listed")
    web.cookies.clear()
    sign_in(web, db, agency["supervisor"])
    listed = web.get("/dashboard/referrals").text
    assert str(draft) in listed and str(other) in listed


# --- the directory's forms -------------------------------------------------------------------


def test_the_directory_search_uses_the_services_filters(web, db, agency) -> None:
    make_listing(db, agency["supervisor"], name="Fictional Paws Shelter",
                 categories=["pet_friendly_shelter"], languages=["pt-BR"])
    make_listing(db, agency["supervisor"], name="Fictional Law Clinic",
                 categories=["legal_aid"], eligibility={"pets_accepted": False})
    db.commit()
    sign_in(web, db, agency["advocate"])
    both = web.get("/dashboard/resources?q=fictional").text
    assert "Fictional Paws Shelter" in both and "Fictional Law Clinic" in both
    one = web.get("/dashboard/resources?q=fictional&category=legal_aid").text
    assert "Fictional Law Clinic" in one and "Fictional Paws Shelter" not in one
    assert "Fictional Law Clinic" not in web.get("/dashboard/resources?q=fictional&pets=yes"
                                                 ).text
    assert "Fictional Paws Shelter" in web.get("/dashboard/resources?q=fictional&language=pt"
                                               ).text
    response = web.get("/dashboard/resources?language=not%20a%20tag%21&category=castle")
    assert response.status_code == 422
    assert field_error(response.text, "language") and field_error(response.text, "category")
    assert web.get("/dashboard/resources?cursor=forged").status_code == 400  # a bad cursor


def test_a_listing_form_is_refused_by_field_and_saved_when_right(web, db, agency) -> None:
    sign_in(web, db, agency["supervisor"])
    token = page_csrf(web, "/dashboard/resources/new")
    before = count(db, Resource)
    bad = {"csrf_token": token, "name": "Fictional Quiet Refuge", "languages": "en, !!",
           "eligibility.min_age": "30", "eligibility.max_age": "20",
           "opening_hours.mode": "weekly", "opening_hours.time_zone": "Europe/Dublin",
           "opening_hours.weekly.0.day": "mon", "opening_hours.weekly.0.opens": "09:00",
           "opening_hours.weekly.0.closes": "09:00", "address_confidential": "on"}
    response = web.post("/dashboard/resources/new", data=bad)
    assert response.status_code == 422
    assert field_error(response.text, "categories")
    assert count(db, Resource) == before
    response = web.post("/dashboard/resources/new", data=bad | {"categories": "shelter"})
    assert response.status_code == 422
    assert field_error(response.text, "languages")
    assert field_error(response.text, "eligibility.max_age")
    assert "same time" in field_error(response.text, "opening_hours.weekly.0.day")
    assert 'value="Fictional Quiet Refuge"' in response.text
    assert count(db, Resource) == before

    good = bad | {"categories": ["shelter", "housing"], "languages": "en, pl",
                  "eligibility.min_age": "18", "opening_hours.weekly.0.closes": "17:00",
                  "phone": "+353 1 555 0177", "address": "9 Fictional Quiet Lane",
                  "capacity.beds_total": "6", "capacity.beds_available": "2"}
    response = web.post("/dashboard/resources/new", data=good)
    assert response.status_code == 303, response.text[:3000]
    listing = db.scalars(sa.select(Resource).where(
        Resource.name == "Fictional Quiet Refuge")).one()
    assert response.headers["location"] == (
        f"/dashboard/resources/{listing.id}?done=listing-created")
    assert (listing.categories, listing.languages, listing.min_age, listing.beds_available,
            listing.address_confidential) == (["shelter", "housing"], ["en", "pl"], 18, 2,
                                               True)
    assert listing.opening_hours == {"always_open": False, "weekly": [
        {"day": "mon", "opens": "09:00", "closes": "17:00"}]}

    edit = web.get(f"/dashboard/resources/{listing.id}/edit").text
    assert 'value="Fictional Quiet Refuge"' in edit and 'value="09:00"' in edit
    response = web.post(f"/dashboard/resources/{listing.id}/edit", data=good | {
        "name": "Fictional Quieter Refuge", "opening_hours.mode": "always"})
    assert response.status_code == 303
    db.expire_all()
    listing = db.get(Resource, listing.id)
    assert listing.name == "Fictional Quieter Refuge"
    assert listing.opening_hours == {"always_open": True, "weekly": []}
    assert events(db, "resource.updated")

    path = f"/dashboard/resources/{listing.id}/capacity"
    response = web.post(path, data={"csrf_token": token, "beds_available": "9",
                                    "beds_total": "6"})
    assert response.status_code == 422
    assert field_error(response.text, "beds_available") == "more than beds_total"
    response = web.post(path, data={"csrf_token": token, "beds_available": "",
                                    "beds_total": "6"})
    assert response.status_code == 422 and field_error(response.text, "beds_available")
    db.expire_all()
    assert db.get(Resource, listing.id).beds_available == 2
    response = web.post(path, data={"csrf_token": token, "beds_available": "5",
                                    "beds_total": "6"})
    assert response.status_code == 303
    db.expire_all()
    assert db.get(Resource, listing.id).beds_available == 5


# --- admins: a partner app's webhook deliveries ----------------------------------------------


def _delivered(db: Session, org: Org, name: str) -> tuple[Any, Any, WebhookDelivery]:
    app, _ = make_app(db, org, name)
    partner = Actor(kind="partner_app", id=app.id, org_id=org.id,
                    scopes=frozenset(app.scopes.split()))
    endpoint, _ = webhooks.create_endpoint(db, partner, url=PUBLIC,
                                           event_types=["referral.sent"])
    webhooks.emit(db, org_id=org.id, app_id=app.id, event_type="referral.sent",
                  subject_id=uuid4())
    delivery = db.scalars(sa.select(WebhookDelivery)
                          .where(WebhookDelivery.endpoint_id == endpoint.id)).one()
    claim = webhooks.claim_delivery(db, delivery.id)
    assert claim is not None
    webhooks.record_attempt(db, claim, targets.SendOutcome(503, None, 12))
    db.commit()
    return app, endpoint, delivery


def test_admins_see_and_replay_their_apps_deliveries(web, db, agency, sent_tasks) -> None:
    app, endpoint, delivery = _delivered(db, agency["org"], "Fictional Shelter Software")
    their_app, their_endpoint, theirs = _delivered(db, agency["other_org"],
                                                   "Fictional Faraway Software")
    sent_tasks.clear()
    sign_in(web, db, agency["admin"])
    page = web.get(f"/dashboard/partner-apps/{app.id}/webhooks")
    assert page.status_code == 200
    assert PUBLIC in page.text and "referral.sent" in page.text and "HTTP 503" in page.text
    assert "whsec_" not in page.text
    assert f"/dashboard/partner-apps/{app.id}/webhooks" in web.get("/dashboard/partner-apps"
                                                                   ).text
    assert web.get(f"/dashboard/partner-apps/{their_app.id}/webhooks").status_code == 404

    token = csrf_from(page.text)
    replay = f"/dashboard/partner-apps/{app.id}/webhooks/{endpoint.id}/deliveries/{delivery.id}"
    assert web.post(f"{replay}/replay").status_code == 403  # no CSRF token
    foreign = (f"/dashboard/partner-apps/{their_app.id}/webhooks/{their_endpoint.id}"
               f"/deliveries/{theirs.id}/replay")
    assert web.post(foreign, data={"csrf_token": token}).status_code == 404
    crossed = (f"/dashboard/partner-apps/{app.id}/webhooks/{their_endpoint.id}"
               f"/deliveries/{theirs.id}/replay")
    assert web.post(crossed, data={"csrf_token": token}).status_code == 404
    assert sent_tasks == []

    response = web.post(f"{replay}/replay", data={"csrf_token": token})
    assert response.status_code == 303
    assert response.headers["location"].endswith("?done=delivery-replayed")
    db.expire_all()
    replayed = db.get(WebhookDelivery, delivery.id)
    assert replayed.state == DeliveryState.pending and replayed.replay_requested
    assert [args for _, args, _ in sent_tasks] == [[str(delivery.id)]]
    assert events(db, "webhook_delivery.replayed")
    db.expire_all()
    assert db.get(WebhookDelivery, theirs.id).replay_requested is False
