"""create_app(): routers, middleware and exception handlers — wiring only."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.telemetry import TelemetryConfig

from app import __version__
from app.audit import api as audit_api
from app.clients import api as clients_api
from app.consents import api as consents_api
from app.core import tracing
from app.core.errors import install_error_handlers
from app.core.metrics import QueueDepthCollector, process_exited
from app.core.middleware import BodyLimitMiddleware, RequestContextMiddleware
from app.dashboard import STATIC_DIR as DASHBOARD_STATIC_DIR
from app.dashboard import casefile as dashboard_casefile
from app.dashboard import clients as dashboard_clients
from app.dashboard import directory as dashboard_directory
from app.dashboard import evidence_pages as dashboard_evidence
from app.dashboard import referrals as dashboard_referrals
from app.dashboard import reminders as dashboard_reminders
from app.dashboard import report_pages as dashboard_reports
from app.dashboard import views as dashboard_views
from app.db import get_engine
from app.evidence import api as evidence_api
from app.identity import api as identity_api
from app.identity import partner_api
from app.identity.deps import document_bearer_security
from app.incidents import api as incidents_api
from app.legal import api as legal_api
from app.notifications import api as notifications_api
from app.referrals import api as referrals_api
from app.reminders import api as reminders_api
from app.reports import api as reports_api
from app.resources import api as resources_api
from app.risk import api as risk_api
from app.safety_plans import api as safety_plans_api
from app.service_log import api as service_log_api
from app.settings import Settings, get_settings
from app.system import api as system_api
from app.system import metrics as system_metrics
from app.system.health import ReadinessChecker
from app.timeline import api as timeline_api
from app.webhooks import api as webhooks_api


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Sync endpoints run in this pool. More threads than cores only add GIL
    # contention for this CPU-bound work; the size is a setting.
    limiter = anyio.to_thread.current_default_thread_limiter()
    limiter.total_tokens = app.state.settings.threadpool_size
    # Everything made while starting (modules, routes, mappers, templates) lives as long
    # as the process: keep it out of the collector's scans, which otherwise cost a
    # request a noticeable share of its CPU time (see docs/benchmarks.md).
    gc.collect()
    gc.freeze()
    yield
    process_exited()


_NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False,
                                  "operation_spans": False}


def _add_routes(app: FastAPI, router: APIRouter) -> None:
    """Put a domain router's routes straight on the app.

    ``include_router`` keeps each router as a nested branch that is matched (and its
    effective routes resolved) on every request: about a fifth of a small authenticated
    request's time in this FastAPI version. A domain router's prefix, tags, route class
    and router-level dependencies are already baked into each of its routes when they
    are declared, so the routes behave the same when added directly (only
    ``app.dependency_overrides`` does not reach them, and nothing here uses it)."""
    app.router.routes.extend(router.routes)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    settings.ensure_dirs()
    engine = get_engine(settings)
    provider = tracing.process_provider(settings, engine)
    app = FastAPI(
        lifespan=_lifespan,
        title="advocase",
        version=__version__,
        description=(
            "Case management for advocates who help people leave abusive relationships. "
            "Errors are RFC 9457 problem documents (application/problem+json)."
        ),
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        # FastAPI's native OpenTelemetry records URLs (query strings included) and costs
        # every request; it stays off until tracing is configured on purpose, and then its
        # spans pass through app.core.tracing's redaction before any exporter.
        telemetry=tracing.telemetry_config(provider) if provider else _NO_TELEMETRY,
    )
    app.state.settings = settings
    app.state.readiness = ReadinessChecker(settings, engine)
    app.state.queue_depth = QueueDepthCollector(settings)
    app.state.body_limit_overrides = []

    install_error_handlers(app)
    _add_routes(app, system_api.router)
    _add_routes(app, system_metrics.router)
    _add_routes(app, identity_api.router)
    _add_routes(app, partner_api.router)
    _add_routes(app, audit_api.router)
    _add_routes(app, clients_api.router)
    _add_routes(app, consents_api.router)
    _add_routes(app, safety_plans_api.router)
    _add_routes(app, risk_api.router)
    _add_routes(app, incidents_api.router)
    _add_routes(app, evidence_api.router)
    app.state.body_limit_overrides.append(evidence_api.upload_body_limit(settings))
    _add_routes(app, service_log_api.router)
    _add_routes(app, legal_api.router)
    _add_routes(app, timeline_api.router)
    _add_routes(app, referrals_api.router)
    _add_routes(app, notifications_api.router)
    _add_routes(app, reminders_api.router)
    _add_routes(app, reports_api.router)
    app.state.body_limit_overrides.append(reports_api.verify_body_limit(settings))
    _add_routes(app, webhooks_api.router)
    _add_routes(app, resources_api.router)
    _add_routes(app, dashboard_views.router)
    _add_routes(app, dashboard_clients.router)
    _add_routes(app, dashboard_casefile.router)
    _add_routes(app, dashboard_evidence.router)
    _add_routes(app, dashboard_directory.router)
    _add_routes(app, dashboard_referrals.router)
    _add_routes(app, dashboard_reminders.router)
    _add_routes(app, dashboard_reports.router)
    app.state.body_limit_overrides.append(dashboard_reports.verify_body_limit(settings))
    app.state.body_limit_overrides.append(dashboard_evidence.upload_body_limit(settings))
    app.mount("/dashboard/static", StaticFiles(directory=DASHBOARD_STATIC_DIR),
              name="dashboard-static")

    # Added last = outermost: the request context wraps everything, including the body limit.
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        overrides=lambda: app.state.body_limit_overrides,
    )
    app.add_middleware(RequestContextMiddleware)
    document_bearer_security(app)
    return app
