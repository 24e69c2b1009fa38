"""Domain errors and their RFC 9457 ``application/problem+json`` rendering.

Services raise the exceptions below; one set of handlers turns them, and every
framework error, into a problem document. No stack trace, no input value and no
stored data ever reaches a response body.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "urn:advocase:problem:"

log = structlog.get_logger("app.errors")


def problem_type(kind: str) -> str:
    return PROBLEM_BASE + kind


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_MEDIA_TYPE


def problem(
    status: int,
    *,
    kind: str | None = None,
    title: str | None = None,
    detail: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> ProblemResponse:
    """Build a problem response; ``kind`` None means the plain HTTP status (``about:blank``)."""
    body: dict[str, Any] = {
        "type": problem_type(kind) if kind else "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail or HTTPStatus(status).description or HTTPStatus(status).phrase,
    }
    if errors is not None:
        body["errors"] = errors
    body.update(extensions)
    return ProblemResponse(body, status_code=status, headers=headers)


class DomainError(Exception):
    """A refusal a caller can understand. ``audit`` marks a denial worth an audit event
    (written after the request's transaction has rolled back); ``keep_changes`` asks
    the unit of work to commit what the service did before refusing (revoking a
    session on refresh-token reuse must stick even though the request fails)."""

    status: int = 400
    kind: str = "bad-request"
    title: str = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        audit: dict[str, Any] | None = None,
        keep_changes: bool = False,
        kind: str | None = None,
        title: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.headers = headers
        self.audit = audit
        self.keep_changes = keep_changes
        if kind:
            self.kind = kind
        if title:
            self.title = title

    def to_response(self) -> ProblemResponse:
        return problem(
            self.status,
            kind=self.kind,
            title=self.title,
            detail=self.detail,
            errors=self.errors,
            headers=self.headers,
        )


class NotFound(DomainError):
    status, kind, title = 404, "not-found", "Not found"


class Forbidden(DomainError):
    status, kind, title = 403, "forbidden", "Forbidden"


class Unauthorized(DomainError):
    status, kind, title = 401, "unauthorized", "Authentication required"


class Conflict(DomainError):
    status, kind, title = 409, "conflict", "Conflict"


class Invalid(DomainError):
    status, kind, title = 422, "validation-error", "Invalid input"


class BadRequest(DomainError):
    status, kind, title = 400, "bad-request", "Bad request"


class InvalidCursor(BadRequest):
    kind, title = "invalid-cursor", "Invalid cursor"


class TooManyRequests(DomainError):
    status, kind, title = 429, "too-many-requests", "Too many requests"


class PayloadTooLarge(StarletteHTTPException):
    """Raised while a body streams in past its limit; an HTTPException so FastAPI re-raises it."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"The request body is larger than {limit} bytes.")
        self.limit = limit


def payload_too_large(limit: int) -> ProblemResponse:
    return problem(
        413,
        kind="payload-too-large",
        title="Request body too large",
        detail=f"The request body is larger than the limit of {limit} bytes.",
        max_bytes=limit,
    )


def internal_error(request_id: str | None) -> ProblemResponse:
    return problem(
        500,
        kind="internal-error",
        title="Internal server error",
        detail="Something went wrong on our side. Quote the request id when you report it.",
        request_id=request_id,
    )


JSON_MEDIA_SUFFIXES = ("/json", "+json")
FORM_MEDIA_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    errors = []
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ())]
        location = loc[0] if loc else "body"
        field = ".".join(loc[1:]) if len(loc) > 1 else location
        # The offending value is never echoed back: it may be personal data.
        errors.append(
            {
                "field": field,
                "location": location,
                "message": error.get("msg", "invalid"),
                "type": error.get("type", "invalid"),
            }
        )
    return errors


def _request_id(request: Request) -> str | None:
    return request.scope.get("state", {}).get("request_id")


async def _validation_handler(request: Request, exc: RequestValidationError) -> Response:
    raw = exc.errors()
    if any(error.get("type") == "json_invalid" for error in raw):
        position = next(
            (e["loc"][1] for e in raw if e.get("type") == "json_invalid" and len(e["loc"]) > 1),
            None,
        )
        return problem(
            400,
            kind="malformed-json",
            title="Malformed JSON",
            detail="The request body is not valid JSON."
            + (f" Parsing stopped at character {position}." if position is not None else ""),
            errors=[{"field": "body", "location": "body", "message": "invalid JSON",
                     "type": "json_invalid"}],
        )
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    body_errors = any(error.get("loc", ("",))[0] == "body" for error in raw)
    is_json = content_type.endswith(JSON_MEDIA_SUFFIXES)
    if body_errors and content_type and not is_json and content_type not in FORM_MEDIA_TYPES:
        return problem(
            415,
            kind="unsupported-media-type",
            title="Unsupported media type",
            detail="Send the request body as application/json.",
            errors=[{"field": "content-type", "location": "header",
                     "message": "expected application/json", "type": "content_type"}],
        )
    if body_errors and not content_type and await request.body():
        return problem(
            415,
            kind="unsupported-media-type",
            title="Unsupported media type",
            detail="The request has a body but no Content-Type; send application/json.",
            errors=[{"field": "content-type", "location": "header",
                     "message": "missing", "type": "content_type"}],
        )
    return problem(
        422,
        kind="validation-error",
        title="Invalid input",
        detail="One or more fields are invalid.",
        errors=_field_errors(exc),
    )


