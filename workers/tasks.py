"""Celery tasks: take ids, open a unit of work, call a service, commit."""

from __future__ import annotations

import gc
import os
import socket
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
import structlog
from celery import Task, signals
from sqlmodel import Session

from app.core import audit, deferred, keys
from app.core.storage import get_storage
from app.db import committing, create_db_engine, get_engine, unit_of_work, utcnow
from app.evidence import previews
from app.evidence import service as evidence_service
from app.settings import get_settings
from app.system import service as system_service
from app.webhooks import service as webhooks_service
from workers.celery_app import (
    AUDIT_ANCHOR_TASK,
    BROKER_CLEANUP_TASK,
    EVIDENCE_HASH_CHECK_TASK,
    EVIDENCE_STORAGE_SWEEP_TASK,
    HEARTBEAT_TASK,
    KEYS_REENCRYPT_TASK,
    PING_TASK,
    WEBHOOK_DELIVER_TASK,
    WEBHOOK_SWEEP_INTERVAL,
    WEBHOOK_SWEEP_TASK,
    celery_app,
)

log = structlog.get_logger("workers.tasks")


def _worker_name(task: Task) -> str:
    return str(task.request.hostname or f"{socket.gethostname()}:{os.getpid()}")


@celery_app.task(name=HEARTBEAT_TASK, bind=True, acks_late=False, ignore_result=True)
def record_heartbeat(self: Task) -> None:
    """Mark this worker alive; /readyz reports the age of the newest heartbeat."""
    with unit_of_work() as db:
        system_service.record_heartbeat(db, _worker_name(self))
        system_service.forget_silent_workers(db, older_than=timedelta(days=7))


@celery_app.task(name=PING_TASK, bind=True)
def ping(self: Task) -> dict[str, Any]:
    """Round trip through broker, worker and result backend (diagnostics and tests)."""
    return {"pong": True, "worker": _worker_name(self), "at": utcnow().isoformat()}


@celery_app.task(name=AUDIT_ANCHOR_TASK, ignore_result=True)
def anchor_audit_chains() -> int:
    """Sign and keep every audit chain's head (daily): truncation becomes detectable."""
    with unit_of_work() as db:
        return len(audit.anchor_heads(db))


@celery_app.task(name=KEYS_REENCRYPT_TASK, ignore_result=True)
def reencrypt_batch(org_id: str, after_client_id: str | None = None) -> int:
    """Re-wrap one batch of an org's client keys under its newest key, then queue the next.

    Idempotent: keys already on the current version are skipped, so a redelivered batch
    does no harm. A lost one leaves keys on the old version, still readable; `advocase
    keys status` shows them and `advocase keys rewrap` finishes the work.
    """
    with unit_of_work() as db:
        batch = keys.rewrap_client_keys(
            db, org_id=UUID(org_id),
            after_client_id=UUID(after_client_id) if after_client_id else None)
        if not batch.done:
            deferred.enqueue_after_commit(db, KEYS_REENCRYPT_TASK, org_id, batch.next_after)
    log.info("client_keys_rewrapped", org_id=org_id, rewrapped=batch.rewrapped,
             done=batch.done)
    return batch.rewrapped


EVIDENCE_CHECK_BATCH = 50


