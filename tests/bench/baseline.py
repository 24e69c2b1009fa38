"""The reference app: the least a Starlette/uvicorn stack can do for one JSON answer.

advocase figures are reported as a ratio to this app, served by the same uvicorn
with the same number of workers on the same machine in the same run, so the
ratio shows what advocase's own layers (FastAPI routing, middleware, logging,
validation, database) cost, and machine noise largely cancels out.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def endpoint(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


app = Starlette(routes=[Route("/", endpoint)])
