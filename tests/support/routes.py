"""Routes mounted only in tests, to drive the shared HTTP machinery before domains exist."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from app.core.errors import NotFound
from app.core.pagination import Page, PageParamsDep, SortKey, paginate
from app.db import SessionDep
from app.system.models import WorkerHeartbeat

router = APIRouter(prefix="/api/v1/_test")


class EchoIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=50)
    count: int = Field(ge=0)


class HeartbeatOut(BaseModel):
    worker: str
    beats: int


@router.post("/echo")
def echo(body: EchoIn) -> dict[str, Any]:
    return {"ok": True, "length": len(body.name)}


@router.get("/boom")
def boom() -> None:
    raise RuntimeError("Fictional Person lives at 1 Example Street")


@router.get("/missing")
def missing() -> None:
    raise NotFound("No such record.")


@router.post("/stream")
async def stream(request: Request) -> dict[str, int]:
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
    return {"received": total}


@router.post("/write-then-fail")
def write_then_fail(db: SessionDep) -> None:
    from app.system.service import record_heartbeat

    record_heartbeat(db, "write-then-fail")
    raise RuntimeError("after a write")


@router.get("/heartbeats", response_model=Page[HeartbeatOut])
def heartbeats(db: SessionDep, page: PageParamsDep) -> dict[str, Any]:
    rows, next_cursor = paginate(
        db,
        sa.select(WorkerHeartbeat),
        listing="test.heartbeats",
        keys=[SortKey(WorkerHeartbeat.beats, descending=True),  # type: ignore[arg-type]
              SortKey(WorkerHeartbeat.worker)],  # type: ignore[arg-type]
        params=page,
    )
    return {"items": rows, "next_cursor": next_cursor}
