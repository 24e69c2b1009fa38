"""Who is signed in to the dashboard, and the web defences around it.

- The session cookie holds only a random token; ``identity.web_sessions`` keeps the
  session server-side and decides when it has ended.
- Every state-changing form carries a CSRF token: for a session, an HMAC of the
  session id under the session's own secret; for the sign-in forms (no session
  yet), a double-submit cookie whose HMAC is the hidden field. Cross-site POSTs are
  refused on ``Sec-Fetch-Site`` / ``Origin`` before the token is even looked at.
- Refusals render pages, not problem documents: ``DashboardRoute`` turns domain
  errors into HTML, after rolling back the request's work and auditing the denial
  in the same unit of work (as the API's error handler does in its own).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Form, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse

from app.core import audit
from app.core.access import Actor
from app.core.crypto import constant_time_equal, keyed_digest, new_token
from app.core.errors import DomainError, Forbidden, NotFound
from app.dashboard.web import DASHBOARD_CSP, Signed, render
from app.db import SessionDep, UnitOfWorkRoute, end_request_work
from app.identity import service, web_sessions

SESSION_COOKIE = "advocase_session"
LOGIN_FORM_COOKIE = "advocase_login_form"
PENDING_LOGIN_COOKIE = "advocase_pending_login"
COOKIE_PATH = "/dashboard"
HOME_PATH = "/dashboard"
LOGIN_PATH = "/dashboard/login"
SECOND_FACTOR_PATH = "/dashboard/login/mfa"
ENROL_PATH = "/dashboard/security/mfa"
_LOGIN_FORM_PURPOSE = "advocase/dashboard-login-form/v1"


# A page to return to after signing in: a dashboard path of plain segments (ids, words),
# never a scheme, host, query, "//", "." or ".." — so it cannot lead anywhere else.
_RETURN_PATH = re.compile(r"/dashboard(/[A-Za-z0-9_-][A-Za-z0-9._~-]*)*/?")
_NO_RETURN = (LOGIN_PATH, SECOND_FACTOR_PATH, "/dashboard/logout", "/dashboard/invitation")


def safe_return_path(path: str | None) -> str | None:
    """``path`` if it is a dashboard page worth returning to after signing in, else None."""
    if not path or len(path) > 300 or not _RETURN_PATH.fullmatch(path):
        return None
    # A page's background poll (the bell's count, a report's progress) is no page.
    if path.rstrip("/") in _NO_RETURN or path.rstrip("/").endswith(("/unread-count",
                                                                     "/progress")):
        return None
    return path


def login_redirect(request: Request, *, ended: bool) -> str:
    """The sign-in page, remembering the page asked for (a GET only, path without query:
    a query could carry what someone typed)."""
    query = {"note": "ended"} if ended else {}
    back = safe_return_path(request.url.path) if request.method == "GET" else None
    if back is not None and back.rstrip("/") != "/dashboard":
        query["next"] = back
    return LOGIN_PATH + (f"?{urlencode(query)}" if query else "")


class SignInRequired(Exception):
    """No live session: the browser is sent to the sign-in page."""

    def __init__(self, *, ended: bool) -> None:
        super().__init__("sign in")
        self.ended = ended  # a cookie was sent but its session is over


class EnrolmentRequired(Exception):
    """The account must set up MFA before any other page."""


class FormRefused(Forbidden):
    kind, title = "form-refused", "Form refused"


def _form_refused(reason: str) -> FormRefused:
    return FormRefused(
        "This form could not be accepted: it may have expired or come from another site. "
        "Go back, reload the page and try again.",
        audit={"event": "access.denied", "reason": reason},
    )


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def is_https(request: Request) -> bool:
    return request.url.scheme == "https"


# --- cookies -----------------------------------------------------------------------------


def set_session_cookie(response: Response, request: Request, token: str) -> None:
    # No Max-Age: a browser-session cookie, never outliving the server-side expiry.
    response.set_cookie(SESSION_COOKIE, token, path=COOKIE_PATH, httponly=True,
                        samesite="lax", secure=is_https(request))


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="lax",
                           secure=is_https(request))


def set_pending_login_cookie(response: Response, request: Request, marker: str) -> None:
    response.set_cookie(PENDING_LOGIN_COOKIE, marker, path=LOGIN_PATH, httponly=True,
                        samesite="strict", secure=is_https(request),
                        max_age=web_sessions.PENDING_LOGIN_SECONDS)


def clear_pending_login_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(PENDING_LOGIN_COOKIE, path=LOGIN_PATH, httponly=True,
                           samesite="strict", secure=is_https(request))


# --- the sign-in forms' CSRF token (no session yet) --------------------------------------


def _valid_nonce(nonce: str | None) -> bool:
    return bool(nonce) and 20 <= len(nonce or "") <= 128


class LoginForm:
    """The double-submit pair of a sign-in form: a random cookie and its HMAC as the field."""

    def __init__(self, request: Request) -> None:
        nonce = request.cookies.get(LOGIN_FORM_COOKIE)
        self.fresh = not _valid_nonce(nonce)
        self.nonce: str = new_token() if self.fresh else str(nonce)

    @property
    def token(self) -> str:
        return keyed_digest(_LOGIN_FORM_PURPOSE, self.nonce)

    def attach(self, response: Response, request: Request) -> Response:
        if self.fresh:
            # Lax, not Strict: arriving from a link elsewhere must not replace the nonce
            # of a form already open in another tab. The field is what proves the origin.
            response.set_cookie(LOGIN_FORM_COOKIE, self.nonce, path=COOKIE_PATH, httponly=True,
                                samesite="lax", secure=is_https(request))
        return response


def _require_same_site(request: Request) -> None:
    """Refuse a POST a browser says came from another site.

    ``Origin: null`` is not proof of anything (the app's ``Referrer-Policy:
    no-referrer`` makes browsers send it on same-origin POSTs too), so it is left
    to ``Sec-Fetch-Site`` and the CSRF token."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise _form_refused("cross_site")
    origin = request.headers.get("origin")
    if origin is not None and origin != "null" \
            and origin != f"{request.url.scheme}://{request.url.netloc}":
        raise _form_refused("cross_origin")


