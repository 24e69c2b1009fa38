"""Readiness checks: database, broker, the age of the last worker heartbeat, and whether
the file storage answers.

A check reports only a status, a duration and an error class: connection strings
and server messages (which may name hosts, users or passwords) never leave the
process.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Engine

from app.core.storage import get_storage
from app.db import create_db_engine, read_only, utcnow
from app.settings import Settings
from app.system.models import WorkerHeartbeat

log = structlog.get_logger("app.health")


@dataclass
class CheckResult:
    status: str  # "ok" | "down"
    duration_ms: float
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def _timed(fn: Any) -> CheckResult:
    start = time.perf_counter()
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - any failure means "down"
        log.warning("readiness_check_failed", check=getattr(fn, "__name__", "check"),
                    error=type(exc).__name__)
        return CheckResult("down", round((time.perf_counter() - start) * 1000, 2),
                           type(exc).__name__)
    return CheckResult("ok", round((time.perf_counter() - start) * 1000, 2))


def check_database(engine: Engine) -> CheckResult:
    def database() -> None:
        with read_only(engine) as conn:
            conn.execute(sa.text("SELECT 1"))

    return _timed(database)


class BrokerProbe:
    """A cheap, reusable reachability probe for the configured Celery broker."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self._lock = threading.Lock()
        self._client: Any = None

    def _redis(self) -> None:
        import redis

        with self._lock:
            if self._client is None:
                self._client = redis.Redis.from_url(
                    self.url,
                    socket_connect_timeout=self.timeout,
                    socket_timeout=self.timeout,
                    health_check_interval=0,
                )
        self._client.ping()

    def _sqla(self) -> None:
        with self._lock:
            if self._client is None:
                self._client = create_db_engine(self.url[len("sqla+") :])
        with read_only(self._client) as conn:
            conn.execute(sa.text("SELECT 1"))

    def _amqp(self) -> None:
        from kombu import Connection

        with Connection(self.url, connect_timeout=self.timeout) as conn:
            conn.ensure_connection(max_retries=1, timeout=self.timeout)

    def _always(self) -> None:
        return None

    def check(self) -> CheckResult:
        scheme = self.url.split(":", 1)[0]
        if scheme in ("redis", "rediss"):
            fn = self._redis
        elif scheme.startswith("sqla+"):
            fn = self._sqla
        elif scheme in ("amqp", "amqps", "pyamqp"):
            fn = self._amqp
        else:
            fn = self._always

        def broker() -> None:
            fn()

        return _timed(broker)


def heartbeat_report(engine: Engine, stale_after: float) -> dict[str, Any]:
    """Age of the most recent worker heartbeat: reported, not a readiness condition.

    An API that can read and write is ready even while workers restart; the age
    tells an operator (and a monitor) whether background work is flowing.
    """
    try:
        with read_only(engine) as conn:
            row = conn.execute(
                sa.select(
                    sa.func.max(WorkerHeartbeat.last_seen_at),  # type: ignore[arg-type]
                    sa.func.count(),
                ).select_from(WorkerHeartbeat)
            ).one()
    except Exception as exc:  # noqa: BLE001
        return {"status": "unknown", "error": type(exc).__name__}
    last_seen, workers = row
    if last_seen is None:
        return {"status": "missing", "workers": 0, "last_heartbeat_age_seconds": None}
    age = max(0.0, (utcnow() - last_seen).total_seconds())
    return {
        "status": "ok" if age <= stale_after else "stale",
        "workers": workers,
        "last_heartbeat_age_seconds": round(age, 1),
    }


def check_storage(settings: Settings) -> CheckResult:
    """Whether the configured storage answers (a HEAD of the S3 bucket with one try and
    short timeouts, or the local folder being writable): reported, not a readiness
    condition. Without storage only evidence and report files are out of reach; an API
    taken out of service for it would also stop everything that still works."""

    def storage() -> None:
        get_storage(settings).probe()

    return _timed(storage)


class ReadinessChecker:
    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self.broker = BrokerProbe(str(settings.broker_url), settings.broker_check_timeout)

    def run(self) -> tuple[bool, dict[str, Any]]:
        database = check_database(self.engine)
        broker = self.broker.check()
        checks: dict[str, Any] = {"database": database.as_dict(), "broker": broker.as_dict()}
        if database.status == "ok":
            checks["worker"] = heartbeat_report(self.engine, self.settings.heartbeat_stale_after)
        else:
            checks["worker"] = {"status": "unknown"}
        checks["storage"] = check_storage(self.settings).as_dict()
        ready = database.status == "ok" and broker.status == "ok"
        return ready, checks
