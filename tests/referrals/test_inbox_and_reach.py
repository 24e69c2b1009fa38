"""Who reaches which referral: the partner inbox (its own listings' sent referrals only,
cursor-paginated, filtered by status and updated_since), staff reach through the client,
scopes, notes, validation, and what a listing shows."""

from __future__ import annotations

import json
from datetime import timedelta
from uuid import UUID, uuid4

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from app.clients import service as clients_service
from app.core.audit import AuditEvent
from app.db import utcnow
from app.referrals.models import Referral, ReferralNote
from tests.referrals.factories import NEEDLES, Directory, get, make_app, post, referral, release
from tests.support.privacy import assert_not_stored

INBOX = "/api/v1/referrals"


def ids(body: dict) -> set[str]:
    return {item["id"] for item in body["items"]}


def since(moment) -> str:
    return moment.isoformat().replace("+", "%2B")


# --- the partner inbox ---------------------------------------------------------------------


def test_the_inbox_holds_only_this_apps_sent_referrals(client, d: Directory,
                                                       db: Session) -> None:
    mine = {referral(db, d, status=s) for s in ("sent", "accepted", "declined", "closed")}
    referral(db, d)  # a draft: not sent, not seen
    referral(db, d, status="withdrawn")  # withdrawn before sending: never seen
    referral(db, d, listing="legal", status="sent")
    referral(db, d, listing="hotline", status="sent")
    faraway = referral(db, d, listing="faraway", status="sent")
    body = get(client, INBOX, d.app())
    assert ids(body) == {str(r) for r in mine}
    assert set(body["items"][0]) == {"id", "resource_id", "status", "sent_at", "updated_at"}
    assert ids(get(client, INBOX, d.app("faraway_app"))) == {str(faraway)}
    assert ids(get(client, INBOX, d.app("legal_app"))).isdisjoint({str(r) for r in mine})


def test_the_inbox_carries_no_client_data(client, d: Directory, db: Session) -> None:
    release(db, d, ["identity", "address"])
    referral(db, d, categories=["identity", "address"], status="sent")
    text = json.dumps(get(client, INBOX, d.app()))
    assert not any(n in text for needles in NEEDLES.values() for n in needles)
    assert str(d.client_id) not in text
    assert db.scalar(sa.select(sa.func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "referral.disclosed")) == 0


def test_another_partners_referral_is_not_found(client, d: Directory, db: Session) -> None:
    theirs = referral(db, d, listing="legal", status="sent")
    for method, path, body in (
            ("GET", f"/api/v1/referrals/{theirs}", None),
            ("POST", f"/api/v1/referrals/{theirs}/accept", {"reason": "Fictional"}),
            ("POST", f"/api/v1/referrals/{theirs}/decline", {"reason": "Fictional"}),
            ("POST", f"/api/v1/referrals/{theirs}/notes", {"body": "Fictional"})):
        response = client.request(method, path, json=body, headers=d.app())
        assert response.status_code == 404, (path, response.text)
        assert "Fictional Legal" not in response.text
    get(client, f"/api/v1/referrals/{uuid4()}", d.app(), expect=404)
    assert db.scalar(sa.select(Referral.status).where(Referral.id == theirs)) == "sent"


def test_a_partner_reaches_no_staff_route(client, d: Directory, db: Session) -> None:
    referral_id = referral(db, d, status="sent")
    create = {"client_id": str(d.client_id), "resource_id": str(d.listings["shelter"].id),
              "reason": "Fictional"}
    for method, path, body in (
            ("POST", INBOX, create),
            ("GET", f"{INBOX}/{referral_id}/preview", None),
            ("POST", f"{INBOX}/{referral_id}/send", {"reason": "Fictional"}),
            ("POST", f"{INBOX}/{referral_id}/withdraw", {"reason": "Fictional"}),
            ("GET", f"/api/v1/clients/{d.client_id}", None),
            ("GET", f"/api/v1/clients/{d.client_id}/household", None),
            ("GET", f"/api/v1/clients/{d.client_id}/consents", None)):
        response = client.request(method, path, json=body, headers=d.app())
        assert response.status_code == 403, (path, response.text)
    get(client, f"{INBOX}?client_id={d.client_id}", d.app(), expect=422)