@celery_app.task(name=EVIDENCE_HASH_CHECK_TASK, ignore_result=True)
def check_evidence_hashes(started: int | None = None, after_id: str | None = None) -> int:
    """Re-hash one batch of stored evidence files (decrypt, SHA-256, compare), then queue
    the next batch. ``started`` (epoch seconds) is when the run began: a file checked
    since then is skipped, so a redelivered or repeated batch checks nothing twice.

    The database is not held while a file is read: each file's keyset is opened in a
    short read, hashed with no session, and the result recorded in a short write."""
    since = datetime.fromtimestamp(started or int(utcnow().timestamp()), UTC)
    storage = get_storage()
    with unit_of_work(reading=True) as db:
        due = evidence_service.due_for_hash_check(
            db, since=since, after_id=UUID(after_id) if after_id else None,
            limit=EVIDENCE_CHECK_BATCH)
    checked = failed = 0
    intact_images: list[UUID] = []
    for item in due.items:
        with unit_of_work(reading=True) as db:
            stored = evidence_service.open_for_check(db, item.evidence_id)
        if stored is None:
            continue  # the client was erased meanwhile: nothing left to check
        outcome = evidence_service.hash_stored(stored, storage)
        with unit_of_work() as db:
            evidence_service.record_hash_check(db, item.evidence_id, outcome, since=since)
        checked += 1
        failed += outcome != "intact"
        if outcome == "intact" and previews.wanted(stored.evidence):
            intact_images.append(item.evidence_id)
    with unit_of_work() as db:
        # Images still without a kept preview (received before previews were kept, or
        # their task was lost) get one now.
        kept = previews.kept_previews(db, intact_images)
        for evidence_id in intact_images:
            if evidence_id not in kept:
                deferred.enqueue_after_commit(db, previews.PREVIEW_TASK, evidence_id)
        if due.more:
            deferred.enqueue_after_commit(db, EVIDENCE_HASH_CHECK_TASK, int(since.timestamp()),
                                          due.items[-1].evidence_id)
    log.info("evidence_hashes_checked", checked=checked, failed=failed)
    return checked


@celery_app.task(name=EVIDENCE_STORAGE_SWEEP_TASK, ignore_result=True)
def sweep_evidence_storage() -> dict[str, int]:
    """Remove stored objects no evidence row names, and abandoned partial writes (a day
    old at least)."""
    with unit_of_work(reading=True) as db:
        removed = evidence_service.sweep_storage(db, get_storage())
    log.info("evidence_storage_swept", **removed)
    return removed


@celery_app.task(name=previews.PREVIEW_TASK, ignore_result=True, acks_late=True)
def make_evidence_preview(evidence_id: str) -> str:
    """Make the preview of one image received as evidence, once (app.evidence.previews);
    a build makes it itself for an image that has none, so a lost message costs time only."""
    outcome = previews.make_preview(UUID(evidence_id), get_storage())
    log.info("evidence_preview", outcome=outcome)
    return outcome


@celery_app.task(name=BROKER_CLEANUP_TASK, ignore_result=True)
def purge_delivered_broker_messages() -> int:
    """Keep the embedded broker's file from growing without bound."""
    deleted = purge_delivered_messages(str(get_settings().broker_url))
    log.info("embedded_broker_cleaned", deleted=deleted)
    return deleted


def purge_delivered_messages(broker_url: str) -> int:
    """Delete messages an embedded (SQLAlchemy-transport) broker has already delivered.

    kombu's SQLAlchemy transport marks a delivered message invisible and never
    deletes it. A delivered, unacknowledged message is held by its worker, and
    requeued as a new row if that worker shuts down, so the old row is never read
    again and can go. Other brokers delete on delivery: nothing to do.
    """
    if not broker_url.startswith("sqla+"):
        return 0
    engine = create_db_engine(broker_url[len("sqla+") :])
    try:
        with engine.begin() as conn:
            if not sa.inspect(conn).has_table("kombu_message"):
                return 0
            result = conn.execute(
                sa.text("DELETE FROM kombu_message WHERE visible = :delivered"),
                {"delivered": False},
            )
            return int(result.rowcount or 0)
    finally:
        engine.dispose()


# --- webhooks ---------------------------------------------------------------------------


@celery_app.task(name=WEBHOOK_DELIVER_TASK, ignore_result=True, acks_late=True,
                 reject_on_worker_lost=True, soft_time_limit=30, time_limit=40)
def deliver_webhook(delivery_id: str) -> str:
    """One attempt at one delivery: claim it (atomically, with a lease) and commit, send it
    outside any transaction, record the outcome. A delivery not due, held by another
    worker, or already delivered is left alone, so a duplicate message does no harm; a
    worker killed mid-attempt leaves a lease that expires, and the sweep finds it again.
    (The hard time limit stays well inside the 60-second lease.)"""
    with unit_of_work() as db:
        claim = webhooks_service.claim_delivery(db, UUID(delivery_id))
    if claim is None:
        return "not_claimed"
    outcome = webhooks_service.send(claim)
    with unit_of_work() as db:
        state = webhooks_service.record_attempt(db, claim, outcome)
    log.info("webhook_attempt", delivery_id=delivery_id, attempt=claim.attempt_number,
             status_code=outcome.status_code, error=outcome.error,
             duration_ms=outcome.duration_ms, state=state)
    return state


