"""Consent gating: a requested category reaches the recipient only while a release in force
covers it for that recipient, asked afresh at every disclosure. Missing, expired, revoked,
not-yet-effective, wrong-recipient and wrong-category releases let nothing out; a
referral without one is a warm handoff; every disclosure is audited with the release."""

from __future__ import annotations

import json
from datetime import timedelta
from itertools import combinations
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from app.consents import service as consents
from app.consents.models import ReleaseOfInformation
from app.core.audit import AuditEvent
from app.db import utcnow
from app.referrals.models import Referral
from app.referrals.service import CATEGORIES
from app.webhooks.models import WebhookEvent
from tests.referrals.factories import (
    HANDOFF,
    NEEDLES,
    NEVER,
    Directory,
    get,
    post,
    referral,
    release,
)
from tests.support.privacy import assert_not_stored


def partner_read(client, d: Directory, referral_id: UUID, app: str = "shelter_app") -> dict:
    return get(client, f"/api/v1/referrals/{referral_id}", d.app(app))


def shared_needles(body: dict[str, Any]) -> set[str]:
    text = json.dumps(body)
    return {category for category, needles in NEEDLES.items()
            if any(needle in text for needle in needles)}


def assert_nothing_personal(body: dict[str, Any], d: Directory) -> None:
    text = json.dumps(body)
    for needle in [n for needles in NEEDLES.values() for n in needles] + NEVER:
        assert needle not in text, needle
    assert str(d.client_id) not in text
    assert body["shared_categories"] == []
    assert set(body["client"].values()) == {None}


def disclosed_events(db: Session, referral_id: UUID) -> list[AuditEvent]:
    return list(db.scalars(sa.select(AuditEvent).where(
        AuditEvent.action == "referral.disclosed", AuditEvent.object_id == str(referral_id))))


# --- no personal data without a release in force ----------------------------------------


def test_no_release_is_a_warm_handoff(client, d: Directory, db: Session) -> None:
    referral_id = referral(db, d, categories=list(CATEGORIES), handoff=HANDOFF)
    sent = post(client, f"/api/v1/referrals/{referral_id}/send", d.staff())
    assert sent["status"] == "sent"
    assert sent["disclosure"]["shared"] == []
    assert {w["category"]: w["reason"] for w in sent["disclosure"]["withheld"]} == dict.fromkeys(
        CATEGORIES, "no release for this recipient")
    body = partner_read(client, d, referral_id)
    assert_nothing_personal(body, d)
    assert body["handoff"] == {"code_word": "Fictional Lighthouse", "call_window": None,
                               "note": "Fictional: expect a call this week"}
    assert disclosed_events(db, referral_id) == []


def _expire(db: Session, consent_id: UUID) -> None:
    now = utcnow()
    db.execute(sa.update(ReleaseOfInformation).where(ReleaseOfInformation.id == consent_id)
               .values(effective_from=now - timedelta(days=60), expires_at=now - timedelta(days=1)))
    db.commit()


def _not_yet(db: Session, consent_id: UUID) -> None:
    now = utcnow()
    db.execute(sa.update(ReleaseOfInformation).where(ReleaseOfInformation.id == consent_id)
               .values(effective_from=now + timedelta(days=2), expires_at=now + timedelta(days=30)))
    db.commit()


def _revoke(db: Session, d: Directory, consent_id: UUID) -> None:
    consents.revoke_release(db, d.actor("supervisor"), d.client_id, consent_id,
                            reason="Fictional: the client changed their mind")
    db.commit()


@pytest.mark.parametrize(("case", "expected_reason"), [
    ("missing", "no release for this recipient"),
    ("expired", "release expired"),
    ("revoked", "release revoked"),
    ("not_yet_effective", "not yet effective"),
    ("other_partner_app", "no release for this recipient"),
    ("named_instead_of_app", "no release for this recipient"),
    ("another_client", "no release for this recipient"),
    ("other_category", "category not covered"),
])
def test_nothing_leaves_without_a_covering_release(client, d: Directory, db: Session, case,
                                                   expected_reason) -> None:
    categories = ["identity", "address"]
    if case == "expired":
        _expire(db, release(db, d, categories))
    elif case == "revoked":
        _revoke(db, d, release(db, d, categories))
    elif case == "not_yet_effective":
        _not_yet(db, release(db, d, categories))
    elif case == "other_partner_app":
        release(db, d, categories, app="legal_app")
    elif case == "named_instead_of_app":
        release(db, d, categories, name="Fictional Harbour Shelter")
    elif case == "another_client":
        release(db, d, categories, client_id=d.other_client_id)
    elif case == "other_category":
        release(db, d, ["household", "contact_details"])
    referral_id = referral(db, d, categories=categories, status="sent")
    body = partner_read(client, d, referral_id)
    assert_nothing_personal(body, d)
    preview = get(client, f"/api/v1/referrals/{referral_id}/preview", d.staff())
    assert preview["as_recipient_sees"] == body | {"history": body["history"]}
    assert {w["reason"] for w in preview["withheld"]} == {expected_reason}
    assert disclosed_events(db, referral_id) == []


