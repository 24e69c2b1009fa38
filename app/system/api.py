"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from app.core.errors import problem
from app.db import UnitOfWorkRoute

router = APIRouter(tags=["system"], route_class=UnitOfWorkRoute)


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    checks: dict[str, Any]


@router.get("/healthz", response_model=Health, summary="The process is up")
async def healthz() -> dict[str, str]:
    # Touches nothing: a slow database must not get a healthy process restarted.
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Database and broker reachable; worker heartbeat age and storage reported",
    responses={503: {"description": "A dependency is down (problem+json naming it)"}},
)
def readyz(request: Request) -> Any:
    ready, checks = request.app.state.readiness.run()
    if ready:
        return {"status": "ready", "checks": checks}
    failed = [name for name in ("database", "broker") if checks[name]["status"] != "ok"]
    return problem(
        503,
        kind="not-ready",
        title="Service not ready",
        detail="Unavailable: " + ", ".join(failed) + ".",
        failed_checks=failed,
        checks=checks,
        headers={"Retry-After": "5"},
    )
