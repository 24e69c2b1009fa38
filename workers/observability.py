"""Task metrics and tracing in worker processes, connected through Celery's signals.

Each finished task is counted by its registered name and outcome and its run time
observed; a task's arguments are never looked at. In prefork workers every child
writes its values to the worker metrics folder (``advocase worker`` prepares it) and
the API's ``/metrics`` sums them; a worker on another host can serve its own on
``ADVOCASE_WORKER_METRICS_PORT`` (``serve_worker_metrics``).
"""

from __future__ import annotations

import os
import threading
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from celery import signals

from app.core import metrics
from app.settings import Settings, get_settings


@signals.task_prerun.connect
def _task_prerun(task_id: str | None = None, **_: Any) -> None:
    metrics.task_started(task_id)


@signals.task_postrun.connect
def _task_postrun(task_id: str | None = None, task: Any = None, state: str | None = None,
                  **_: Any) -> None:
    metrics.task_finished(getattr(task, "name", None) or "unknown", task_id, state)


@signals.worker_process_init.connect
def _child_started(**_: Any) -> None:
    # A prefork child: tracing (when enabled) needs its own export thread.
    _start_tracing()


@signals.worker_init.connect
def _worker_started(sender: Any = None, **_: Any) -> None:
    pool = getattr(sender, "pool_cls", None)
    pool_name = getattr(pool, "__module__", None) or str(pool)
    if "prefork" not in pool_name:
        _start_tracing()  # solo and threads pools run tasks in this process


@signals.worker_process_shutdown.connect
def _child_stopped(pid: int | None = None, **_: Any) -> None:
    metrics.process_exited(pid or os.getpid())


def _start_tracing() -> None:
    from app.core import tracing
    from app.db import get_engine

    settings = get_settings()
    if settings.otel_enabled:
        tracing.process_provider(settings, get_engine(settings))


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
        return  # scrapes are not worth a log line each


def metrics_wsgi_app(settings: Settings) -> Any:
    """A WSGI app answering scrapes with this host's worker metrics and the queue depth,
    under the same access rule as the API's ``/metrics``."""
    queue_depth = metrics.QueueDepthCollector(settings)

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        refusal = metrics.scrape_refusal(settings, environ.get("HTTP_AUTHORIZATION"))
        if refusal is not None:
            status, detail = refusal
            headers = [("Content-Type", "text/plain; charset=utf-8")]
            if status == 401:
                headers.append(("WWW-Authenticate", 'Bearer realm="metrics"'))
            start_response(f"{status} {'Unauthorized' if status == 401 else 'Forbidden'}",
                           headers)
            return [detail.encode()]
        from prometheus_client import CONTENT_TYPE_LATEST

        body = metrics.exposition(settings, extra=[queue_depth])
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
        return [body]

    return app


def serve_worker_metrics(settings: Settings) -> Any:
    """Serve the worker's metrics on ``ADVOCASE_WORKER_METRICS_PORT`` from a daemon thread
    of the worker's main process; returns the server (``shutdown()`` stops it)."""
    assert settings.worker_metrics_port is not None
    from prometheus_client.exposition import ThreadingWSGIServer

    server = make_server(settings.worker_metrics_host, settings.worker_metrics_port,
                         metrics_wsgi_app(settings), ThreadingWSGIServer,
                         handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="worker-metrics", daemon=True).start()
    return server
