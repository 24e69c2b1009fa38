"""Webhook endpoints over HTTP: refusals first (bad URLs, other apps, staff), then the
routes doing their work."""

from __future__ import annotations

import base64
from datetime import timedelta
from uuid import UUID, uuid4

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session

from app.core import crypto
from app.core.audit import AuditEvent
from app.db import utcnow
from app.webhooks import service, targets
from app.webhooks.models import DeliveryState, WebhookDelivery, WebhookEndpoint, WebhookEvent
from tests.support.identity import bearer, make_org, make_user, staff_token
from tests.webhooks.conftest import app_token, make_partner, partner_actor

PUBLIC = "https://93.184.215.14/hooks/advocase"  # a public address literal: no DNS needed
API = "/api/v1/webhooks"


@pytest.fixture
def partner(db: Session):
    org = make_org(db)
    app = make_partner(db, org)
    headers = bearer(app_token(db, app))
    db.commit()  # a refused request rolls back to here
    return org, app, headers


def _url_error(response) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in response.json()["errors"]] == ["url"]


# --- refusals ------------------------------------------------------------------------------


def test_an_http_url_is_refused(client: TestClient, partner) -> None:
    _, _, headers = partner
    _url_error(client.post(API, json={"url": "http://93.184.215.14/hooks"}, headers=headers))


@pytest.mark.parametrize("url", [
    "https://127.0.0.1/hooks",
    "https://127.1/hooks",
    "https://localhost:8443/hooks",
    "https://10.0.0.5/hooks",
    "https://172.16.4.2/hooks",
    "https://192.168.1.1/hooks",
    "https://169.254.169.254/latest/meta-data/",
    "https://100.100.100.200/hooks",          # shared address space (CGNAT, cloud metadata)
    "https://0.0.0.0/hooks",
    "https://224.0.0.1/hooks",
    "https://240.0.0.1/hooks",
    "https://203.0.113.9/hooks",              # documentation range
    "https://[::1]/hooks",
    "https://[::]/hooks",
    "https://[fe80::1]/hooks",
    "https://[fc00::1]/hooks",
    "https://[ff02::1]/hooks",
    "https://[::ffff:127.0.0.1]/hooks",       # IPv4-mapped loopback
    "https://[::ffff:10.0.0.1]/hooks",
    "https://[64:ff9b::a00:1]/hooks",         # NAT64 of 10.0.0.1
    "https://[2002:7f00:1::1]/hooks",         # 6to4 of 127.0.0.1
])
def test_loopback_private_and_reserved_targets_are_refused(client: TestClient, partner,
                                                           url: str) -> None:
    _, _, headers = partner
    _url_error(client.post(API, json={"url": url}, headers=headers))


def test_a_name_is_refused_when_any_of_its_addresses_is_private(
        client: TestClient, partner, monkeypatch: pytest.MonkeyPatch) -> None:
    _, _, headers = partner
    monkeypatch.setattr(targets, "resolve_addresses",
                        lambda host, port: ["93.184.215.14", "10.1.2.3"])
    _url_error(client.post(API, json={"url": "https://mixed.partner.example/hooks"},
                           headers=headers))


@pytest.mark.parametrize("url", [
    "https://user:secret@93.184.215.14/hooks",
    "https://93.184.215.14/hooks#fragment",
    "ftp://93.184.215.14/hooks",
    "https:///hooks",
    "https://93.184.215.14:99999/hooks",
    "https://no-such-host.invalid/hooks",
    "https://93.184.215.14/hooks with space",
])
def test_malformed_or_unresolvable_urls_are_refused(client: TestClient, partner,
                                                    url: str) -> None:
    _, _, headers = partner
    _url_error(client.post(API, json={"url": url}, headers=headers))


def test_unknown_event_types_and_fields_are_refused(client: TestClient, partner) -> None:
    _, _, headers = partner
    response = client.post(API, json={"url": PUBLIC, "event_types": ["referral.read"]},
                           headers=headers)
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["event_types"]
    response = client.post(API, json={"url": PUBLIC, "event_types": []}, headers=headers)
    assert response.status_code == 422
    response = client.post(API, json={"url": PUBLIC, "secret": "whsec_mine"}, headers=headers)
    assert response.status_code == 422