@pytest.mark.parametrize("consented", [list(c) for n in range(1, len(CATEGORIES) + 1)
                                       for c in combinations(CATEGORIES, n)][::3]
                         + [list(CATEGORIES)])
def test_the_partner_view_holds_only_consented_fields(client, d: Directory, db: Session,
                                                      consented) -> None:
    """The partner's answer, compared against the full record: every needle of a
    consented category is there, none of the others', nor any field no category covers."""
    consent_id = release(db, d, consented)
    referral_id = referral(db, d, categories=list(CATEGORIES), status="sent")
    full = get(client, f"/api/v1/clients/{d.client_id}", d.staff())
    household = get(client, f"/api/v1/clients/{d.client_id}/household", d.staff())
    record = json.dumps([full, household])
    assert all(any(n in record for n in needles) for c, needles in NEEDLES.items()
               if c != "risk_assessment")
    assert all(needle in record for needle in NEVER)
    body = partner_read(client, d, referral_id)
    assert shared_needles(body) == set(consented)
    assert sorted(body["shared_categories"]) == sorted(consented)
    assert {k for k, v in body["client"].items() if v is not None} == set(consented)
    text = json.dumps(body)
    for needle in NEVER:
        assert needle not in text
    for forbidden in (str(d.client_id), full["case_number"]):
        assert forbidden not in text
    events = disclosed_events(db, referral_id)
    assert len(events) == 1
    assert events[0].details["consent_id"] == str(consent_id)
    assert sorted(events[0].details["categories"].split(",")) == sorted(consented)
    assert events[0].org_id == d.org.id and events[0].actor_type == "partner_app"


def test_contact_details_travel_with_safe_contact_but_never_its_code_word(
        client, d: Directory, db: Session) -> None:
    release(db, d, ["contact_details"])
    referral_id = referral(db, d, categories=["contact_details"], status="sent")
    contact = partner_read(client, d, referral_id)["client"]["contact_details"]
    assert contact["safe_contact"]["time_zone"] == "Europe/Dublin"
    channel = contact["safe_contact"]["channels"][0]
    assert channel["windows"] == [{"days": ["mon", "tue"], "start": "09:00", "end": "12:00"}]
    assert "code_word" not in channel


def test_risk_level_and_instrument_travel_when_consented(client, d: Directory,
                                                         db: Session) -> None:
    release(db, d, ["risk_assessment"])
    referral_id = referral(db, d, categories=["risk_assessment"], status="sent")
    risk = partner_read(client, d, referral_id)["client"]["risk_assessment"]
    assert risk | {"assessed_at": None} == {
        "instrument_id": "example-safety-screen", "instrument_version": "1.0",
        "level": "elevated", "score": "9", "max_score": "30", "complete": True,
        "assessed_at": None}


def test_unrequested_categories_stay_home_even_when_consented(client, d: Directory,
                                                              db: Session) -> None:
    release(db, d, list(CATEGORIES))
    referral_id = referral(db, d, categories=["address"], status="sent")
    assert shared_needles(partner_read(client, d, referral_id)) == {"address"}


def test_every_read_asks_again_and_revocation_stops_disclosure(client, d: Directory,
                                                               db: Session) -> None:
    consent_id = release(db, d, ["identity"])
    referral_id = referral(db, d, categories=["identity"], status="sent")
    assert shared_needles(partner_read(client, d, referral_id)) == {"identity"}
    before = db.scalar(sa.select(Referral.updated_at).where(Referral.id == referral_id))
    response = client.post(f"/api/v1/clients/{d.client_id}/consents/{consent_id}/revoke",
                           json={"reason": "Fictional: the client asked"},
                           headers=d.staff("supervisor"))
    assert response.status_code == 200, response.text
    assert_nothing_personal(partner_read(client, d, referral_id), d)
    assert len(disclosed_events(db, referral_id)) == 1  # the read before revocation only
    events = list(db.scalars(sa.select(WebhookEvent).where(
        WebhookEvent.subject_id == referral_id,
        WebhookEvent.event_type == "referral.consent_revoked")))
    assert len(events) == 1
    audited = db.scalar(sa.select(AuditEvent).where(
        AuditEvent.action == "referral.consent_revoked", AuditEvent.object_id == str(referral_id)))
    assert audited.details["consent_id"] == str(consent_id)
    assert audited.actor_id == str(d.people["supervisor"].id)
    after = db.scalar(sa.select(Referral.updated_at).where(Referral.id == referral_id))
    assert after > before
    inbox = get(client, f"/api/v1/referrals?updated_since={before.isoformat()}".replace(
        "+", "%2B"), d.app())["items"]
    assert [item["id"] for item in inbox] == [str(referral_id)]


def test_revoking_an_unrelated_release_tells_no_one(client, d: Directory, db: Session) -> None:
    referral_id = referral(db, d, categories=["identity"], status="sent")
    other = release(db, d, ["identity"], app="legal_app")
    unrequested = release(db, d, ["household"])
    draft = referral(db, d, categories=["household"])
    _revoke(db, d, other)
    _revoke(db, d, unrequested)
    assert db.scalar(sa.select(sa.func.count()).select_from(WebhookEvent).where(
        WebhookEvent.subject_id.in_([referral_id, draft]),
        WebhookEvent.event_type == "referral.consent_revoked")) == 0