def test_scopes_decide_reading_and_writing(client, d: Directory, db: Session) -> None:
    readable = referral(db, d, listing="reader", status="sent")
    assert ids(get(client, INBOX, d.app("reader"))) == {str(readable)}
    get(client, f"{INBOX}/{readable}", d.app("reader"))
    post(client, f"{INBOX}/{readable}/accept", d.app("reader"), expect=403)
    post(client, f"{INBOX}/{readable}/notes", d.app("reader"), {"body": "Fictional"},
         expect=403)
    _, token = make_app(db, d.org, "Fictional directory-only app", "resources:read")
    db.commit()
    response = client.get(INBOX, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403, response.text


def test_the_inbox_pages_by_cursor_oldest_change_first(client, d: Directory,
                                                       db: Session) -> None:
    made = [referral(db, d, status="sent") for _ in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        url = f"{INBOX}?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = get(client, url, d.app())
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [str(r) for r in made]
    get(client, f"{INBOX}?cursor=forged.cursor", d.app(), expect=400)
    staff_page = get(client, f"{INBOX}?limit=2", d.staff())
    get(client, f"{INBOX}?cursor={staff_page['next_cursor']}", d.app(), expect=400)


def test_the_inbox_filters_by_status_and_updated_since(client, d: Directory,
                                                       db: Session) -> None:
    old = referral(db, d, status="sent")
    accepted = referral(db, d, status="accepted")
    mark = utcnow()
    db.execute(sa.update(Referral).where(Referral.id.in_([old, accepted]))
               .values(updated_at=mark - timedelta(minutes=5)))
    db.commit()
    recent = referral(db, d, status="sent")
    assert ids(get(client, f"{INBOX}?status=accepted", d.app())) == {str(accepted)}
    assert ids(get(client, f"{INBOX}?updated_since={since(mark)}", d.app())) == {str(recent)}
    post(client, f"{INBOX}/{old}/notes", d.app(), {"body": "Fictional: called back"},
         expect=201)
    assert ids(get(client, f"{INBOX}?updated_since={since(mark)}", d.app())) == {
        str(recent), str(old)}
    for bad in ("yesterday", "2026-05-04T09:30:00", "2026-13-01T00:00:00Z"):
        get(client, f"{INBOX}?updated_since={bad}", d.app(), expect=422)
    get(client, f"{INBOX}?status=lost", d.app(), expect=422)


def test_an_erased_clients_referrals_leave_the_inbox(client, d: Directory,
                                                     db: Session) -> None:
    referral_id = referral(db, d, status="sent")
    clients_service.purge_client(db, d.actor("supervisor"), d.client_id)
    db.commit()
    assert ids(get(client, INBOX, d.app())) == set()
    get(client, f"{INBOX}/{referral_id}", d.app(), expect=404)
    get(client, f"{INBOX}/{referral_id}", d.staff("supervisor"), expect=404)


def test_partner_reads_are_audited_in_the_sending_agencys_chain(client, d: Directory,
                                                                db: Session) -> None:
    referral_id = referral(db, d, listing="faraway", status="sent")
    get(client, f"{INBOX}/{referral_id}", d.app("faraway_app"))
    read = db.scalar(sa.select(AuditEvent).where(AuditEvent.action == "referral.read",
                                                 AuditEvent.object_id == str(referral_id)))
    assert read.org_id == d.org.id
    assert read.actor_id == str(d.apps["faraway_app"].id)


# --- notes ---------------------------------------------------------------------------------


def test_the_recipients_notes(client, d: Directory, db: Session) -> None:
    referral_id = referral(db, d, status="accepted")
    text = "Fictional: intake on Thursday, room 4 kept free"
    note = post(client, f"{INBOX}/{referral_id}/notes", d.app(), {"body": text}, expect=201)
    assert note["body"] == text
    assert get(client, f"{INBOX}/{referral_id}", d.app())["notes"] == [note]
    staff_view = get(client, f"{INBOX}/{referral_id}", d.staff())
    assert [(n["body"], n["author_type"]) for n in staff_view["notes"]] == [
        (text, "partner_app")]
    stored = db.scalar(sa.select(ReferralNote.body).where(ReferralNote.referral_id == referral_id))
    assert_not_stored(stored, ["room 4 kept free"])
    post(client, f"{INBOX}/{referral_id}/notes", d.staff(), {"body": "Fictional"}, expect=403)
    for body in ({}, {"body": ""}, {"body": "x" * 4001}, {"body": "ok", "extra": 1}):
        post(client, f"{INBOX}/{referral_id}/notes", d.app(), body, expect=422)


def test_the_partner_sees_its_own_reasons_never_the_agencys(client, d: Directory,
                                                            db: Session) -> None:
    referral_id = referral(db, d)
    post(client, f"{INBOX}/{referral_id}/send", d.staff(),
         {"reason": "Fictional: agency-internal sending reason"})
    post(client, f"{INBOX}/{referral_id}/accept", d.app(), {"reason": "Fictional: bed free"})
    history = get(client, f"{INBOX}/{referral_id}", d.app())["history"]
    assert [(h["from_status"], h["to_status"], h["by"], h["reason"]) for h in history] == [
        ("draft", "sent", "agency", None), ("sent", "accepted", "recipient",
                                            "Fictional: bed free")]
    assert "needs a bed" not in json.dumps(history)


# --- staff ---------------------------------------------------------------------------------


def test_staff_reach_follows_the_client(client, d: Directory, db: Session) -> None:
    own = referral(db, d)
    colleagues = referral(db, d, client_id=d.other_client_id, by="colleague")
    assert ids(get(client, INBOX, d.staff())) == {str(own)}
    assert ids(get(client, INBOX, d.staff("supervisor"))) == {str(own), str(colleagues)}
    assert ids(get(client, INBOX, d.staff("admin"))) == set()
    get(client, INBOX, d.staff("auditor"), expect=403)
    assert ids(get(client, INBOX, d.staff("stranger"))) == set()
    for name, expect in (("advocate", 404), ("supervisor", 200), ("admin", 404),
                         ("auditor", 403), ("stranger", 404)):
        get(client, f"{INBOX}/{colleagues}", d.staff(name), expect=expect)
        get(client, f"{INBOX}/{colleagues}/preview", d.staff(name), expect=expect)
    post(client, f"{INBOX}/{colleagues}/send", d.staff(), expect=404)


def test_staff_filters(client, d: Directory, db: Session) -> None:
    draft = referral(db, d)
    sent = referral(db, d, status="sent")
    colleagues = referral(db, d, client_id=d.other_client_id, by="colleague", status="sent")
    boss = d.staff("supervisor")
    assert ids(get(client, f"{INBOX}?status=sent", boss)) == {str(sent), str(colleagues)}
    assert ids(get(client, f"{INBOX}?client_id={d.client_id}", boss)) == {str(draft), str(sent)}
    assert ids(get(client, f"{INBOX}?client_id={d.other_client_id}", d.staff())) == set()
    listed = db.scalars(sa.select(AuditEvent.object_id).where(
        AuditEvent.action == "referral.listed", AuditEvent.actor_id == str(
            d.people["supervisor"].id)))
    assert {str(draft), str(sent), str(colleagues)} <= set(listed)


def test_creating_checks_reach_and_input(client, d: Directory, db: Session) -> None:
    base = {"client_id": str(d.client_id), "resource_id": str(d.listings["shelter"].id),
            "reason": "Fictional reason"}
    created = post(client, INBOX, d.staff(), base | {"categories": ["address", "identity",
                                                                   "address"]}, expect=201)
    assert created["status"] == "draft" and created["categories"] == ["identity", "address"]
    assert created["recipient"]["partner_app_id"] == str(d.apps["shelter_app"].id)
    post(client, INBOX, d.staff(), base | {"client_id": str(d.other_client_id)}, expect=404)
    post(client, INBOX, d.staff("stranger"), base, expect=404)
    post(client, INBOX, d.staff("admin"), base, expect=404)
    post(client, INBOX, d.staff("auditor"), base, expect=403)
    post(client, INBOX, d.staff(), base | {"resource_id": str(uuid4())}, expect=404)
    for overrides, field in (({"categories": ["incidents"]}, "categories.0"),
                             ({"reason": "no"}, "reason"),
                             ({"owner": "x"}, "owner"),
                             ({"handoff": {"note": "no code word"}}, "handoff.code_word"),
                             ({"handoff": {"code_word": "Fictional Owl", "call_window": {
                                 "starts_at": "2030-01-01T10:00:00",
                                 "ends_at": "2030-01-01T11:00:00Z"}}},
                              "handoff.call_window.starts_at")):
        response = client.post(INBOX, headers=d.staff(), json=base | overrides)
        assert response.status_code == 422, response.text
        assert field in {e["field"] for e in response.json()["errors"]}, response.text
    now = utcnow()
    for window, field in (((now + timedelta(hours=2), now + timedelta(hours=1)), "ends_at"),
                          ((now - timedelta(hours=3), now - timedelta(hours=1)), "ends_at"),
                          ((now, now + timedelta(days=15)), "ends_at")):
        response = client.post(INBOX, headers=d.staff(), json=base | {"handoff": {
            "code_word": "Fictional Owl", "call_window": {
                "starts_at": window[0].isoformat(), "ends_at": window[1].isoformat()}}})
        assert response.status_code == 422, response.text
        assert {e["field"] for e in response.json()["errors"]} == {
            f"handoff.call_window.{field}"}


def test_a_listing_whose_app_is_disabled_takes_no_referral(client, d: Directory,
                                                           db: Session) -> None:
    d.apps["legal_app"].is_active = False
    db.commit()
    response = client.post(INBOX, headers=d.staff(), json={
        "client_id": str(d.client_id), "resource_id": str(d.listings["legal"].id),
        "reason": "Fictional reason"})
    assert response.status_code == 422, response.text
    assert {e["field"] for e in response.json()["errors"]} == {"resource_id"}


@pytest.mark.parametrize("path", ["", "/preview"])
def test_reads_are_audited(client, d: Directory, db: Session, path: str) -> None:
    referral_id = referral(db, d)
    get(client, f"{INBOX}/{referral_id}{path}", d.staff())
    action = "referral.previewed" if path else "referral.read"
    event = db.scalar(sa.select(AuditEvent).where(AuditEvent.action == action,
                                                  AuditEvent.object_id == str(referral_id)))
    assert event.details["client_id"] == str(d.client_id)
    assert UUID(event.actor_id) == d.people["advocate"].id