@celery_app.task(name=WEBHOOK_SWEEP_TASK, ignore_result=True)
def enqueue_due_webhook_deliveries() -> int:
    """Enqueue, by id, every delivery whose next attempt is due or whose claim's lease ran
    out (beat, every few seconds). Each message expires before the next sweep, which
    enqueues again whatever is still due."""
    with unit_of_work(reading=True) as db:
        due = webhooks_service.due_delivery_ids(db)
        for delivery_id in due:
            deferred.enqueue_after_commit(db, WEBHOOK_DELIVER_TASK, delivery_id,
                                          expires=WEBHOOK_SWEEP_INTERVAL)
    if due:
        log.info("webhook_deliveries_enqueued", count=len(due))
    return len(due)


@signals.worker_init.connect
@signals.worker_process_init.connect
def _freeze_startup_objects(**_: Any) -> None:
    # What a worker made while starting lives as long as it does: out of the collector's
    # scans (and, frozen before the pool forks, its pages stay shared with the children).
    gc.collect()
    gc.freeze()


@signals.worker_ready.connect
def _first_heartbeat(sender: Any = None, **_: Any) -> None:
    # Report a new worker at once instead of after the first beat interval.
    record_heartbeat.apply_async(expires=get_settings().heartbeat_interval * 3)


# --- reminders ----------------------------------------------------------------------------

import smtplib  # noqa: E402

from workers import celery_app as _schedule  # noqa: E402


def _send_reminder_emails(messages: list[tuple[UUID, Any]]) -> tuple[list[UUID], list[UUID]]:
    """Send composed messages outside any transaction: (sent, failed) delivery ids."""
    from app.reminders import delivery as reminder_delivery

    sent: list[UUID] = []
    failed: list[UUID] = []
    for delivery_id, message in messages:
        try:
            reminder_delivery.smtp_send(message)
        except (smtplib.SMTPException, OSError) as exc:
            failed.append(delivery_id)
            log.warning("reminder_email_failed", delivery_id=str(delivery_id),
                        error=type(exc).__name__)
        else:
            sent.append(delivery_id)
    return sent, failed


def _record_sending(db: Any, sent: list[UUID], failed: list[UUID]) -> None:
    from app.reminders import delivery as reminder_delivery

    if sent:
        reminder_delivery.mark_sent(db, sent)
    if failed:
        reminder_delivery.mark_failed(db, failed)


@celery_app.task(name=_schedule.REMINDER_DELIVER_TASK, ignore_result=True, acks_late=True,
                 reject_on_worker_lost=True, soft_time_limit=30, time_limit=40)
def deliver_reminder(reminder_id: str) -> str:
    """Deliver one due reminder once, in two transactions around the SMTP conversation:
    claim it (atomic, leased), record the in-app notification and the email rows
    (idempotent per channel) and compose the emails, commit; send; then record what was
    sent and close the round, commit. A duplicate or late message finds nothing to claim;
    a worker killed in between leaves a lease that runs out, and the sweep takes over.

    Both transactions run on one pooled connection (one checkout, one pre-ping), held
    idle, outside any transaction, while the emails are sent."""
    from app.reminders import delivery as reminder_delivery

    with get_engine().connect() as connection, \
            Session(bind=connection, expire_on_commit=False) as db:
        with committing(db):
            claim = reminder_delivery.claim_reminder(db, UUID(reminder_id))
            if claim is None:
                return "not_claimed"
            plan, held = reminder_delivery.record_delivery(db, claim)
            composed = plan.composed(db)
        sent, failed = _send_reminder_emails(composed)
        try:
            with committing(db):
                state = _close_round(db, claim, sent, failed, held)
        except sa.exc.DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            # The database went away while the emails were sent (a restart, a failover):
            # once more on a fresh connection, pinged at checkout, rather than leaving sent
            # emails "sending" for the sweep to send again when their lease runs out.
            log.warning("reminder_close_retried", reminder_id=reminder_id)
            with unit_of_work() as fresh:
                state = _close_round(fresh, claim, sent, failed, held)
    log.info("reminder_delivered", reminder_id=reminder_id, state=state, held=held)
    return state or "claim_lost"