def _login_form_checked(request: Request,
                        csrf_token: Annotated[str, Form(max_length=128)] = "") -> None:
    _require_same_site(request)
    nonce = request.cookies.get(LOGIN_FORM_COOKIE)
    if not _valid_nonce(nonce) or not constant_time_equal(
            keyed_digest(_LOGIN_FORM_PURPOSE, str(nonce)), csrf_token):
        raise _form_refused("csrf")


LoginFormChecked = Annotated[None, Depends(_login_form_checked)]


# --- the signed-in staff member ----------------------------------------------------------


def request_db(request: Request, db: SessionDep) -> Session:
    """Every dashboard route: keep the request's session where refusals can reach it."""
    request.state.dashboard_db = db
    return db


def _signed(request: Request, db: SessionDep) -> Signed:
    return _resolve_signed(request, db, touch=True)


def _resolve_signed(request: Request, db: Session, *, touch: bool) -> Signed:
    token = request.cookies.get(SESSION_COOKIE)
    found = web_sessions.resolve_dashboard_session(db, token, touch=touch)
    if found is None:
        raise SignInRequired(ended=token is not None)
    session, user = found
    actor = Actor(kind="user", id=user.id, org_id=user.org_id, role=user.role,
                  session_id=session.id)
    signed = Signed(actor=actor, session_id=session.id, display_name=user.display_name,
                    role=user.role, csrf_token=web_sessions.csrf_token(session),
                    enrolling=service.needs_mfa_enrolment(db, user))
    request.state.actor = actor
    request.state.dashboard = signed
    return signed


AnySigned = Annotated[Signed, Depends(_signed)]
"""Signed in, possibly still owing the MFA set-up (enrolment pages and sign-out only)."""


def _fully_signed(signed: AnySigned) -> Signed:
    if signed.enrolling:
        raise EnrolmentRequired()
    return signed


SignedIn = Annotated[Signed, Depends(_fully_signed)]


def _polled(request: Request, db: SessionDep) -> Signed:
    signed = _resolve_signed(request, db, touch=False)
    if signed.enrolling:
        raise EnrolmentRequired()
    return signed


PolledSigned = Annotated[Signed, Depends(_polled)]
"""Signed in, for a page's background poll: the session is not marked active by it."""


