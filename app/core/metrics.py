"""Prometheus metrics: HTTP requests by route template, Celery tasks by name, queue depth.

Labels are bounded and never personal: an HTTP method from a fixed set, a route
*template* (``/api/v1/clients/{client_id}``, never the path with the id in it), a
status code, a task's registered name and an outcome. Task arguments, query strings,
bodies and raw paths are never recorded.

Several processes (``advocase serve --workers N``, Celery's prefork children) use
prometheus_client's multiprocess mode: each process writes its values to files in
``PROMETHEUS_MULTIPROC_DIR`` and a scrape of any API process sums the files of every
process. ``app.core.metrics_dir.prepare_multiprocess_dir`` must run in the parent before
any process imports ``prometheus_client`` (the library picks its value class at import).
"""

from __future__ import annotations

import glob
import hmac
import os
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from app.core.metrics_dir import API_SUBDIR, MULTIPROC_ENV, WORKER_SUBDIR, metrics_root
from app.settings import Settings

UNMATCHED = "unmatched"
METRICS_PATH = "/metrics"

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Request latency: most API answers take milliseconds; uploads and reports take seconds.
_HTTP_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Task runtime: from a heartbeat (milliseconds) to a court summary build (minutes).
_TASK_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0)

HTTP_REQUESTS = Counter(
    "advocase_http_requests", "HTTP requests answered, by method, route template and status",
    ["method", "route", "status"])
HTTP_DURATION = Histogram(
    "advocase_http_request_duration_seconds",
    "Time from the request's arrival to the end of its answer, by method and route template",
    ["method", "route"], buckets=_HTTP_BUCKETS)
TASKS = Counter(
    "advocase_tasks", "Celery tasks finished, by task name and outcome "
    "(succeeded, failed, retried, or another Celery state in lower case)",
    ["task", "outcome"])
TASK_DURATION = Histogram(
    "advocase_task_duration_seconds", "Celery task run time, by task name", ["task"],
    buckets=_TASK_BUCKETS)


# --- HTTP --------------------------------------------------------------------------------
# Binding label values costs more than the increments: bound children are kept per key.
_http_children: dict[tuple[Any, str, Any], tuple[Any, Any]] = {}


def _bind(key: tuple[Any, str, Any]) -> tuple[Any, Any]:
    method, route, status = key
    method_label = method if method in _METHODS else "OTHER"
    status_label = str(status) if isinstance(status, int) else "none"
    pair = (HTTP_REQUESTS.labels(method_label, route, status_label),
            HTTP_DURATION.labels(method_label, route))
    _http_children[key] = pair
    return pair


def record_request(method: Any, route: str | None, status: Any, seconds: float) -> None:
    """Count one answered request under its route template (None: no route matched)."""
    if route == METRICS_PATH:
        return  # scrapes are not traffic
    key = (method, route or UNMATCHED, status)
    pair = _http_children.get(key) or _bind(key)
    pair[0].inc()
    pair[1].observe(seconds)


# --- Celery ------------------------------------------------------------------------------
_OUTCOMES = {"SUCCESS": "succeeded", "FAILURE": "failed", "RETRY": "retried"}
_KNOWN_STATES = frozenset({"PENDING", "RECEIVED", "STARTED", "REJECTED", "REVOKED", "IGNORED"})
_task_started: dict[str, float] = {}


def task_started(task_id: str | None) -> None:
    if task_id:
        _task_started[task_id] = time.perf_counter()


def task_finished(task_name: str, task_id: str | None, state: str | None) -> None:
    """Count a finished task under its registered name; never its arguments."""
    started = _task_started.pop(task_id, None) if task_id else None
    state = state or ""
    outcome = _OUTCOMES.get(state) or (state.lower() if state in _KNOWN_STATES else "other")
    TASKS.labels(task_name, outcome).inc()
    if started is not None:
        TASK_DURATION.labels(task_name).observe(time.perf_counter() - started)


# --- multiprocess mode -------------------------------------------------------------------
def multiprocess_mode() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def process_exited(pid: int | None = None) -> None:
    """Bookkeeping for a process that stops (live gauges of that pid are dropped)."""
    if multiprocess_mode():
        mark_process_dead(pid or os.getpid())


class _MergedFiles:
    """Sums the files of every process in the given folders (API and worker)."""

    def __init__(self, folders: Iterable[Path]) -> None:
        self.folders = list(folders)

    def collect(self) -> Iterable[Metric]:
        files: list[str] = []
        for folder in self.folders:
            files.extend(glob.glob(os.path.join(folder, "*.db")))
        return MultiProcessCollector.merge(files, accumulate=True)


