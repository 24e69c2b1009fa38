"""Webhook test support: a local receiver, partner apps with tokens, committed endpoints.

Delivery tests commit for real (a worker's claim must be visible to the next unit of
work), so what they make is removed again after each test.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from uuid import UUID, uuid4

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from app.core import deferred
from app.core.access import Actor
from app.db import unit_of_work, utcnow
from app.identity import tokens
from app.identity.models import Org, PartnerApp, PartnerToken
from app.settings import Settings
from app.webhooks import service
from app.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from tests.support.identity import make_org


def verify_standard_webhook(secret: str, headers: dict[str, str], body: bytes,
                            tolerance: int = 300) -> bool:
    """The receiver's check, exactly as the README shows it (stdlib only)."""
    msg_id = headers["webhook-id"]
    timestamp = headers["webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > tolerance:
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(
        version == "v1" and hmac.compare_digest(expected, sig)
        for version, _, sig in (part.partition(",")
                                for part in headers["webhook-signature"].split())
    )


# --- a local receiver ----------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A small threaded HTTP server on 127.0.0.1. ``script`` says how to answer each
    request in turn (a status code, "hang" or "redirect"); after it, ``then``."""

    port: int = 0
    requests: list[Received] = field(default_factory=list)
    script: list[Any] = field(default_factory=list)
    then: Any = 200
    release: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/advocase"

    def wait_for(self, count: int, timeout: float = 30) -> None:
        with self.arrived:
            if not self.arrived.wait_for(lambda: len(self.requests) >= count, timeout):
                raise AssertionError(f"the receiver got {len(self.requests)} requests, "
                                     f"expected {count}")


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            with receiver.arrived:
                receiver.requests.append(Received(
                    self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                index = len(receiver.requests) - 1
                receiver.arrived.notify_all()
            answer = receiver.script[index] if index < len(receiver.script) else receiver.then
            if answer == "hang":
                receiver.release.wait(timeout=120)
                answer = 200
            try:
                if answer == "redirect":
                    self.send_response(302)
                    self.send_header("Location", "/hooks/elsewhere")
                else:
                    self.send_response(int(answer))
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except OSError:
                pass  # the sender is gone (a killed worker): nothing to answer

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(made))
    server.daemon_threads = True
    made.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield made
    finally:
        made.release.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def local_targets(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Deliveries to the loopback receiver over http (the two development settings)."""
    monkeypatch.setattr(settings, "webhook_allow_http", True)
    monkeypatch.setattr(settings, "webhook_allow_private_targets", True)
    return settings


@pytest.fixture
def sent_tasks() -> Iterator[list[tuple[str, list[Any], dict[str, Any]]]]:
    """Tasks sent after commit, recorded instead of going to a broker."""
    sent: list[tuple[str, list[Any], dict[str, Any]]] = []
    deferred.set_sender(lambda name, args, options: sent.append((name, args, options)))
    try:
        yield sent
    finally:
        deferred.set_sender(None)


# --- partner apps and their tokens ---------------------------------------------------------


def partner_actor(app: PartnerApp, scopes: str = "referrals:read") -> Actor:
    return Actor(kind="partner_app", id=app.id, org_id=app.org_id,
                 scopes=frozenset(scopes.split()))


def make_partner(db: Session, org: Org, scopes: str = "referrals:read") -> PartnerApp:
    app = PartnerApp(org_id=org.id, name="Fictional Shelter App",
                     client_id=f"pa_{uuid4().hex}", client_secret_digest="0" * 64,
                     scopes=scopes)
    db.add(app)
    db.flush()
    return app


def app_token(db: Session, app: PartnerApp, scopes: str | None = None) -> str:
    scope = app.scopes if scopes is None else scopes
    token, lifetime = tokens.issue({"sub": app.client_id, "org": str(app.org_id),
                                    "scope": scope},
                                   audience=tokens.PARTNER_AUDIENCE, lifetime_seconds=600)
    db.add(PartnerToken(jti=tokens.decode(token).token_id, app_id=app.id, scope=scope,
                        expires_at=utcnow() + timedelta(seconds=lifetime)))
    db.flush()
    return token


# --- committed set-ups for delivery tests --------------------------------------------------


@dataclass
class Subscriber:
    org_id: UUID
    app_id: UUID
    endpoint_id: UUID
    secret: str


def subscribe(engine: Engine | None, url: str,
              event_types: tuple[str, ...] = service.EVENT_TYPES) -> Subscriber:
    """A committed org, partner app and endpoint (through the service)."""
    with unit_of_work(engine) as db:
        org = make_org(db)
        app = make_partner(db, org)
        endpoint, secret = service.create_endpoint(db, partner_actor(app), url=url,
                                                   event_types=list(event_types))
        return Subscriber(org.id, app.id, endpoint.id, secret)


def emit_committed(engine: Engine | None, subscriber: Subscriber,
                   event_type: str = "referral.sent",
                   subject_id: UUID | None = None) -> list[UUID]:
    """Emit an event for the subscriber's app in a committed unit of work; the ids of the
    deliveries it made."""
    org_id = subscriber.org_id
    with unit_of_work(engine) as db:
        service.emit(db, org_id=org_id, app_id=subscriber.app_id, event_type=event_type,
                     subject_id=subject_id or uuid4())
        event_id = db.scalars(sa.select(WebhookEvent.id).where(WebhookEvent.org_id == org_id)
                              .order_by(WebhookEvent.occurred_at.desc())).first()
        return list(db.scalars(sa.select(WebhookDelivery.id)
                               .where(WebhookDelivery.event_id == event_id)))


def forget_webhooks(engine: Engine | None, org_ids: list[UUID]) -> None:
    with unit_of_work(engine) as db:
        deliveries = sa.select(WebhookDelivery.id).where(WebhookDelivery.org_id.in_(org_ids))
        db.execute(sa.delete(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(deliveries)))
        db.execute(sa.delete(WebhookDelivery).where(WebhookDelivery.org_id.in_(org_ids)))
        db.execute(sa.delete(WebhookEvent).where(WebhookEvent.org_id.in_(org_ids)))
        db.execute(sa.delete(WebhookEndpoint).where(WebhookEndpoint.org_id.in_(org_ids)))


@pytest.fixture
def committed(engine: Engine) -> Iterator[list[UUID]]:
    """Org ids of committed webhook set-ups, whose webhook rows are removed afterwards."""
    orgs: list[UUID] = []
    yield orgs
    forget_webhooks(engine, orgs)


def delivery_row(engine: Engine | None, delivery_id: UUID) -> WebhookDelivery:
    with unit_of_work(engine, reading=True) as db:
        row = db.get(WebhookDelivery, delivery_id)
        assert row is not None
        db.expunge(row)
        return row


def attempts_of(engine: Engine | None, delivery_id: UUID) -> list[WebhookAttempt]:
    with unit_of_work(engine, reading=True) as db:
        rows = list(db.scalars(sa.select(WebhookAttempt)
                               .where(WebhookAttempt.delivery_id == delivery_id)
                               .order_by(WebhookAttempt.number)))
        for row in rows:
            db.expunge(row)
        return rows


def make_due(engine: Engine | None, delivery_id: UUID) -> None:
    """Let time pass: the next attempt (or the end of the lease) is now in the past."""
    past = utcnow() - timedelta(seconds=1)
    with unit_of_work(engine) as db:
        db.execute(sa.update(WebhookDelivery).where(WebhookDelivery.id == delivery_id)
                   .values(next_attempt_at=sa.case(
                       (WebhookDelivery.next_attempt_at.is_(None), None), else_=past),
                           lease_expires_at=sa.case(
                       (WebhookDelivery.lease_expires_at.is_(None), None), else_=past)))