def test_another_apps_endpoints_are_not_found(client: TestClient, db: Session, partner) -> None:
    org, _, headers = partner
    neighbour = make_partner(db, org)                      # same agency, another app
    stranger = make_partner(db, make_org(db))              # another agency
    for owner in (neighbour, stranger):
        endpoint, _ = service.create_endpoint(db, partner_actor(owner), url=PUBLIC,
                                              event_types=["referral.sent"])
        service.emit(db, org_id=owner.org_id, app_id=owner.id, event_type="referral.sent",
                     subject_id=uuid4())
        delivery_id = db.scalars(sa.select(WebhookDelivery.id)
                                 .where(WebhookDelivery.endpoint_id == endpoint.id)).one()
        db.commit()
        base = f"{API}/{endpoint.id}"
        for method, path, body in (
                ("GET", base, None), ("PATCH", base, {"is_active": False}),
                ("DELETE", base, None), ("POST", f"{base}/rotate-secret", None),
                ("GET", f"{base}/deliveries", None),
                ("POST", f"{base}/deliveries/{delivery_id}/replay", None)):
            response = client.request(method, path, json=body, headers=headers)
            assert response.status_code == 404, (method, path, response.text)
        assert client.get(API, headers=headers).json()["items"] == []
        assert db.get(WebhookEndpoint, endpoint.id).deleted_at is None


def test_staff_cannot_manage_webhooks(client: TestClient, db: Session, partner) -> None:
    org, app, _ = partner
    endpoint, _ = service.create_endpoint(db, partner_actor(app), url=PUBLIC,
                                          event_types=["referral.sent"])
    for role in ("admin", "supervisor", "advocate", "auditor"):
        headers = bearer(staff_token(db, make_user(db, org, role)))
        db.commit()
        assert client.post(API, json={"url": PUBLIC}, headers=headers).status_code == 403
        assert client.get(API, headers=headers).status_code == 403
        assert client.get(f"{API}/{endpoint.id}", headers=headers).status_code == 403
        assert client.delete(f"{API}/{endpoint.id}", headers=headers).status_code == 403


def test_an_app_without_referrals_read_and_anonymous_callers_are_refused(
        client: TestClient, db: Session) -> None:
    app = make_partner(db, make_org(db), scopes="resources:read")
    headers = bearer(app_token(db, app))
    db.commit()
    response = client.post(API, json={"url": PUBLIC}, headers=headers)
    assert response.status_code == 403
    assert client.get(API).status_code == 401


def test_a_changed_url_is_checked_again(client: TestClient, partner) -> None:
    _, _, headers = partner
    created = client.post(API, json={"url": PUBLIC}, headers=headers).json()
    _url_error(client.patch(f"{API}/{created['id']}", json={"url": "https://10.0.0.1/x"},
                            headers=headers))
    assert client.patch(f"{API}/{created['id']}", json={"url": None},
                        headers=headers).status_code == 422
    assert client.get(f"{API}/{created['id']}", headers=headers).json()["url"] == PUBLIC


# --- the routes at work --------------------------------------------------------------------


def test_register_list_read_change_and_delete(client: TestClient, db: Session, partner) -> None:
    _, app, headers = partner
    response = client.post(API, json={"url": PUBLIC, "event_types": ["referral.sent"]},
                           headers=headers)
    assert response.status_code == 201, response.text
    created = response.json()
    secret = created["secret"]
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    assert created["event_types"] == ["referral.sent"] and created["is_active"] is True

    stored = db.get(WebhookEndpoint, UUID(created["id"]))
    assert secret not in stored.sealed_secret and secret[6:] not in stored.sealed_secret
    assert crypto.unseal(stored.sealed_secret, table="webhook_endpoint",
                         column="sealed_secret", row_id=created["id"]) == secret

    read = client.get(f"{API}/{created['id']}", headers=headers).json()
    assert "secret" not in read
    listing = client.get(API, headers=headers).json()
    assert [item["id"] for item in listing["items"]] == [created["id"]]
    assert "secret" not in listing["items"][0]

    changed = client.patch(f"{API}/{created['id']}",
                           json={"url": "https://93.184.215.15/v2", "is_active": False,
                                 "event_types": ["referral.updated", "referral.updated"]},
                           headers=headers)
    assert changed.status_code == 200, changed.text
    assert changed.json()["url"] == "https://93.184.215.15/v2"
    assert changed.json()["event_types"] == ["referral.updated"]
    assert changed.json()["is_active"] is False

    assert client.delete(f"{API}/{created['id']}", headers=headers).status_code == 204
    assert client.get(f"{API}/{created['id']}", headers=headers).status_code == 404
    assert client.get(API, headers=headers).json()["items"] == []
    actions = set(db.scalars(sa.select(AuditEvent.action)
                             .where(AuditEvent.object_id == created["id"])))
    assert {"webhook_endpoint.created", "webhook_endpoint.updated",
            "webhook_endpoint.deleted"} <= actions