def allowed(action: str) -> Callable[[Signed], Signed]:
    """A page only some roles may use: to everyone else it does not exist (404)."""

    def check(signed: SignedIn) -> Signed:
        if not signed.can(action):
            raise NotFound("There is nothing at this address.",
                           audit={"event": "access.denied", "action": action})
        return signed

    return check


def _csrf_checked(request: Request, signed: AnySigned,
                  csrf_token: Annotated[str, Form(max_length=128)] = "") -> Signed:
    _require_same_site(request)
    if not constant_time_equal(signed.csrf_token, csrf_token):
        raise _form_refused("csrf")
    return signed


CsrfChecked = Annotated[Signed, Depends(_csrf_checked)]


# --- refusals as pages -------------------------------------------------------------------


def _route_template(request: Request) -> str:
    return str(getattr(request.scope.get("route"), "path", "<unmatched>"))


def refuse(request: Request, exc: DomainError) -> None:
    """Undo the request's work (unless the refusal keeps it) and audit a denial.

    The same rules as the API's handler: 401/403 and refusals that ask for it are
    audited, with ids only."""
    db: Session | None = getattr(request.state, "dashboard_db", None)
    if db is None:
        return
    if not exc.keep_changes:
        db.rollback()
    if exc.audit is None and exc.status not in (401, 403):
        return
    info: dict[str, Any] = dict(exc.audit or {})
    action = str(info.pop("event", None) or ("auth.denied" if exc.status == 401
                                                 else "access.denied"))
    org_id = info.pop("org_id", None)
    object_type = info.pop("object_type", None)
    object_id = info.pop("object_id", None)
    details: dict[str, Any] = {"status": exc.status, "route": _route_template(request),
                               "surface": "dashboard"}
    details.update({k: v for k, v in info.items() if isinstance(v, str | int | bool)})
    actor: Actor | None = getattr(request.state, "actor", None)
    audit.record(db, actor, action, outcome="denied", org_id=org_id, object_type=object_type,
                 object_id=object_id, details=details)


_REFUSAL_TITLES = {401: "Sign-in needed", 403: "Not allowed", 404: "Not found",
                   409: "Conflict", 422: "Check the form", 429: "Please wait"}


def _refusal_page(request: Request, exc: DomainError) -> Response:
    refuse(request, exc)
    # A 404 says nothing about why: the record may exist outside the caller's reach.
    message = "There is nothing at this address." if exc.status == 404 else exc.detail
    return render(request, "error.html", title=_REFUSAL_TITLES.get(exc.status, "Refused"),
                  message=message, status_code=exc.status, headers=exc.headers)


def _invalid_request_page(request: Request, exc: RequestValidationError) -> Response:
    if any(tuple(error.get("loc") or ("",))[0] == "path" for error in exc.errors()):
        return render(request, "error.html", title="Not found",
                      message="There is nothing at this address.", status_code=404)
    return render(request, "error.html", title="Check the form",
                  message="Part of the form was missing or too long. Go back and try again.",
                  status_code=422)


class DashboardRoute(UnitOfWorkRoute):
    """Dashboard routes: redirects for sign-in, HTML for refusals, a strict CSP.

    A refusal is turned into its page while the request's unit of work is still open,
    so the denial's audit event (written by ``refuse`` after undoing the request's
    changes) commits with it; then the work is finished like any route's."""

    def get_route_handler(self) -> Callable[[Request], Any]:
        handler = APIRoute.get_route_handler(self)

        async def dashboard_handler(request: Request) -> Response:
            try:
                try:
                    response: Response = await handler(request)
                except SignInRequired as exc:
                    response = RedirectResponse(login_redirect(request, ended=exc.ended),
                                                status_code=303)
                    if exc.ended:
                        clear_session_cookie(response, request)
                except EnrolmentRequired:
                    response = RedirectResponse(ENROL_PATH, status_code=303)
                except DomainError as exc:
                    response = await run_in_threadpool(_refusal_page, request, exc)
                except RequestValidationError as exc:
                    response = await run_in_threadpool(_invalid_request_page, request, exc)
            except BaseException as exc:
                await end_request_work(request.scope, exc)
                raise
            await end_request_work(request.scope)
            response.headers["content-security-policy"] = DASHBOARD_CSP
            return response

        return dashboard_handler
