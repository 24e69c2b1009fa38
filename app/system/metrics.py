"""``GET /metrics``: Prometheus text exposition, summed over every API and worker process."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from app.core import metrics
from app.core.errors import problem
from app.db import UnitOfWorkRoute

router = APIRouter(tags=["system"], route_class=UnitOfWorkRoute)
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="metrics"'}


@router.get(metrics.METRICS_PATH, include_in_schema=False)
def scrape(request: Request) -> Any:
    settings = request.app.state.settings
    refusal = metrics.scrape_refusal(settings, request.headers.get("authorization"))
    if refusal is not None:
        status, detail = refusal
        if status == 401:
            return problem(401, kind="metrics-token-required", title="Metrics token required",
                           detail=detail, headers=_CHALLENGE)
        return problem(403, kind="metrics-not-configured", title="Metrics not served",
                       detail=detail)
    body = metrics.exposition(settings, extra=[request.app.state.queue_depth])
    return Response(body, media_type=CONTENT_TYPE_LATEST)
