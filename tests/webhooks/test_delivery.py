"""Sending: signatures a receiver can check, retries on a schedule kept in the database,
one success per event and endpoint, and the SSRF guard again at send time.

These tests commit for real (a claim is committed before anything is sent) and run the
tasks in this process; tests/webhooks/test_worker.py runs them in real worker processes.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
import time
from datetime import timedelta
from uuid import UUID, uuid4

import pytest
from sqlalchemy.engine import Engine

from app.db import unit_of_work, utcnow
from app.webhooks import service, targets
from app.webhooks.models import DeliveryState
from tests.webhooks.conftest import (
    attempts_of,
    delivery_row,
    emit_committed,
    make_due,
    subscribe,
    verify_standard_webhook,
)
from workers import tasks


def run_sent(sent_tasks: list) -> list[str]:
    """Run the tasks sent after commit, here, in order (as a worker would)."""
    outcomes = []
    while sent_tasks:
        name, args, _ = sent_tasks.pop(0)
        assert name == service.DELIVER_TASK
        outcomes.append(tasks.deliver_webhook(*args))
    return outcomes


def sweep_and_run(sent_tasks: list) -> list[str]:
    tasks.enqueue_due_webhook_deliveries()
    return run_sent(sent_tasks)


SLACK = 5  # seconds an attempt may take between its claim and its recorded result


def waited(row) -> timedelta:
    return row.next_attempt_at - row.last_attempt_at


@pytest.fixture
def subscriber(engine: Engine, local_targets, receiver, committed):
    made = subscribe(engine, receiver.url)
    committed.append(made.org_id)
    return made


# --- what the receiver gets ----------------------------------------------------------------


def test_a_delivery_is_signed_as_documented(engine: Engine, subscriber, receiver,
                                            sent_tasks) -> None:
    referral_id = uuid4()
    [delivery_id] = emit_committed(engine, subscriber, "referral.sent", referral_id)
    assert run_sent(sent_tasks) == ["succeeded"]

    [request] = receiver.requests
    assert request.path == "/hooks/advocase"
    assert verify_standard_webhook(subscriber.secret, request.headers, request.body)
    assert not verify_standard_webhook(subscriber.secret, request.headers,
                                       request.body.replace(b"referral", b"referrer"))
    assert not verify_standard_webhook("whsec_" + "A" * 44, request.headers, request.body)
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"].startswith("advocase-webhooks/")
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 60

    body = json.loads(request.body)
    event_id = delivery_row(engine, delivery_id).event_id
    assert request.headers["webhook-id"] == body["id"] == str(event_id)
    assert body == {"id": str(event_id), "type": "referral.sent",
                    "timestamp": body["timestamp"], "data": {"referral_id": str(referral_id)}}

    row = delivery_row(engine, delivery_id)
    assert row.state == DeliveryState.succeeded and row.claim_token is None
    [attempt] = attempts_of(engine, delivery_id)
    assert (attempt.number, attempt.status_code, attempt.error, attempt.succeeded) == \
        (1, 200, None, True)
    assert attempt.duration_ms is not None and attempt.duration_ms >= 0


def test_fails_twice_then_succeeds_exactly_once(engine: Engine, subscriber, receiver,
                                                sent_tasks) -> None:
    receiver.script = [500, 503]
    [delivery_id] = emit_committed(engine, subscriber)

    assert run_sent(sent_tasks) == ["pending"]
    first = delivery_row(engine, delivery_id)
    # 1 minute ± 10 %, counted from the end of the attempt (a little after its claim)
    assert timedelta(seconds=54) <= waited(first) <= timedelta(seconds=66 + SLACK)
    assert sweep_and_run(sent_tasks) == []  # not due yet: the sweep leaves it alone

    make_due(engine, delivery_id)
    assert sweep_and_run(sent_tasks) == ["pending"]
    second = delivery_row(engine, delivery_id)
    assert timedelta(minutes=4.5) <= waited(second) <= timedelta(minutes=5.5, seconds=SLACK)

    make_due(engine, delivery_id)
    assert sweep_and_run(sent_tasks) == ["succeeded"]

    # Delivered: no sweep, duplicate message or replayed task sends it again.
    make_due(engine, delivery_id)
    assert sweep_and_run(sent_tasks) == []
    assert tasks.deliver_webhook(str(delivery_id)) == "not_claimed"
    with unit_of_work(engine) as db:
        assert service.claim_delivery(db, delivery_id,
                                      now=utcnow() + timedelta(days=30)) is None

    assert len(receiver.requests) == 3
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1
    assert all(verify_standard_webhook(subscriber.secret, r.headers, r.body)
               for r in receiver.requests)
    attempts = attempts_of(engine, delivery_id)
    assert [(a.number, a.status_code, a.succeeded) for a in attempts] == \
        [(1, 500, False), (2, 503, False), (3, 200, True)]
    assert delivery_row(engine, delivery_id).state == DeliveryState.succeeded


def test_retries_last_more_than_a_day_then_the_delivery_fails(
        engine: Engine, subscriber, receiver) -> None:
    """Driven with a moved clock: each attempt happens when the previous one said."""
    receiver.then = 500
    [delivery_id] = emit_committed(engine, subscriber)
    clock = utcnow()
    started = clock
    waits = []
    while True:
        with unit_of_work(engine) as db:
            assert service.due_delivery_ids(db, now=clock).count(delivery_id) == 1
            claim = service.claim_delivery(db, delivery_id, now=clock)
        assert claim is not None
        outcome = service.send(claim)
        with unit_of_work(engine) as db:
            state = service.record_attempt(db, claim, outcome, now=clock)
        if state == DeliveryState.failed:
            break
        row = delivery_row(engine, delivery_id)
        with unit_of_work(engine) as db:  # a moment before it is due: not yet
            assert service.claim_delivery(
                db, delivery_id, now=row.next_attempt_at - timedelta(seconds=1)) is None
        waits.append(row.next_attempt_at - clock)
        clock = row.next_attempt_at

    assert len(receiver.requests) == len(service.RETRY_DELAYS) + 1 == 8
    for wait, nominal in zip(waits, service.RETRY_DELAYS, strict=True):
        assert nominal * 0.9 <= wait <= nominal * 1.1
    assert clock - started >= timedelta(hours=24)
    row = delivery_row(engine, delivery_id)
    assert row.state == DeliveryState.failed and row.failed_at is not None
    assert row.next_attempt_at is None
    with unit_of_work(engine) as db:
        assert service.due_delivery_ids(db, now=clock + timedelta(days=7)).count(
            delivery_id) == 0


def test_a_replay_sends_again_with_the_same_webhook_id(engine: Engine, subscriber, receiver,
                                                       sent_tasks) -> None:
    [delivery_id] = emit_committed(engine, subscriber)
    assert run_sent(sent_tasks) == ["succeeded"]
    from app.identity.models import PartnerApp
    from tests.webhooks.conftest import partner_actor

    with unit_of_work(engine) as db:
        app = db.get(PartnerApp, subscriber.app_id)
        service.replay_delivery(db, partner_actor(app), subscriber.endpoint_id, delivery_id)
    assert run_sent(sent_tasks) == ["succeeded"]
    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body
    assert verify_standard_webhook(subscriber.secret, second.headers, second.body)
    assert [(a.number, a.replay, a.succeeded) for a in attempts_of(engine, delivery_id)] == \
        [(1, False, True), (2, True, True)]


def test_a_rotated_secret_signs_the_next_attempt(engine: Engine, subscriber, receiver,
                                                 sent_tasks) -> None:
    from app.identity.models import PartnerApp
    from tests.webhooks.conftest import partner_actor

    with unit_of_work(engine) as db:
        app = db.get(PartnerApp, subscriber.app_id)
        _, new_secret = service.rotate_secret(db, partner_actor(app), subscriber.endpoint_id)
    emit_committed(engine, subscriber)
    run_sent(sent_tasks)
    [request] = receiver.requests
    assert verify_standard_webhook(new_secret, request.headers, request.body)
    assert not verify_standard_webhook(subscriber.secret, request.headers, request.body)


def test_redirects_are_not_followed(engine: Engine, subscriber, receiver, sent_tasks) -> None:
    receiver.script = ["redirect"]
    [delivery_id] = emit_committed(engine, subscriber)
    assert run_sent(sent_tasks) == ["pending"]
    assert [r.path for r in receiver.requests] == ["/hooks/advocase"]
    [attempt] = attempts_of(engine, delivery_id)
    assert (attempt.status_code, attempt.succeeded) == (302, False)


def test_a_disabled_endpoint_waits_and_a_deleted_one_stops(engine: Engine, subscriber,
                                                           receiver, sent_tasks) -> None:
    from app.identity.models import PartnerApp
    from tests.webhooks.conftest import partner_actor

    with unit_of_work(engine) as db:
        actor = partner_actor(db.get(PartnerApp, subscriber.app_id))
        service.update_endpoint(db, actor, subscriber.endpoint_id, is_active=True)
    receiver.script = [500]
    [delivery_id] = emit_committed(engine, subscriber)
    assert run_sent(sent_tasks) == ["pending"]
    with unit_of_work(engine) as db:
        service.update_endpoint(db, actor, subscriber.endpoint_id, is_active=False)
    make_due(engine, delivery_id)
    assert sweep_and_run(sent_tasks) == []
    assert tasks.deliver_webhook(str(delivery_id)) == "not_claimed"
    with unit_of_work(engine) as db:
        service.delete_endpoint(db, actor, subscriber.endpoint_id)
    assert delivery_row(engine, delivery_id).state == DeliveryState.failed
    assert len(receiver.requests) == 1


# --- the SSRF guard at send time -----------------------------------------------------------


def test_the_connection_goes_to_the_address_that_was_checked(
        engine: Engine, local_targets, receiver, committed, sent_tasks,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A host name is resolved once per attempt by us; the HTTP client never resolves it
    again (the name here resolves nowhere else), and the Host header keeps the name."""
    looked_up: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        looked_up.append(host)
        return ["127.0.0.1"]

    monkeypatch.setattr(targets, "resolve_addresses", resolver)
    made = subscribe(engine, f"http://partner-receiver.invalid:{receiver.port}/hooks/advocase")
    committed.append(made.org_id)
    emit_committed(engine, made)
    real_getaddrinfo = socket.getaddrinfo

    def numeric_only(host, *args, **kwargs):
        # Connecting to an address literal looks it up numerically; a name must not come.
        ipaddress.ip_address(host)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", numeric_only)
    assert run_sent(sent_tasks) == ["succeeded"]
    [request] = receiver.requests
    assert request.headers["host"] == f"partner-receiver.invalid:{receiver.port}"
    assert looked_up == ["partner-receiver.invalid", "partner-receiver.invalid"]


