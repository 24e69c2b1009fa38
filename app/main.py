"""create_app(): routers, middleware and exception handlers — wiring only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from app import __version__
from app.audit import api as audit_api
from app.clients import api as clients_api
from app.consents import api as consents_api
from app.core.errors import install_error_handlers
from app.core.middleware import BodyLimitMiddleware, RequestContextMiddleware
from app.dashboard import STATIC_DIR as DASHBOARD_STATIC_DIR
from app.dashboard import casefile as dashboard_casefile
from app.dashboard import clients as dashboard_clients
from app.dashboard import evidence_pages as dashboard_evidence
from app.dashboard import views as dashboard_views
from app.db import get_engine
from app.evidence import api as evidence_api
from app.identity import api as identity_api
from app.identity import partner_api
from app.incidents import api as incidents_api
from app.legal import api as legal_api
from app.notifications import api as notifications_api
from app.referrals import api as referrals_api
from app.reminders import api as reminders_api
from app.resources import api as resources_api
from app.risk import api as risk_api
from app.safety_plans import api as safety_plans_api
from app.service_log import api as service_log_api
from app.settings import Settings, get_settings
from app.system import api as system_api
from app.system.health import ReadinessChecker
from app.timeline import api as timeline_api
from app.webhooks import api as webhooks_api


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Sync endpoints run in this pool. More threads than cores only add GIL
    # contention for this CPU-bound work; the size is a setting.
    limiter = anyio.to_thread.current_default_thread_limiter()
    limiter.total_tokens = app.state.settings.threadpool_size
    yield


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    settings.ensure_dirs()
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
    )
    app.state.settings = settings
    app.state.readiness = ReadinessChecker(settings, get_engine(settings))
    app.state.body_limit_overrides = []

    install_error_handlers(app)
    app.include_router(system_api.router)
    app.include_router(identity_api.router)
    app.include_router(partner_api.router)
    app.include_router(audit_api.router)
    app.include_router(clients_api.router)
    app.include_router(consents_api.router)
    app.include_router(safety_plans_api.router)
    app.include_router(risk_api.router)
    app.include_router(incidents_api.router)
    app.include_router(evidence_api.router)
    app.state.body_limit_overrides.append(evidence_api.upload_body_limit(settings))
    app.include_router(service_log_api.router)
    app.include_router(legal_api.router)
    app.include_router(timeline_api.router)
    app.include_router(referrals_api.router)
    app.include_router(notifications_api.router)
    app.include_router(reminders_api.router)
    app.include_router(webhooks_api.router)
    app.include_router(resources_api.router)
    app.include_router(dashboard_views.router)
    app.include_router(dashboard_clients.router)
    app.include_router(dashboard_casefile.router)
    app.include_router(dashboard_evidence.router)
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
    return app