def test_events_default_to_every_known_type(client: TestClient, partner) -> None:
    _, _, headers = partner
    created = client.post(API, json={"url": PUBLIC}, headers=headers).json()
    assert created["event_types"] == list(service.EVENT_TYPES)


def test_rotating_the_secret_shows_a_new_one_once(client: TestClient, db: Session,
                                                  partner) -> None:
    _, _, headers = partner
    created = client.post(API, json={"url": PUBLIC}, headers=headers).json()
    response = client.post(f"{API}/{created['id']}/rotate-secret", headers=headers)
    assert response.status_code == 200, response.text
    rotated = response.json()
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != created["secret"]
    stored = db.get(WebhookEndpoint, UUID(created["id"]))
    assert crypto.unseal(stored.sealed_secret, table="webhook_endpoint",
                         column="sealed_secret", row_id=created["id"]) == rotated["secret"]
    assert client.get(f"{API}/{created['id']}", headers=headers).json()["secret_rotated_at"]


def test_emit_makes_one_delivery_per_subscribed_active_endpoint_of_the_app(
        db: Session, sent_tasks) -> None:
    org, other_org = make_org(db), make_org(db)
    app, second_app, foreign_app = make_partner(db, org), make_partner(db, org), \
        make_partner(db, other_org)

    def endpoint(owner, types):
        return service.create_endpoint(db, partner_actor(owner), url=PUBLIC,
                                       event_types=types)[0]

    sent = endpoint(app, ["referral.sent"])
    every = endpoint(app, list(service.EVENT_TYPES))
    endpoint(second_app, list(service.EVENT_TYPES))          # the agency's other app
    endpoint(app, ["referral.updated"])                       # not subscribed to this type
    paused = endpoint(app, ["referral.sent"])
    service.update_endpoint(db, partner_actor(app), paused.id, is_active=False)
    endpoint(foreign_app, ["referral.sent"])                  # another agency's app
    disabled_app = make_partner(db, org)
    endpoint(disabled_app, ["referral.sent"])
    disabled_app.is_active = False
    db.flush()

    referral_id = uuid4()
    service.emit(db, org_id=org.id, app_id=app.id, event_type="referral.sent",
                 subject_id=referral_id)
    event = db.scalars(sa.select(WebhookEvent).where(WebhookEvent.org_id == org.id)).one()
    assert (event.event_type, event.subject_id) == ("referral.sent", referral_id)
    deliveries = db.scalars(sa.select(WebhookDelivery)
                            .where(WebhookDelivery.event_id == event.id)).all()
    assert {d.endpoint_id for d in deliveries} == {sent.id, every.id}
    assert {d.state for d in deliveries} == {DeliveryState.pending}
    assert sent_tasks == []  # nothing is sent before the commit
    db.commit()
    assert sorted(args[0] for _, args, _ in sent_tasks) == sorted(str(d.id) for d in deliveries)
    assert {name for name, _, _ in sent_tasks} == {service.DELIVER_TASK}

    # A disabled app, or an app of another agency named with this one, gets nothing.
    for owner in (disabled_app, foreign_app):
        service.emit(db, org_id=org.id, app_id=owner.id, event_type="referral.sent",
                     subject_id=uuid4())
    events = db.scalars(sa.select(WebhookEvent.id).where(WebhookEvent.org_id == org.id)).all()
    assert db.scalar(sa.select(sa.func.count()).select_from(WebhookDelivery)
                     .where(WebhookDelivery.event_id.in_(events))) == len(deliveries)