def _close_round(db: Any, claim: Any, sent: list[UUID], failed: list[UUID],
                 held: str | None) -> str | None:
    from app.reminders import delivery as reminder_delivery

    _record_sending(db, sent, failed)
    return reminder_delivery.finish_reminder(db, claim, held)


@celery_app.task(name=_schedule.REMINDER_EMAIL_TASK, ignore_result=True, acks_late=True,
                 reject_on_worker_lost=True, soft_time_limit=30, time_limit=40)
def send_reminder_email(delivery_id: str) -> str:
    """An email that waited (quiet hours, a retry) or whose sender died: claim and compose
    (one transaction), send, record."""
    from app.reminders import delivery as reminder_delivery

    with unit_of_work() as db:
        if not reminder_delivery.claim_email(db, UUID(delivery_id)):
            return "not_claimed"
        message = reminder_delivery.compose_email(db, UUID(delivery_id))
    if message is None:
        return "not_sending"
    sent, failed = _send_reminder_emails([(UUID(delivery_id), message)])
    with unit_of_work() as db:
        _record_sending(db, sent, failed)
    return "sent" if sent else "failed"


@celery_app.task(name=_schedule.REMINDER_DIGEST_TASK, ignore_result=True, acks_late=True,
                 reject_on_worker_lost=True, soft_time_limit=30, time_limit=40)
def send_reminder_digest(user_id: str) -> int:
    """One user's daily digest: every due line claimed, one email, all marked sent."""
    from app.reminders import delivery as reminder_delivery

    with unit_of_work() as db:
        taken = reminder_delivery.claim_digest(db, UUID(user_id))
    if not taken:
        return 0
    with unit_of_work() as db:
        message = reminder_delivery.compose_digest(db, UUID(user_id), taken)
    try:
        if message is not None:
            reminder_delivery.smtp_send(message)
    except (smtplib.SMTPException, OSError):
        with unit_of_work() as db:
            reminder_delivery.mark_failed(db, taken)
        return 0
    with unit_of_work() as db:
        reminder_delivery.mark_sent(db, taken)
    return len(taken)


@celery_app.task(name=_schedule.REMINDER_SWEEP_TASK, ignore_result=True)
def enqueue_due_reminders() -> int:
    """Beat: enqueue, by id, every reminder due (or whose lease ran out), every email and
    digest due. A reminder or email is enqueued once per ``QUEUE_TTL`` (its message expires
    then) unless a claim consumed its message; claims make any duplicate harmless. Digests
    are few and enqueued at every sweep, their messages expiring before the next one."""
    from app.reminders import delivery as reminder_delivery

    expires = _schedule.REMINDER_SWEEP_INTERVAL
    queued_for = reminder_delivery.QUEUE_TTL.total_seconds()
    with unit_of_work() as db:
        reminders = reminder_delivery.queue_due_reminders(db)
        emails = reminder_delivery.queue_due_emails(db)
        digests = reminder_delivery.users_with_due_digest(db)
        for reminder_id in reminders:
            deferred.enqueue_after_commit(db, _schedule.REMINDER_DELIVER_TASK, reminder_id,
                                          expires=queued_for)
        for delivery_id in emails:
            deferred.enqueue_after_commit(db, _schedule.REMINDER_EMAIL_TASK, delivery_id,
                                          expires=queued_for)
        for user_id in digests:
            deferred.enqueue_after_commit(db, _schedule.REMINDER_DIGEST_TASK, user_id,
                                          expires=expires)
    count = len(reminders) + len(emails) + len(digests)
    if count:
        log.info("reminders_enqueued", reminders=len(reminders), emails=len(emails),
                 digests=len(digests))
    return count


