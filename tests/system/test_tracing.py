"""Optional OpenTelemetry tracing: spans named by route template, and nothing personal in
any span (no ids, no query strings, no SQL parameters, no exception messages)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app.core import tracing
from app.main import create_app
from tests.support.apps import bind_to_session

FICTIONAL_EMAIL = "fictional.traced.person@example.test"


@pytest.fixture
def exported(settings, engine) -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    traced = settings.model_copy(update={"otel_enabled": True})
    tracing.install(tracing.build_provider(traced, SimpleSpanProcessor(exporter)), engine)
    # The app and the workers take the provider installed for the process.
    assert tracing.process_provider(traced) is not None
    try:
        yield exporter
    finally:
        tracing.uninstall()


def dump(spans) -> str:
    return json.dumps([{"name": s.name, "attributes": dict(s.attributes or {}),
                        "events": [dict(e.attributes or {}) for e in s.events],
                        "status": s.status.description} for s in spans], default=str)


def test_tracing_is_off_unless_configured(app, settings) -> None:
    assert settings.otel_enabled is False
    assert tracing.process_provider(settings) is None
    assert app.state.settings.otel_enabled is False


def test_request_and_sql_spans_carry_templates_not_personal_data(exported, settings,
                                                                  db) -> None:
    app = bind_to_session(create_app(settings.model_copy(update={"otel_enabled": True})), db)
    client_id = str(uuid.uuid4())
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get(f"/api/v1/clients/{client_id}?search=Fictional+Name").status_code == 401
        client.post("/api/v1/auth/login",
                    json={"email": FICTIONAL_EMAIL, "password": "a fictional wrong password"})
        assert client.get("/healthz").status_code == 200  # probes are not traced

    spans = exported.get_finished_spans()
    names = [span.name for span in spans]
    assert "GET /api/v1/clients/{client_id}" in names
    assert "POST /api/v1/auth/login" in names
    assert not any("healthz" in name for name in names)
    server = next(s for s in spans if s.name == "GET /api/v1/clients/{client_id}")
    assert server.attributes["http.route"] == "/api/v1/clients/{client_id}"
    assert server.attributes["http.response.status_code"] == 401
    assert not any(key.startswith("url.") and key != "url.scheme" for key in server.attributes)
    sql = [s for s in spans if "db.statement" in (s.attributes or {})
           or "db.query.text" in (s.attributes or {})]
    assert sql, f"no SQL span among {names}"
    login = next(s for s in sql if "staff_user" in str(s.attributes))
    statement = login.attributes.get("db.statement") or login.attributes.get("db.query.text")
    assert "?" in statement or "%(" in statement, statement  # bound, not inlined

    text = dump(spans)
    for secret in (client_id, "Fictional", "search=", FICTIONAL_EMAIL, "fictional wrong"):
        assert secret not in text


def test_task_spans_carry_the_task_name_not_its_arguments(exported) -> None:
    from workers.celery_app import celery_app

    @celery_app.task(name="tests.tracing.echo")
    def echo(value: str) -> str:
        return "ok"

    assert echo.apply(args=[FICTIONAL_EMAIL]).successful()
    spans = exported.get_finished_spans()
    assert any("tests.tracing.echo" in span.name for span in spans), [s.name for s in spans]
    assert FICTIONAL_EMAIL not in dump(spans)


def test_exception_messages_never_leave_the_process(exported, settings) -> None:
    from opentelemetry.trace import StatusCode

    provider = tracing.process_provider(settings.model_copy(update={"otel_enabled": True}))
    assert provider is not None
    with pytest.raises(ValueError), provider.get_tracer("test").start_as_current_span("work"):
        raise ValueError(f"could not open the case of {FICTIONAL_EMAIL}")
    (span,) = exported.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.events, "the exception event is kept (its type only)"
    assert {key for event in span.events for key in event.attributes} <= {
        "exception.type", "exception.escaped"}
    assert span.events[0].attributes["exception.type"] == "ValueError"
    assert FICTIONAL_EMAIL not in dump([span])
