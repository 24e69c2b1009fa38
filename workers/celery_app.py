"""The Celery app and the beat schedule, configured from settings.

Embedded default: a SQLite-backed broker (kombu's SQLAlchemy transport) and a
SQLite result backend under ``var/`` — a real worker and a real beat, no server.
Redis or RabbitMQ are chosen by ``ADVOCASE_BROKER_URL`` alone.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, signals
from celery.schedules import crontab
from kombu.transport import sqlalchemy as kombu_sqlalchemy

from app.settings import Settings, get_settings

HEARTBEAT_TASK = "system.record_heartbeat"
BROKER_CLEANUP_TASK = "system.purge_delivered_broker_messages"
PING_TASK = "system.ping"
AUDIT_ANCHOR_TASK = "audit.anchor_chain_heads"
KEYS_REENCRYPT_TASK = "keys.reencrypt_batch"
EVIDENCE_HASH_CHECK_TASK = "evidence.check_hashes"
EVIDENCE_STORAGE_SWEEP_TASK = "evidence.sweep_storage"
# Webhooks: one attempt at one delivery (by id), and the sweep that finds due deliveries.
WEBHOOK_DELIVER_TASK = "webhooks.deliver"
WEBHOOK_SWEEP_TASK = "webhooks.enqueue_due_deliveries"
WEBHOOK_SWEEP_INTERVAL = 15.0


# --- reminders ---------------------------------------------------------------------------
# The database holds the schedule (due_at, state, leases); beat only finds what is due and
# enqueues one task per reminder (or email, or digest) by id. No long ETAs in the broker.
REMINDER_DELIVER_TASK = "reminders.deliver"
REMINDER_EMAIL_TASK = "reminders.send_email"
REMINDER_DIGEST_TASK = "reminders.send_digest"
REMINDER_SWEEP_TASK = "reminders.enqueue_due"
REMINDER_RULES_TASK = "reminders.reevaluate_rules"
REMINDER_RESYNC_TASK = "reminders.resync_org"
REMINDER_SWEEP_INTERVAL = 15.0

# --- reports -------------------------------------------------------------------------------
# A build takes the report id only and claims the report in the database with a lease; the
# sweep enqueues reports whose message was lost or whose worker died (lease run out); the
# expiry task deletes the stored files of reports past ADVOCASE_REPORT_TTL_HOURS.
REPORT_BUILD_TASK = "reports.build"
REPORT_SWEEP_TASK = "reports.enqueue_due"
REPORT_EXPIRE_TASK = "reports.expire"
REPORT_STORAGE_SWEEP_TASK = "reports.sweep_storage"
REPORT_SWEEP_INTERVAL = 30.0
REPORT_EXPIRE_INTERVAL = 600.0


def report_beat_entries() -> dict[str, Any]:
    return {
        "reports-due": {"task": REPORT_SWEEP_TASK, "schedule": REPORT_SWEEP_INTERVAL,
                        "options": {"expires": REPORT_SWEEP_INTERVAL}},
        "reports-expire": {"task": REPORT_EXPIRE_TASK, "schedule": REPORT_EXPIRE_INTERVAL,
                           "options": {"expires": REPORT_EXPIRE_INTERVAL}},
        "reports-storage-sweep-daily": {"task": REPORT_STORAGE_SWEEP_TASK,
                                        "schedule": crontab(minute=50, hour=0)},
    }


def reminder_beat_entries() -> dict[str, Any]:
    return {
        "reminders-due": {"task": REMINDER_SWEEP_TASK, "schedule": REMINDER_SWEEP_INTERVAL,
                          "options": {"expires": REMINDER_SWEEP_INTERVAL}},
        # Rules that depend on time passing (no contact since N days, unanswered referrals).
        "reminders-reevaluate-rules": {"task": REMINDER_RULES_TASK,
                                       "schedule": crontab(minute=10)},
    }


def broker_transport_options(settings: Settings) -> dict[str, Any]:
    url = str(settings.broker_url)
    # (The SQLAlchemy transport passes its options to create_engine(): its polling
    # interval is set on the transport class in create_celery instead.)
    if url.startswith(("redis", "rediss")):
        # Long schedules live in the database, never as broker ETAs, so an hour is ample;
        # an unacknowledged task is redelivered after this long if its worker vanished.
        return {"visibility_timeout": 3600}
    return {}


def create_celery(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    settings.ensure_dirs()
    if str(settings.broker_url).startswith("sqla+"):
        # The virtual transport sleeps this long between polls of an empty queue (1 s by
        # default); kombu reads it from the class, not from the transport options.
        kombu_sqlalchemy.Transport.polling_interval = settings.embedded_broker_polling_interval
    app = Celery("advocase", broker=str(settings.broker_url), backend=str(settings.result_backend),
                 include=["workers.tasks"])
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        timezone="UTC",
        enable_utc=True,
        # Work that must not be lost: acknowledged only once done, re-queued if the
        # worker process dies under it. Durable "never lost" is built on database state.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=settings.task_soft_time_limit,
        task_time_limit=settings.task_time_limit,
        task_track_started=True,
        task_default_queue=settings.task_queue,
        result_expires=24 * 3600,
        result_extended=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options=broker_transport_options(settings),
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_send_task_events=False,
        beat_schedule_filename=str(settings.var_dir / "celerybeat-schedule"),
        beat_schedule=beat_schedule(settings),
    )
    return app


def beat_schedule(settings: Settings) -> dict[str, Any]:
    schedule: dict[str, Any] = {
        "worker-heartbeat": {
            "task": HEARTBEAT_TASK,
            "schedule": settings.heartbeat_interval,
            # A heartbeat that waited in the queue longer than this says nothing new.
            "options": {"expires": settings.heartbeat_interval * 3},
        },
    }
    # A signed record of every audit chain's head: deleting the newest events (which
    # a hash chain alone cannot reveal) then contradicts the last anchor.
    schedule["audit-anchor-daily"] = {
        "task": AUDIT_ANCHOR_TASK,
        "schedule": crontab(minute=5, hour=0),
    }
    # Every stored evidence file is decrypted and re-hashed once a day, in batches; a file
    # that no longer matches its SHA-256 is flagged to the org's supervisors.
    schedule["evidence-hash-check-daily"] = {
        "task": EVIDENCE_HASH_CHECK_TASK,
        "schedule": crontab(minute=20, hour=1),
    }
    # Objects stored by an upload whose row never committed (a killed process).
    schedule["evidence-storage-sweep-daily"] = {
        "task": EVIDENCE_STORAGE_SWEEP_TASK,
        "schedule": crontab(minute=40, hour=0),
    }
    # Webhook retries are scheduled in the database (next_attempt_at), not as broker ETAs:
    # this finds deliveries due (or whose worker's lease ran out) and enqueues them by id.
    schedule["webhook-deliveries-due"] = {
        "task": WEBHOOK_SWEEP_TASK,
        "schedule": WEBHOOK_SWEEP_INTERVAL,
        "options": {"expires": WEBHOOK_SWEEP_INTERVAL},
    }
    schedule.update(reminder_beat_entries())
    schedule.update(report_beat_entries())
    if str(settings.broker_url).startswith("sqla+"):
        schedule["embedded-broker-cleanup"] = {
            "task": BROKER_CLEANUP_TASK,
            "schedule": settings.broker_cleanup_interval,
            "options": {"expires": settings.broker_cleanup_interval},
        }
    return schedule


@signals.setup_logging.connect
def _setup_logging(**_: Any) -> None:
    # Celery must not install its own handlers: our structured logging is configured
    # by the command that started the process.
    from app.core.logging import configure_logging, logging_configured

    if not logging_configured():
        configure_logging(get_settings(), "celery")


celery_app = create_celery()

# Task metrics and tracing hang on Celery's signals (task name and outcome, never arguments).
import workers.observability  # noqa: E402,F401