def exposition(settings: Settings, extra: Iterable[Any] = ()) -> bytes:
    """The text a scrape gets: every process's metrics (summed) plus collectors in ``extra``."""
    registry = CollectorRegistry()
    for collector in extra:
        registry.register(collector)
    if not multiprocess_mode():
        return generate_latest(REGISTRY) + generate_latest(registry)
    root = metrics_root(settings)
    folders = {Path(os.environ[MULTIPROC_ENV]), root / API_SUBDIR, root / WORKER_SUBDIR}
    registry.register(_MergedFiles(sorted(f for f in folders if f.is_dir())))
    return generate_latest(registry)


# --- scrape access -----------------------------------------------------------------------
def scrape_refusal(settings: Settings, authorization: str | None) -> tuple[int, str] | None:
    """None when a scrape may proceed, else (status, reason).

    With ``ADVOCASE_METRICS_TOKEN`` set a scrape must carry it as a bearer token. Without
    one, production refuses every scrape unless ``ADVOCASE_METRICS_ALLOW_UNAUTHENTICATED``
    says the endpoint is protected another way (a network policy, a private listener)."""
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else ""
    if token:
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode(), token.encode()):
            return 401, "A scrape needs the metrics bearer token (ADVOCASE_METRICS_TOKEN)."
        return None
    if settings.env == "production" and not settings.metrics_allow_unauthenticated:
        return 403, ("Metrics are not served in production without ADVOCASE_METRICS_TOKEN "
                     "(or ADVOCASE_METRICS_ALLOW_UNAUTHENTICATED=true).")
    return None


# --- queue depth -------------------------------------------------------------------------
# kombu's Redis transport keeps a queue's messages of priority 3, 6 and 9 in lists named
# after the queue with this separator and the priority step appended.
_REDIS_PRIORITY_SEP = "\x06\x16"
_REDIS_PRIORITY_STEPS = (3, 6, 9)


class QueueDepthCollector:
    """Messages waiting in the task queue(s), read from the broker at scrape time.

    Bounded by ``ADVOCASE_BROKER_CHECK_TIMEOUT``; a broker that cannot be read never fails
    the scrape: ``advocase_broker_up`` is 0 and no depth is exported."""

    def __init__(self, settings: Settings, queues: Iterable[str] | None = None) -> None:
        self.url = str(settings.broker_url)
        self.timeout = settings.broker_check_timeout
        self.queues = list(queues or [settings.task_queue])
        self._lock = threading.Lock()
        self._client: Any = None

    def describe(self) -> Iterable[Metric]:
        return []

    def _redis_depths(self) -> dict[str, int]:
        import redis

        with self._lock:
            if self._client is None:
                self._client = redis.Redis.from_url(
                    self.url, socket_connect_timeout=self.timeout, socket_timeout=self.timeout,
                    health_check_interval=0)
        pipe = self._client.pipeline(transaction=False)
        for queue in self.queues:
            pipe.llen(queue)
            for step in _REDIS_PRIORITY_STEPS:
                pipe.llen(f"{queue}{_REDIS_PRIORITY_SEP}{step}")
        lengths = iter(pipe.execute())
        return {queue: sum(next(lengths) for _ in range(1 + len(_REDIS_PRIORITY_STEPS)))
                for queue in self.queues}

    def _sqla_depths(self) -> dict[str, int]:
        import sqlalchemy as sa

        from app.db import create_db_engine, read_only

        with self._lock:
            if self._client is None:
                self._client = create_db_engine(self.url[len("sqla+"):])
        depths = dict.fromkeys(self.queues, 0)
        with read_only(self._client) as conn:
            if not sa.inspect(conn).has_table("kombu_message"):
                return depths  # nothing was ever sent
            rows = conn.execute(
                sa.text("SELECT q.name, count(m.id) FROM kombu_message m "
                        "JOIN kombu_queue q ON q.id = m.queue_id "
                        "WHERE m.visible AND q.name IN :names GROUP BY q.name")
                .bindparams(sa.bindparam("names", expanding=True)),
                {"names": self.queues}).all()
        depths.update({name: int(count) for name, count in rows})
        return depths

    def depths(self) -> dict[str, int] | None:
        scheme = self.url.split(":", 1)[0]
        if scheme in ("redis", "rediss"):
            return self._redis_depths()
        if scheme.startswith("sqla+"):
            return self._sqla_depths()
        return None  # a broker whose depth is not read here (AMQP: use its own exporter)

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("advocase_broker_up",
                               "1 when the broker answered the queue-depth query at this scrape")
        depth = GaugeMetricFamily("advocase_queue_depth",
                                  "Task messages waiting in the broker, not yet taken by a worker",
                                  labels=["queue"])
        try:
            depths = self.depths()
        except Exception:  # noqa: BLE001 - a scrape must not fail with the broker
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        if depths is not None:
            for queue, count in depths.items():
                depth.add_metric([queue], count)
            yield depth
