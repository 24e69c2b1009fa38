"""Claiming a delivery is atomic: of two workers that try at once, one wins — on SQLite
(a conditional UPDATE under the write lock) and on PostgreSQL (SELECT … FOR UPDATE SKIP
LOCKED, then the same conditional UPDATE)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from uuid import UUID, uuid4

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from app.db import unit_of_work, utcnow
from app.webhooks import service, targets
from app.webhooks.models import DeliveryState, WebhookAttempt, WebhookDelivery
from tests.support import services
from tests.webhooks.conftest import make_partner, partner_actor

PUBLIC = "https://93.184.215.14/hooks/advocase"


@pytest.fixture(params=["sqlite", "postgresql"])
def own_engine(request, tmp_path) -> Iterator[Engine]:
    with services.own_engine(request.param, tmp_path, "webhook_claims") as engine:
        yield engine


def a_delivery(engine: Engine, sent_tasks: list) -> UUID:
    from tests.support.identity import make_org

    with unit_of_work(engine) as db:
        org = make_org(db)
        app = make_partner(db, org)
        service.create_endpoint(db, partner_actor(app), url=PUBLIC,
                                event_types=["referral.sent"])
        service.emit(db, org_id=org.id, app_id=app.id, event_type="referral.sent",
                     subject_id=uuid4())
    sent_tasks.clear()
    with unit_of_work(engine, reading=True) as db:
        return db.scalars(sa.select(WebhookDelivery.id)
                          .where(WebhookDelivery.org_id == org.id)).one()


def claim_at_once(engine: Engine, delivery_id: UUID, workers: int = 2) -> list:
    barrier = threading.Barrier(workers)
    results: list = []
    errors: list = []

    def claim() -> None:
        try:
            barrier.wait(timeout=10)
            with unit_of_work(engine) as db:
                results.append(service.claim_delivery(db, delivery_id))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=claim) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    return results


def test_two_claims_of_one_delivery_one_wins(own_engine: Engine, sent_tasks) -> None:
    delivery_id = a_delivery(own_engine, sent_tasks)
    for round_ in range(10):
        results = claim_at_once(own_engine, delivery_id)
        winners = [r for r in results if r is not None]
        assert len(results) == 2 and len(winners) == 1, (round_, results)
        with unit_of_work(own_engine) as db:  # a failed attempt: due again, for the next round
            service.record_attempt(db, winners[0], targets.SendOutcome(500, None, 1))
            db.execute(sa.update(WebhookDelivery).where(WebhookDelivery.id == delivery_id)
                       .values(next_attempt_at=utcnow() - timedelta(seconds=1),
                               retry_count=0))
    with unit_of_work(own_engine, reading=True) as db:
        row = db.get(WebhookDelivery, delivery_id)
        assert row.attempt_count == 10
        assert db.scalar(sa.select(sa.func.count()).select_from(WebhookAttempt)
                         .where(WebhookAttempt.delivery_id == delivery_id)) == 10


def test_a_result_only_counts_for_the_claim_that_holds_the_delivery(
        own_engine: Engine, sent_tasks) -> None:
    delivery_id = a_delivery(own_engine, sent_tasks)
    with unit_of_work(own_engine) as db:
        first = service.claim_delivery(db, delivery_id)
    assert first is not None
    later = utcnow() + service.LEASE + timedelta(seconds=1)
    with unit_of_work(own_engine) as db:  # the lease ran out: another worker takes over
        second = service.claim_delivery(db, delivery_id, now=later)
    assert second is not None and second.token != first.token
    with unit_of_work(own_engine) as db:  # the first worker comes back with a failure
        assert service.record_attempt(db, first, targets.SendOutcome(500, None, 5)) == "lost"
    with unit_of_work(own_engine) as db:
        assert service.record_attempt(db, second, targets.SendOutcome(200, None, 5)) == \
            DeliveryState.succeeded
    with unit_of_work(own_engine, reading=True) as db:
        row = db.get(WebhookDelivery, delivery_id)
        assert row.state == DeliveryState.succeeded
        errors = list(db.scalars(sa.select(WebhookAttempt.error)
                                 .where(WebhookAttempt.delivery_id == delivery_id)
                                 .order_by(WebhookAttempt.number, WebhookAttempt.error)))
    assert "WorkerLost" in errors  # the takeover recorded the first attempt as lost


@pytest.fixture
def postgres_engine(tmp_path) -> Iterator[Engine]:
    with services.own_engine("postgresql", tmp_path, "webhook_locks") as engine:
        yield engine


def test_postgresql_skips_a_delivery_another_worker_has_locked(
        postgres_engine: Engine, sent_tasks) -> None:
    """(SQLite has no row locks: its writers queue for the database lock, and the
    conditional UPDATE decides, as the tests above show.)"""
    own_engine = postgres_engine
    delivery_id = a_delivery(own_engine, sent_tasks)
    locked, release = threading.Event(), threading.Event()
    held: list = []

    def slow_claim() -> None:
        with unit_of_work(own_engine) as db:
            held.append(service.claim_delivery(db, delivery_id))
            locked.set()
            release.wait(timeout=30)

    thread = threading.Thread(target=slow_claim)
    thread.start()
    try:
        assert locked.wait(timeout=10)
        started = time.monotonic()
        with unit_of_work(own_engine) as db:
            assert service.claim_delivery(db, delivery_id) is None
        assert time.monotonic() - started < 2, "the second claim waited for the lock"
    finally:
        release.set()
        thread.join(timeout=30)
    assert held and held[0] is not None
    with unit_of_work(own_engine) as db:  # committed and leased: still not claimable
        assert service.claim_delivery(db, delivery_id) is None
