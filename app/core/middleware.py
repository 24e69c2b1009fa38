"""Pure ASGI middleware: request id, request log and metrics, security headers, body limit, 500.

Pure ASGI (not ``BaseHTTPMiddleware``) so streaming bodies stay streams and the
cost per request stays small.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from typing import Any

import structlog
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import PayloadTooLarge, internal_error, payload_too_large
from app.core.metrics import record_request
from app.db import finish_request_work

log = structlog.get_logger("app.http")
_LEFT_OPEN = RuntimeError("the request's unit of work was not finished by its route")

REQUEST_ID_HEADER = "x-request-id"
# A caller's id is kept only when it is short and plain; anything else is replaced.
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")

SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    ("permissions-policy", "camera=(), microphone=(), geolocation=(), interest-cohort=()"),
)
FRAME_ANCESTORS = "frame-ancestors 'none'"


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    # Raw paths are never logged: only the template of a matched route.
    return path if path else "<unmatched>"


class RequestContextMiddleware:
    """Outermost layer: ids, headers, the request log line and the 500 answer.

    It answers unhandled errors itself, so even a 500 carries the request id and
    the security headers; the traceback goes to the log, never to the client.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        start = time.perf_counter()
        status_holder: dict[str, Any] = {"status": None}
        https = scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                headers = MutableHeaders(scope=message)
                headers[REQUEST_ID_HEADER] = request_id
                for name, value in SECURITY_HEADERS:
                    if name not in headers:
                        headers[name] = value
                if "content-security-policy" not in headers:
                    headers["content-security-policy"] = FRAME_ANCESTORS
                if "cache-control" not in headers:
                    headers["cache-control"] = "no-store"
                if https and "strict-transport-security" not in headers:
                    headers["strict-transport-security"] = "max-age=63072000; includeSubDomains"
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as exc:  # noqa: BLE001 - the one place every error is answered
            if status_holder["status"] is not None:
                log.error("response_failed_midway", exc_info=True)
                raise
            if isinstance(exc, PayloadTooLarge):
                response = payload_too_large(exc.limit)
            else:
                log.error("unhandled_exception", exc_type=type(exc).__name__, exc_info=True)
                response = internal_error(request_id)
            await response(scope, receive, send_with_headers)
        finally:
            if finish_request_work(scope, _LEFT_OPEN):
                # Only a route outside UnitOfWorkRoute can get here (a test forbids it).
                log.error("request_work_left_open", route=_route_template(scope))
            elapsed = time.perf_counter() - start
            # Metrics, like the log, know a request by its route template, never its path.
            template = getattr(scope.get("route"), "path", None)
            record_request(scope.get("method"), template, status_holder["status"], elapsed)
            log.info(
                "request",
                method=scope.get("method"),
                route=template or "<unmatched>",
                status=status_holder["status"],
                duration_ms=round(elapsed * 1000, 2),
            )
            structlog.contextvars.clear_contextvars()


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            return candidate if _VALID_REQUEST_ID.match(candidate) else None
    return None


LimitRule = tuple[re.Pattern[str], int]


class BodyLimitMiddleware:
    """Refuse request bodies over a limit, by declared length and while they stream.

    ``overrides`` lets a route that legitimately takes more (evidence uploads)
    raise its own limit by path pattern.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        overrides: Callable[[], list[LimitRule]] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.overrides = overrides or (lambda: [])

    def limit_for(self, path: str) -> int:
        for pattern, limit in self.overrides():
            if pattern.match(path):
                return limit
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        scope["advocase.max_body_bytes"] = limit
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await payload_too_large(limit)(scope, receive, send)
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLarge(limit)
            return message

        await self.app(scope, limited_receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
