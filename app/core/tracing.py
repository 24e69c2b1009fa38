"""Optional OpenTelemetry tracing (``ADVOCASE_OTEL_ENABLED``), exported over OTLP/HTTP.

Requests are traced by FastAPI's own instrumentation, named by method and route
template (``GET /api/v1/clients/{client_id}``); database statements by the SQLAlchemy
instrumentation (statement text only: it records no bound parameters, and our SQL
carries every value as a parameter); Celery publishes and runs by the Celery
instrumentation (task name and ids, never arguments).

Every span passes through ``RedactingSpanProcessor`` before any exporter sees it: it
removes URLs, raw paths and query strings, client addresses, headers, user agents,
SQL parameters, exception messages and stack traces (only the exception type stays),
so a trace never carries what a client or an advocate typed.

The packages are an optional extra: ``pip install 'advocase[otel]'``.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

from app.settings import ConfigurationError, Settings

if TYPE_CHECKING:
    from fastapi.telemetry import TelemetryConfig
    from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider

# Spans for probes and scrapes are noise.
UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
_DROPPED = frozenset({
    "http.target", "http.url", "http.client_ip", "http.user_agent", "user_agent.original",
    "client.address", "client.port", "net.peer.ip", "net.peer.name", "net.sock.peer.addr",
    "network.peer.address", "network.peer.port", "db.statement.parameters", "enduser.id",
})
_DROPPED_PREFIXES = ("http.request.header.", "http.response.header.", "db.query.parameter.",
                     "db.operation.parameter.", "celery.args", "celery.kwargs")
_KEPT_EVENT_ATTRIBUTES = frozenset({"exception.type", "exception.escaped"})


def _clean(attributes: Any) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for key, value in (attributes or {}).items():
        if key in _DROPPED or key.startswith(_DROPPED_PREFIXES):
            continue
        if key.startswith("url.") and key != "url.scheme":
            continue  # url.path, url.query, url.full: ids and search terms live there
        kept[key] = value
    return kept


def redacted(span: ReadableSpan) -> ReadableSpan:
    """A copy of ``span`` without anything that could identify or describe a person."""
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.trace import Status

    events = [Event(event.name, {k: v for k, v in (event.attributes or {}).items()
                                 if k in _KEPT_EVENT_ATTRIBUTES}, event.timestamp)
              for event in span.events]
    return ReadableSpan(
        name=span.name, context=span.context, parent=span.parent, resource=span.resource,
        attributes=_clean(span.attributes), events=events, links=span.links, kind=span.kind,
        # A status description is an exception message: only the code is kept.
        status=Status(span.status.status_code), start_time=span.start_time,
        end_time=span.end_time, instrumentation_scope=span.instrumentation_scope)


def redacting_processor(inner: SpanProcessor) -> SpanProcessor:
    from opentelemetry.sdk.trace import SpanProcessor

    class RedactingSpanProcessor(SpanProcessor):
        """Hands ``inner`` (and so the exporter) only redacted copies of finished spans."""

        def on_start(self, span: Any, parent_context: Any = None) -> None:
            inner.on_start(span, parent_context=parent_context)

        def on_end(self, span: ReadableSpan) -> None:
            inner.on_end(redacted(span))

        def shutdown(self) -> None:
            inner.shutdown()

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return inner.force_flush(timeout_millis)

    return RedactingSpanProcessor()


def build_provider(settings: Settings, processor: SpanProcessor | None = None) -> TracerProvider:
    """A tracer provider exporting redacted spans over OTLP/HTTP (or to ``processor``)."""
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ConfigurationError(
            "ADVOCASE_OTEL_ENABLED needs the OpenTelemetry packages: "
            "pip install 'advocase[otel]'") from exc
    if processor is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otel_endpoint))
    provider = TracerProvider(resource=Resource.create({
        "service.name": settings.otel_service_name}))
    provider.add_span_processor(redacting_processor(processor))
    return provider


_state: dict[str, Any] = {"pid": None, "provider": None}


def process_provider(settings: Settings, engine: Any = None) -> TracerProvider | None:
    """This process's provider when tracing is enabled (made and installed once per
    process, tracing ``engine`` too), else None."""
    if not settings.otel_enabled:
        return None
    if _state["pid"] != os.getpid():
        install(build_provider(settings), engine)
    provider: TracerProvider = _state["provider"]
    return provider


def install(provider: TracerProvider, engine: Any = None) -> None:
    """Trace SQLAlchemy (``engine`` and engines created from now on) and Celery in this
    process with ``provider``. Once per process; ``uninstall`` undoes it."""
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    if _state["pid"] == os.getpid():
        return
    if _state["pid"] is not None:
        # A forked child (a prefork worker) inherits the parent's instrumentation, whose
        # export thread did not survive the fork: start again with this process's provider.
        uninstall()
    # The instrumentation declares SQLAlchemy < 2.1; the engine events it listens to are
    # the same in 2.1 (tests/system/test_tracing.py checks the spans it makes).
    kwargs: dict[str, Any] = {"tracer_provider": provider, "enable_commenter": False,
                              "skip_dep_check": True}
    if engine is not None:
        kwargs["engine"] = engine
    SQLAlchemyInstrumentor().instrument(**kwargs)
    CeleryInstrumentor().instrument(tracer_provider=provider)
    _state.update(pid=os.getpid(), provider=provider)


def uninstall() -> None:
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    SQLAlchemyInstrumentor().uninstrument()
    CeleryInstrumentor().uninstrument()
    _state.update(pid=None, provider=None)


def _untraced(scope: MutableMapping[str, Any]) -> bool:
    return scope.get("path") in UNTRACED_PATHS


def telemetry_config(provider: TracerProvider) -> TelemetryConfig:
    """FastAPI's native telemetry: request spans only (no metrics, no logs of bodies)."""
    return {"tracer_provider": provider, "tracing": True, "metrics": False, "logs": False,
            "operation_spans": False, "auto_configure": False, "exclude": _untraced}