def test_a_rolled_back_emit_sends_nothing(db: Session, sent_tasks) -> None:
    org = make_org(db)
    app = make_partner(db, org)
    service.create_endpoint(db, partner_actor(app), url=PUBLIC,
                            event_types=["referral.sent"])
    db.commit()
    service.emit(db, org_id=org.id, app_id=app.id, event_type="referral.sent",
                 subject_id=uuid4())
    db.rollback()
    assert sent_tasks == []
    with pytest.raises(ValueError, match="unknown webhook event type"):
        service.emit(db, org_id=org.id, app_id=app.id, event_type="referral.read",
                     subject_id=uuid4())


def test_the_payload_names_ids_only() -> None:
    event = WebhookEvent(org_id=uuid4(), event_type="referral.consent_revoked",
                         subject_id=uuid4(), occurred_at=utcnow())
    import json

    document = json.loads(service.payload(event))
    assert document == {"id": str(event.id), "type": "referral.consent_revoked",
                        "timestamp": document["timestamp"],
                        "data": {"referral_id": str(event.subject_id)}}
    assert document["timestamp"].endswith("Z")


def test_deliveries_are_listed_with_attempts_and_replayed(
        client: TestClient, db: Session, partner, sent_tasks) -> None:
    org, app, headers = partner
    endpoint, _ = service.create_endpoint(db, partner_actor(app), url=PUBLIC,
                                          event_types=["referral.sent"])
    service.emit(db, org_id=org.id, app_id=app.id, event_type="referral.sent",
                 subject_id=uuid4())
    delivery = db.scalars(sa.select(WebhookDelivery)
                          .where(WebhookDelivery.endpoint_id == endpoint.id)).one()
    claim = service.claim_delivery(db, delivery.id)
    assert claim is not None
    service.record_attempt(db, claim, targets.SendOutcome(204, None, 12))
    db.commit()
    sent_tasks.clear()

    listing = client.get(f"{API}/{endpoint.id}/deliveries", headers=headers).json()
    [item] = listing["items"]
    assert item["state"] == "succeeded" and item["event_type"] == "referral.sent"
    assert [(a["number"], a["status_code"], a["succeeded"], a["replay"])
            for a in item["attempts"]] == [(1, 204, True, False)]

    response = client.post(f"{API}/{endpoint.id}/deliveries/{delivery.id}/replay",
                           headers=headers)
    assert response.status_code == 202, response.text
    assert response.json()["state"] == "pending"
    assert [args for _, args, _ in sent_tasks] == [[str(delivery.id)]]

    claim = service.claim_delivery(db, delivery.id)
    assert claim is not None and claim.replay and claim.message_id == str(delivery.event_id)
    # While an attempt holds the delivery, a replay is refused.
    response = client.post(f"{API}/{endpoint.id}/deliveries/{delivery.id}/replay",
                           headers=headers)
    assert response.status_code == 409
    service.record_attempt(db, claim, targets.SendOutcome(200, None, 8))
    db.commit()
    item = client.get(f"{API}/{endpoint.id}/deliveries", headers=headers).json()["items"][0]
    assert item["state"] == "succeeded"
    assert [(a["number"], a["replay"]) for a in item["attempts"]] == [(1, False), (2, True)]
    assert client.post(f"{API}/{endpoint.id}/deliveries/{uuid4()}/replay",
                       headers=headers).status_code == 404


def test_deleting_an_endpoint_fails_its_waiting_deliveries(
        client: TestClient, db: Session, partner) -> None:
    org, app, headers = partner
    endpoint, _ = service.create_endpoint(db, partner_actor(app), url=PUBLIC,
                                          event_types=["referral.sent"])
    service.emit(db, org_id=org.id, app_id=app.id, event_type="referral.sent",
                 subject_id=uuid4())
    assert client.delete(f"{API}/{endpoint.id}", headers=headers).status_code == 204
    delivery = db.scalars(sa.select(WebhookDelivery)
                          .where(WebhookDelivery.endpoint_id == endpoint.id)).one()
    db.refresh(delivery)
    assert delivery.state == DeliveryState.failed and delivery.next_attempt_at is None
    assert service.due_delivery_ids(db, now=utcnow() + timedelta(days=3)).count(
        delivery.id) == 0