@celery_app.task(name=_schedule.REMINDER_RESYNC_TASK, ignore_result=True, acks_late=True,
                 reject_on_worker_lost=True)
def resync_org_reminders(org_id: str) -> int:
    """After an org changed its reminder rules: every source of the org, each in its own
    unit of work, so a lead time moved or a rule switched off reaches every reminder.
    Running it twice does no harm (syncing is idempotent)."""
    from app.reminders import rules

    with unit_of_work(reading=True) as db:
        sources = rules.sources_of_org(db, UUID(org_id))
    for kind, source_id in sources:
        with unit_of_work() as db:
            rules.sync_reminders_for(db, kind, source_id)
    log.info("reminder_rules_resynced", org_id=org_id, sources=len(sources))
    return len(sources)


@celery_app.task(name=_schedule.REMINDER_RULES_TASK, ignore_result=True)
def reevaluate_reminder_rules() -> int:
    """Beat (hourly): rules that time alone makes true — a high-risk client with no contact
    for N days, a referral with no answer — each source in its own unit of work."""
    from app.reminders import rules

    with unit_of_work(reading=True) as db:
        sources = rules.sources_to_reevaluate(db)
    for kind, source_id in sources:
        with unit_of_work() as db:
            rules.sync_reminders_for(db, kind, source_id)
    return len(sources)


# --- reports ------------------------------------------------------------------------------

from celery.exceptions import SoftTimeLimitExceeded  # noqa: E402

# A court summary of hundreds of incidents and images takes a while; the soft limit comes
# first and is recorded as the build's failure, the hard one ends a stuck process (its
# lease then runs out and the sweep retries the report).
REPORT_SOFT_TIME_LIMIT = 900
REPORT_TIME_LIMIT = 960


@celery_app.task(name=_schedule.REPORT_BUILD_TASK, ignore_result=True, acks_late=True,
                 reject_on_worker_lost=True, soft_time_limit=REPORT_SOFT_TIME_LIMIT,
                 time_limit=REPORT_TIME_LIMIT)
def build_report(report_id: str) -> str:
    """Claim one report (atomically, with a lease kept alive while it builds), build it,
    store it encrypted, mark it done. A report already taken or finished is left alone,
    so a duplicate message does no harm; a worker killed mid-build leaves a lease that
    runs out, and the sweep enqueues the report again."""
    from app.reports import build

    outcome = build.build_report(UUID(report_id), work=unit_of_work,
                                 time_limits=(SoftTimeLimitExceeded,))
    log.info("report_build_finished", report_id=report_id, outcome=outcome)
    return outcome


@celery_app.task(name=_schedule.REPORT_SWEEP_TASK, ignore_result=True)
def enqueue_due_reports() -> int:
    """Beat: enqueue, by id, reports queued for a while (message lost) or whose builder's
    lease ran out (worker died). Claims make duplicates harmless."""
    from app.reports import service as reports

    with unit_of_work(reading=True) as db:
        due = reports.due_report_ids(db)
        for report_id in due:
            deferred.enqueue_after_commit(db, _schedule.REPORT_BUILD_TASK, report_id,
                                          expires=_schedule.REPORT_SWEEP_INTERVAL)
    if due:
        log.info("reports_enqueued", count=len(due))
    return len(due)


@celery_app.task(name=_schedule.REPORT_EXPIRE_TASK, ignore_result=True)
def expire_reports() -> int:
    """Beat: delete the stored files of reports past their expiry (manifests stay)."""
    from app.reports import service as reports

    with unit_of_work() as db:
        expired = reports.expire_reports(db, get_storage())
    if expired:
        log.info("reports_expired", count=expired)
    return expired


@celery_app.task(name=_schedule.REPORT_STORAGE_SWEEP_TASK, ignore_result=True)
def sweep_report_storage() -> dict[str, int]:
    """Beat (daily): remove stored report files no report names (a killed build's)."""
    from app.reports import service as reports

    with unit_of_work(reading=True) as db:
        removed = reports.sweep_storage(db, get_storage())
    log.info("report_storage_swept", **removed)
    return removed