def test_an_expiring_release_stops_disclosure_without_any_event(client, d: Directory,
                                                                db: Session) -> None:
    consent_id = release(db, d, ["address"])
    referral_id = referral(db, d, categories=["address"], status="accepted")
    assert shared_needles(partner_read(client, d, referral_id)) == {"address"}
    _expire(db, consent_id)
    assert_nothing_personal(partner_read(client, d, referral_id), d)


@pytest.mark.parametrize("status", ["declined", "withdrawn_after_sending", "completed",
                                    "closed"])
def test_a_referral_no_longer_open_discloses_nothing(client, d: Directory, db: Session,
                                                     status) -> None:
    release(db, d, list(CATEGORIES))
    if status == "withdrawn_after_sending":
        referral_id = referral(db, d, categories=list(CATEGORIES), status="sent")
        post(client, f"/api/v1/referrals/{referral_id}/withdraw", d.staff())
    else:
        referral_id = referral(db, d, categories=list(CATEGORIES), status=status)
    body = partner_read(client, d, referral_id)
    assert_nothing_personal(body, d)
    assert body["handoff"] is None
    assert disclosed_events(db, referral_id) == []


def test_another_agencys_listing_is_covered_only_by_a_release_naming_it(
        client, d: Directory, db: Session) -> None:
    """A partner app of another agency cannot be named in a release (consents refuses
    it): the agency is named by its listed name, and the listing's app then receives."""
    referral_id = referral(db, d, listing="faraway", categories=["identity"], status="sent")
    assert_nothing_personal(partner_read(client, d, referral_id, "faraway_app"), d)
    consent_id = release(db, d, ["identity"], name="  fictional FARAWAY refuge ")
    body = partner_read(client, d, referral_id, "faraway_app")
    assert shared_needles(body) == {"identity"}
    assert disclosed_events(db, referral_id)[-1].details["consent_id"] == str(consent_id)
    preview = get(client, f"/api/v1/referrals/{referral_id}/preview", d.staff())
    assert preview["recipient"]["release_names"] == "agency_name"


def test_the_preview_is_exactly_what_the_recipient_sees(client, d: Directory,
                                                        db: Session) -> None:
    release(db, d, ["identity", "household"])
    referral_id = referral(db, d, categories=["identity", "address", "household"],
                           handoff=HANDOFF)
    draft = get(client, f"/api/v1/referrals/{referral_id}/preview", d.staff())
    assert draft["as_recipient_sees"]["sent_at"] is None
    assert draft["withheld"] == [{"category": "address",
                                  "reason": "category not covered"}]
    assert draft["recipient"] | {"org_id": None} == {
        "resource_id": str(d.listings["shelter"].id), "name": "Fictional Harbour Shelter",
        "partner_app_id": str(d.apps["shelter_app"].id), "org_id": None,
        "release_names": "partner_app"}
    post(client, f"/api/v1/referrals/{referral_id}/send", d.staff())
    sees = get(client, f"/api/v1/referrals/{referral_id}/preview", d.staff())
    assert sees["as_recipient_sees"] == partner_read(client, d, referral_id)
    assert draft["as_recipient_sees"]["client"] == sees["as_recipient_sees"]["client"]
    assert not any(e.actor_type == "user" for e in disclosed_events(db, referral_id))


def test_the_handoff_code_word_is_never_the_clients_own(client, d: Directory) -> None:
    response = client.post("/api/v1/referrals", headers=d.staff(), json={
        "client_id": str(d.client_id), "resource_id": str(d.listings["shelter"].id),
        "reason": "Fictional reason", "handoff": {"code_word": NEVER[0].upper()}})
    assert response.status_code == 422, response.text
    assert {e["field"] for e in response.json()["errors"]} == {"handoff.code_word"}
    assert NEVER[0].upper() not in response.text


def test_handoff_and_reasons_are_encrypted_at_rest(client, d: Directory, db: Session) -> None:
    window = {"starts_at": (utcnow() + timedelta(hours=2)).isoformat(),
              "ends_at": (utcnow() + timedelta(hours=5)).isoformat()}
    created = post(client, "/api/v1/referrals", d.staff(), {
        "client_id": str(d.client_id), "resource_id": str(d.listings["shelter"].id),
        "reason": "Fictional reason: she needs a bed tonight", "categories": ["identity"],
        "handoff": HANDOFF | {"call_window": window}}, expect=201)
    assert created["handoff"]["call_window"] is not None
    row = db.get(Referral, UUID(created["id"]))
    stored = " ".join(str(v) for v in (row.handoff_code_word, row.handoff_call_window,
                                       row.handoff_note))
    assert_not_stored(stored, [HANDOFF["code_word"], HANDOFF["note"],
                               window["starts_at"][:16]])
    transitions = db.execute(sa.text("SELECT reason FROM referral_transition")).scalars()
    assert_not_stored(" ".join(transitions), ["she needs a bed tonight"])