def test_a_host_that_turns_private_after_registration_is_refused_at_send_time(
        engine: Engine, settings, receiver, committed, sent_tasks,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: public when registered, loopback when sent → nothing is sent."""
    monkeypatch.setattr(settings, "webhook_allow_http", True)
    answers = {"now": ["93.184.215.14"]}
    monkeypatch.setattr(targets, "resolve_addresses", lambda host, port: answers["now"])
    made = subscribe(engine, f"http://rebinding.invalid:{receiver.port}/hooks/advocase")
    committed.append(made.org_id)
    [delivery_id] = emit_committed(engine, made)
    answers["now"] = ["127.0.0.1"]
    assert run_sent(sent_tasks) == ["pending"]
    assert receiver.requests == []
    [attempt] = attempts_of(engine, delivery_id)
    assert (attempt.status_code, attempt.error) == (None, "TargetRefused")


def test_an_attempt_ends_within_its_overall_time_limit(
        local_targets, monkeypatch: pytest.MonkeyPatch) -> None:
    """A receiver that trickles its answer a byte at a time cannot hold a worker longer
    than the overall limit (10 s; 1 s here), though no single read times out."""
    monkeypatch.setattr(targets, "TOTAL_TIMEOUT", 1.0)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    stop = threading.Event()

    def trickle() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 100:
                if stop.is_set():
                    return
                try:
                    conn.send(bytes([byte]))
                except OSError:
                    return
                time.sleep(0.2)

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.getsockname()[1]}/hooks"
        outcome = targets.post(url, headers={}, body=b"{}", settings=local_targets)
    finally:
        stop.set()
        server.close()
    assert outcome.status_code is None and outcome.error == "ReadTimeout"
    assert outcome.duration_ms < 2500


def test_a_refused_connection_is_an_error_class_not_a_message(local_targets) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    outcome = targets.post(f"http://127.0.0.1:{port}/x", headers={}, body=b"{}",
                           settings=local_targets)
    assert (outcome.status_code, outcome.error) == (None, "ConnectError")
    assert not outcome.succeeded


def test_task_arguments_are_ids_only(engine: Engine, subscriber, sent_tasks) -> None:
    emit_committed(engine, subscriber)
    tasks.enqueue_due_webhook_deliveries()
    assert sent_tasks
    for name, args, options in sent_tasks:
        assert name == service.DELIVER_TASK
        assert [UUID(a) for a in args]
        assert set(options) <= {"expires"}
    sent_tasks.clear()


def test_the_host_header_names_the_host_as_the_url_does() -> None:
    def host(scheme: str, name: str, port: int) -> str:
        return targets._host_header(targets.Target("", scheme, name, port, "/", ()))

    assert host("https", "partner.example", 443) == "partner.example"
    assert host("https", "partner.example", 8443) == "partner.example:8443"
    assert host("http", "partner.example", 80) == "partner.example"
    assert host("https", "2606:4700::1", 443) == "[2606:4700::1]"
    assert host("https", "2606:4700::1", 8443) == "[2606:4700::1]:8443"