async def _http_handler(request: Request, exc: StarletteHTTPException) -> Response:
    if exc.status_code == 413:
        return payload_too_large(getattr(exc, "limit", 0) or _limit_from_scope(request))
    headers = dict(exc.headers) if exc.headers else None
    detail = exc.detail if isinstance(exc.detail, str) else None
    if exc.status_code == 404 and detail == "Not Found":
        detail = "There is nothing at this address."
    if exc.status_code == 405:
        detail = "This address does not accept that method."
    return problem(exc.status_code, detail=detail, headers=headers)


def _limit_from_scope(request: Request) -> int:
    return int(request.scope.get("advocase.max_body_bytes", 0))


async def _domain_handler(request: Request, exc: DomainError) -> Response:
    if exc.audit is not None or exc.status in (401, 403):
        from starlette.concurrency import run_in_threadpool

        await run_in_threadpool(_record_denial, request, exc)
    return exc.to_response()


def _record_denial(request: Request, exc: DomainError) -> None:
    """Audit a refused request in its own transaction (the request's one rolled back)."""
    info = dict(exc.audit or {})
    action = str(info.pop("event", None) or ("auth.denied" if exc.status == 401
                                                 else "access.denied"))
    org_id = info.pop("org_id", None)
    object_type = info.pop("object_type", None)
    object_id = info.pop("object_id", None)
    details = {"status": exc.status, "route": _route_template(request)}
    details.update({k: v for k, v in info.items() if isinstance(v, str | int | bool)})
    _audit_apart(request, action, outcome="denied", org_id=org_id, object_type=object_type,
                 object_id=object_id, details=details)


def _audit_apart(request: Request, action: str, *, outcome: str, details: dict[str, Any],
                 org_id: Any = None, object_type: Any = None, object_id: Any = None) -> None:
    """Write one audit event in a transaction of its own (the request's one rolled back)."""
    from app.core import audit
    from app.db import app_unit_of_work

    actor = request.scope.get("state", {}).get("actor")
    factory = app_unit_of_work(request)
    try:
        with factory() as db:
            audit.record(db, actor, action, outcome=outcome, org_id=org_id,
                         object_type=object_type, object_id=object_id, details=details)
    except Exception:  # noqa: BLE001 - a failed audit write must not change the answer
        log.error("apart_audit_failed", action=action, exc_info=True)


def integrity_failure(request_id: str | None) -> ProblemResponse:
    return problem(
        500,
        kind="integrity-failure",
        title="Stored data failed its integrity check",
        detail="A stored record could not be opened: it was altered, moved from elsewhere, "
               "or its key is missing. Nothing was changed and the failure has been "
               "recorded. Quote the request id when you report it.",
        request_id=request_id,
    )


async def _integrity_handler(request: Request, exc: Exception) -> Response:
    """A ciphertext or key that does not open: tampering or corruption, never data to show.

    Logged and audited by route and exception type only (the message could name a table,
    never a value)."""
    from starlette.concurrency import run_in_threadpool

    route = _route_template(request)
    log.error("integrity_failure", route=route, exc_type=type(exc).__name__)
    actor = request.scope.get("state", {}).get("actor")
    await run_in_threadpool(
        _audit_apart, request, "integrity.failure", outcome="failure",
        org_id=getattr(actor, "org_id", None),
        details={"status": 500, "route": route, "error": type(exc).__name__})
    return integrity_failure(_request_id(request))


def _route_template(request: Request) -> str:
    route = request.scope.get("route")
    return str(getattr(route, "path", "<unmatched>"))


async def _unhandled_handler(request: Request, exc: Exception) -> Response:
    # Last resort (the request-context middleware normally answers first).
    log.error("unhandled_exception", exc_type=type(exc).__name__)
    return internal_error(_request_id(request))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_handler)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_handler)  # type: ignore[arg-type]
    app.add_exception_handler(DomainError, _domain_handler)  # type: ignore[arg-type]
    from app.core.keys import DecryptionError

    app.add_exception_handler(DecryptionError, _integrity_handler)
    app.add_exception_handler(Exception, _unhandled_handler)
