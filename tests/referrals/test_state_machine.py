"""The referral state machine: every legal transition through the API, every illegal one
refused with 409 naming both states, reasons required and kept encrypted, an append-only
history, the sending advocate notified and webhook events recorded."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from app.core.audit import AuditEvent
from app.notifications.models import Notification
from app.referrals.models import Referral, ReferralTransition
from app.referrals.service import ACTIONS, TRANSITIONS
from app.webhooks import service as webhooks
from app.webhooks.models import WebhookDelivery, WebhookEvent
from tests.referrals.factories import Directory, get, post, referral
from tests.support.privacy import assert_not_stored

STAFF_ACTIONS = ("send", "withdraw")
ALL_STATES = tuple(TRANSITIONS)

# (from, action, to, who): every edge of the machine.
LEGAL = [
    ("draft", "send", "sent", "staff"),
    ("draft", "withdraw", "withdrawn", "staff"),
    ("sent", "accept", "accepted", "partner"),
    ("sent", "decline", "declined", "partner"),
    ("sent", "withdraw", "withdrawn", "staff"),
    ("accepted", "complete", "completed", "partner"),
    ("accepted", "close", "closed", "partner"),
    ("accepted", "withdraw", "withdrawn", "staff"),
]
ILLEGAL = [(state, action) for state in ALL_STATES for action in ACTIONS
           if ACTIONS[action] not in TRANSITIONS[state]]


def test_the_table_is_the_machine_of_the_issue() -> None:
    edges = {(state, to) for state, moves in TRANSITIONS.items() for to in moves}
    assert edges == {(f, ACTIONS[a]) for f, a, _, _ in LEGAL}
    assert len(ILLEGAL) == len(ALL_STATES) * len(ACTIONS) - len(LEGAL)


@pytest.mark.parametrize(("start", "action", "end", "who"), LEGAL,
                         ids=[f"{f}-{a}" for f, a, _, _ in LEGAL])
def test_legal_transition(client, d: Directory, db: Session, start, action, end, who) -> None:
    referral_id = referral(db, d, status=start)
    headers = d.staff() if who == "staff" else d.app()
    reason = f"Fictional reason to {action} this referral"
    body = post(client, f"/api/v1/referrals/{referral_id}/{action}", headers, {"reason": reason})
    assert body["status"] == end
    row = db.scalar(sa.select(ReferralTransition).where(
        ReferralTransition.referral_id == referral_id).order_by(
        ReferralTransition.at.desc(), ReferralTransition.id.desc()).limit(1))
    assert (row.from_status, row.to_status) == (start, end)
    assert row.actor_type == ("user" if who == "staff" else "partner_app")
    assert row.actor_id == (d.people["advocate"].id if who == "staff"
                            else d.apps["shelter_app"].id)
    assert_not_stored(row.reason, [reason])
    full = get(client, f"/api/v1/referrals/{referral_id}", d.staff())
    assert full["history"][-1] | {"at": None} == {
        "from_status": start, "to_status": end, "at": None, "reason": reason,
        "actor_type": row.actor_type, "actor_id": str(row.actor_id)}
    assert full["history"][0]["from_status"] is None
    assert full["history"][0]["to_status"] == "draft"


@pytest.mark.parametrize(("start", "action"), ILLEGAL, ids=[f"{s}-{a}" for s, a in ILLEGAL])
def test_illegal_transition_is_a_conflict(client, d: Directory, db: Session, start,
                                          action) -> None:
    referral_id = referral(db, d, status=start)
    never_sent = start in ("draft", "withdrawn")
    if never_sent and action not in STAFF_ACTIONS:
        # A referral never sent is not in the partner's inbox at all (404): staff record
        # the answers of an outside agency, so take that path to reach the state check.
        referral_id = referral(db, d, status=start, listing="hotline")
    headers = d.staff() if action in STAFF_ACTIONS or never_sent else d.app()
    response = client.post(f"/api/v1/referrals/{referral_id}/{action}", headers=headers,
                           json={"reason": "Fictional attempt"})
    assert response.status_code == 409, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["type"] == "urn:advocase:problem:illegal-transition"
    assert problem["current_state"] == start
    assert problem["attempted_state"] == ACTIONS[action]
    assert start in problem["detail"] and ACTIONS[action] in problem["detail"]
    assert db.scalar(sa.select(Referral.status).where(Referral.id == referral_id)) == start


@pytest.mark.parametrize("action", list(ACTIONS))
def test_every_transition_needs_a_reason(client, d: Directory, db: Session, action) -> None:
    referral_id = referral(db, d, status="accepted" if action in ("complete", "close")
                           else "sent" if action in ("accept", "decline") else "draft")
    headers = d.staff() if action in STAFF_ACTIONS else d.app()
    for body in ({}, {"reason": ""}, {"reason": "  "}, {"reason": "x" * 2001}):
        response = client.post(f"/api/v1/referrals/{referral_id}/{action}", headers=headers,
                               json=body)
        assert response.status_code == 422, (body, response.text)
        assert {e["field"] for e in response.json()["errors"]} == {"reason"}


def test_staff_record_an_outside_agencys_answer(client, d: Directory, db: Session) -> None:
    referral_id = referral(db, d, listing="hotline", status="sent")
    assert post(client, f"/api/v1/referrals/{referral_id}/accept", d.staff())["status"] == \
        "accepted"
    assert post(client, f"/api/v1/referrals/{referral_id}/complete",
                d.staff())["status"] == "completed"


def test_staff_cannot_answer_for_a_partner_app(client, d: Directory, db: Session) -> None:
    referral_id = referral(db, d, status="sent")
    for action in ("accept", "decline"):
        post(client, f"/api/v1/referrals/{referral_id}/{action}", d.staff(), expect=403)
    denied = db.scalars(sa.select(AuditEvent).where(AuditEvent.action == "access.denied",
                                                    AuditEvent.object_id == str(referral_id)))
    assert len(list(denied)) == 2


def test_a_partner_cannot_send_or_withdraw(client, d: Directory, db: Session) -> None:
    referral_id = referral(db, d, status="sent")
    for action in STAFF_ACTIONS:
        post(client, f"/api/v1/referrals/{referral_id}/{action}", d.app(), expect=403)


def test_the_recipients_answers_reach_the_sending_advocate(client, d: Directory,
                                                           db: Session) -> None:
    referral_id = referral(db, d, status="sent")
    post(client, f"/api/v1/referrals/{referral_id}/accept", d.app())
    post(client, f"/api/v1/referrals/{referral_id}/notes", d.app(),
         {"body": "Fictional: intake booked"}, expect=201)
    post(client, f"/api/v1/referrals/{referral_id}/complete", d.app())
    kinds = list(db.scalars(sa.select(Notification.kind).where(
        Notification.object_id == referral_id,
        Notification.user_id == d.people["advocate"].id).order_by(Notification.created_at)))
    assert kinds == ["referral_accepted", "referral_note", "referral_completed"]
    inbox = get(client, "/api/v1/notifications", d.staff())["items"]
    assert {item["object_id"] for item in inbox} == {str(referral_id)}
    assert all("Wren" not in item["message"] for item in inbox)


def test_webhook_events_carry_type_and_id(client, d: Directory, db: Session) -> None:
    referral_id = referral(db, d)
    post(client, f"/api/v1/referrals/{referral_id}/send", d.staff())
    post(client, f"/api/v1/referrals/{referral_id}/accept", d.app())
    post(client, f"/api/v1/referrals/{referral_id}/withdraw", d.staff())
    events = list(db.scalars(sa.select(WebhookEvent).where(
        WebhookEvent.subject_id == referral_id).order_by(WebhookEvent.occurred_at)))
    assert [e.event_type for e in events] == ["referral.sent", "referral.updated",
                                              "referral.updated"]
    assert {e.org_id for e in events} == {d.org.id}


def test_referral_events_go_only_to_the_recipient_apps_endpoints(
        client, d: Directory, db: Session) -> None:
    """The agency's other partner app (legal aid) has an endpoint too, subscribed to
    everything: a referral to the shelter is none of its business, not even its id."""
    endpoints = {}
    for name in ("shelter_app", "legal_app"):
        endpoints[name], _ = webhooks.create_endpoint(
            db, d.partner(name), url="https://93.184.215.14/hooks/advocase",
            event_types=list(webhooks.EVENT_TYPES))
    db.commit()
    referral_id = referral(db, d, listing="shelter", status="sent")
    post(client, f"/api/v1/referrals/{referral_id}/accept", d.app())
    events = db.scalars(sa.select(WebhookEvent.id).where(
        WebhookEvent.subject_id == referral_id)).all()
    assert len(events) == 2
    reached = db.scalars(sa.select(WebhookDelivery.endpoint_id).where(
        WebhookDelivery.event_id.in_(events))).all()
    assert sorted(reached) == [endpoints["shelter_app"].id] * 2


def test_no_webhook_for_a_listing_without_an_app_or_a_withdrawn_draft(
        client, d: Directory, db: Session) -> None:
    hotline = referral(db, d, listing="hotline", status="completed")
    draft = referral(db, d)
    post(client, f"/api/v1/referrals/{draft}/withdraw", d.staff())
    assert db.scalar(sa.select(sa.func.count()).select_from(WebhookEvent).where(
        WebhookEvent.subject_id.in_([hotline, draft]))) == 0


def test_another_agencys_listing_hears_through_its_own_org(client, d: Directory,
                                                           db: Session) -> None:
    referral_id = referral(db, d, listing="faraway", status="sent")
    post(client, f"/api/v1/referrals/{referral_id}/accept", d.app("faraway_app"))
    events = list(db.scalars(sa.select(WebhookEvent).where(
        WebhookEvent.subject_id == referral_id)))
    assert {e.org_id for e in events} == {d.other_org.id}


def test_transitions_are_append_only(d: Directory, db: Session) -> None:
    referral_id = referral(db, d, status="accepted")
    for statement in (sa.update(ReferralTransition).values(to_status="closed"),
                      sa.delete(ReferralTransition)):
        with pytest.raises(sa.exc.DBAPIError), db.begin_nested():
            db.execute(statement.where(ReferralTransition.referral_id == referral_id))
    assert db.scalar(sa.select(sa.func.count()).select_from(ReferralTransition).where(
        ReferralTransition.referral_id == referral_id)) == 3


def test_transitions_are_audited(client, d: Directory, db: Session) -> None:
    referral_id = referral(db, d)
    post(client, f"/api/v1/referrals/{referral_id}/send", d.staff())
    post(client, f"/api/v1/referrals/{referral_id}/decline", d.app())
    actions = list(db.scalars(sa.select(AuditEvent.action).where(
        AuditEvent.object_id == str(referral_id)).order_by(AuditEvent.org_id, AuditEvent.seq)))
    assert actions[:3] == ["referral.created", "referral.sent", "referral.declined"]
    declined = db.scalar(sa.select(AuditEvent).where(AuditEvent.action == "referral.declined",
                                                     AuditEvent.object_id == str(referral_id)))
    assert declined.org_id == d.org.id and declined.actor_type == "partner_app"
