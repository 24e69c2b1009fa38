"""Dashboard pages: thin adapters over the identity services (no rules of their own).

Every page needs a live dashboard session except the sign-in pages and the
invitation page. A form that changes something carries the session's CSRF token;
after success it redirects (303) to a page that says what happened, except where
a secret is shown once (recovery codes, an invitation token, a client secret):
that page is the POST's own answer and is never stored (``Cache-Control: no-store``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import urlencode
from uuid import UUID

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Form, Query, Request, Response
from starlette.responses import RedirectResponse

from app.core.access import PARTNER_SCOPES, ROLES, mfa_required
from app.core.errors import Conflict, DomainError, Forbidden, Invalid
from app.core.pagination import PageParams, SortKey, paginate
from app.dashboard.auth import (
    ENROL_PATH,
    HOME_PATH,
    LOGIN_PATH,
    PENDING_LOGIN_COOKIE,
    SECOND_FACTOR_PATH,
    SESSION_COOKIE,
    AnySigned,
    CsrfChecked,
    DashboardRoute,
    LoginForm,
    LoginFormChecked,
    Signed,
    SignedIn,
    allowed,
    clear_pending_login_cookie,
    clear_session_cookie,
    client_address,
    refuse,
    request_db,
    safe_return_path,
    set_pending_login_cookie,
    set_session_cookie,
)
from app.dashboard.web import ROLE_LABELS, render
from app.db import SessionDep
from app.identity import partners, service, web_sessions
from app.identity.models import AuthSession, Org, PartnerApp, StaffUser
from app.settings import get_settings

router = APIRouter(prefix="/dashboard", route_class=DashboardRoute, include_in_schema=False,
                   dependencies=[Depends(request_db)])

UsersAdmin = Annotated[Signed, Depends(allowed("users:manage"))]
PartnerAppsAdmin = Annotated[Signed, Depends(allowed("partner_apps:manage"))]

PAGE_SIZE = 50
Cursor = Annotated[str | None, Query(max_length=1024)]
Done = Annotated[str | None, Query(max_length=40)]

# Notes a redirect may ask a page to show: fixed codes, so no data ever rides in a URL.
LOGIN_NOTES = {
    "ended": "Your session has ended (it was idle for too long, reached its time limit or "
             "was ended elsewhere). Sign in again.",
    "signed-out": "You have signed out.",
    "signin-expired": "The sign-in took too long. Enter your password again.",
    "password-set": "Your password is set. You can sign in now.",
}
DONE_NOTES = {
    "password-changed": "Your password has been changed. Your other sessions have ended.",
    "session-ended": "The session has ended.",
    "role-changed": "The role has been changed; their sessions have ended.",
    "deactivated": "The account is deactivated; its sessions have ended.",
    "reactivated": "The account is active again.",
    "mfa-reset": "MFA has been reset; they set it up again at their next sign-in.",
    "app-disabled": "The partner app is disabled; its access tokens stopped working.",
    "app-enabled": "The partner app is enabled again.",
}


def _form_status(exc: DomainError) -> int:
    # A sign-in form answered with 401 would need a WWW-Authenticate challenge.
    return 400 if exc.status == 401 else exc.status


def _redirect(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


# --- sign-in -----------------------------------------------------------------------------


def _login_page(request: Request, form: LoginForm, *, status_code: int = 200,
                problem: DomainError | None = None, email: str = "",
                note: str | None = None, back: str | None = None) -> Response:
    response = render(request, "login.html", title="Sign in", csrf_token=form.token,
                      next_path=safe_return_path(back),
                      email=email, note=LOGIN_NOTES.get(note or ""), problem=problem,
                      status_code=status_code,
                      headers=problem.headers if problem is not None else None)
    return form.attach(response, request)


@router.get("/login")
def login_page(request: Request, db: SessionDep,
               note: Annotated[str | None, Query(max_length=40)] = None,
               next_path: Annotated[str | None, Query(alias="next", max_length=2000)] = None
               ) -> Response:
    """The sign-in form (a signed-in visitor goes straight on). ``next`` is the page to
    return to afterwards, kept only when it is a plain dashboard path."""
    if web_sessions.resolve_dashboard_session(db, request.cookies.get(SESSION_COOKIE)):
        return _redirect(safe_return_path(next_path) or HOME_PATH)
    return _login_page(request, LoginForm(request), note=note, back=next_path)


def _end_previous_session(request: Request, db: SessionDep) -> None:
    """Signing in from a browser that still holds a session ends that session first."""
    found = web_sessions.resolve_dashboard_session(db, request.cookies.get(SESSION_COOKIE))
    if found is not None:
        web_sessions.end_dashboard_session(db, found[0])


def _open_session(request: Request, db: SessionDep, user: StaffUser,
                  back: str | None = None) -> Response:
    _end_previous_session(request, db)
    _session, token = web_sessions.start_dashboard_session(
        db, user, user_agent=request.headers.get("user-agent"))
    target = ENROL_PATH if service.needs_mfa_enrolment(db, user) \
        else safe_return_path(back) or HOME_PATH
    response = _redirect(target)
    set_session_cookie(response, request, token)
    if PENDING_LOGIN_COOKIE in request.cookies:
        clear_pending_login_cookie(response, request)
    return response


@router.post("/login")
def login_submit(request: Request, db: SessionDep, _form: LoginFormChecked,
                 email: Annotated[str, Form(max_length=254)] = "",
                 password: Annotated[str, Form(max_length=1024)] = "",
                 next_path: Annotated[str, Form(alias="next", max_length=2000)] = ""
                 ) -> Response:
    """Step one: the password. With MFA on, step two asks for the code."""
    form = LoginForm(request)
    back = safe_return_path(next_path)
    try:
        step = web_sessions.check_password(db, email=email, password=password,
                                           address=client_address(request))
    except DomainError as exc:
        refuse(request, exc)
        return _login_page(request, form, status_code=_form_status(exc), problem=exc,
                           email=email, back=back)
    if step.second_factor_needed:
        response = _redirect(SECOND_FACTOR_PATH + (f"?{urlencode({'next': back})}"
                                                   if back else ""))
        set_pending_login_cookie(response, request, web_sessions.issue_pending_login(step.user))
        return response
    return _open_session(request, db, step.user, back)


def _second_factor_page(request: Request, form: LoginForm, *, status_code: int = 200,
                        problem: DomainError | None = None,
                        back: str | None = None) -> Response:
    response = render(request, "login_mfa.html", title="Enter your code",
                      csrf_token=form.token, problem=problem, status_code=status_code,
                      next_path=safe_return_path(back),
                      headers=problem.headers if problem is not None else None)
    return form.attach(response, request)


def _signin_expired(request: Request) -> Response:
    response = _redirect(f"{LOGIN_PATH}?note=signin-expired")
    clear_pending_login_cookie(response, request)
    return response


@router.get("/login/mfa")
def second_factor_page(request: Request, db: SessionDep,
                       next_path: Annotated[str | None, Query(alias="next",
                                                              max_length=2000)] = None
                       ) -> Response:
    """Step two: a code from the authenticator app, or a recovery code."""
    if web_sessions.pending_login_user(db, request.cookies.get(PENDING_LOGIN_COOKIE)) is None:
        return _redirect(LOGIN_PATH) if PENDING_LOGIN_COOKIE not in request.cookies \
            else _signin_expired(request)
    return _second_factor_page(request, LoginForm(request), back=next_path)


@router.post("/login/mfa")
def second_factor_submit(request: Request, db: SessionDep, _form: LoginFormChecked,
                         code: Annotated[str, Form(max_length=64)] = "",
                         next_path: Annotated[str, Form(alias="next", max_length=2000)] = ""
                         ) -> Response:
    user = web_sessions.pending_login_user(db, request.cookies.get(PENDING_LOGIN_COOKIE))
    if user is None:
        return _signin_expired(request)
    try:
        web_sessions.check_pending_second_factor(db, user, code=code,
                                                 address=client_address(request))
    except DomainError as exc:
        refuse(request, exc)
        return _second_factor_page(request, LoginForm(request), problem=exc,
                                   status_code=_form_status(exc), back=next_path)
    return _open_session(request, db, user, next_path)


@router.post("/logout")
def logout(request: Request, db: SessionDep, signed: CsrfChecked) -> Response:
    """Sign out: the session is revoked and the cookie cleared."""
    session = db.get(AuthSession, signed.session_id)
    if session is not None:
        web_sessions.end_dashboard_session(db, session)
    response = _redirect(f"{LOGIN_PATH}?note=signed-out")
    clear_session_cookie(response, request)
    return response


# --- invitations -------------------------------------------------------------------------


def _invitation_page(request: Request, form: LoginForm, *, status_code: int = 200,
                     problem: DomainError | None = None) -> Response:
    response = render(request, "invitation.html", title="Accept an invitation",
                      csrf_token=form.token, problem=problem, status_code=status_code)
    return form.attach(response, request)


@router.get("/invitation")
def invitation_page(request: Request) -> Response:
    """Choose the first password of an invited account (the token is typed, never in a URL)."""
    return _invitation_page(request, LoginForm(request))


@router.post("/invitation")
def invitation_submit(request: Request, db: SessionDep, _form: LoginFormChecked,
                      token: Annotated[str, Form(max_length=200)] = "",
                      password: Annotated[str, Form(max_length=1024)] = "",
                      password_again: Annotated[str, Form(max_length=1024)] = "") -> Response:
    form = LoginForm(request)
    if password != password_again:
        return _invitation_page(request, form, status_code=422, problem=_mismatch("password"))
    try:
        service.accept_invitation(db, token=token.strip(), password=password)
    except DomainError as exc:
        refuse(request, exc)
        return _invitation_page(request, form, status_code=_form_status(exc), problem=exc)
    return _redirect(f"{LOGIN_PATH}?note=password-set")


def _mismatch(field: str) -> Invalid:
    return Invalid("The two passwords are not the same.",
                   errors=[{"field": f"{field}_again", "message": "not the same as above"}])


# --- home, sessions, security ------------------------------------------------------------


@router.get("")
def home(request: Request, db: SessionDep, signed: SignedIn) -> Response:
    """The shell: who is signed in and where they can go."""
    user = db.get(StaffUser, signed.actor.id)
    org = db.get(Org, signed.actor.org_id)
    settings = get_settings()
    return render(request, "home.html", title="Home", user=user, org=org,
                  idle_minutes=round(settings.dashboard_idle_minutes),
                  absolute_hours=round(settings.dashboard_absolute_hours))


def _sessions_page(request: Request, db: SessionDep, signed: Signed, *,
                   note: str | None = None) -> Response:
    rows = list(db.scalars(service.list_sessions(signed.actor)
                           .order_by(AuthSession.created_at.desc(), AuthSession.id)
                           .limit(200)))
    return render(request, "sessions.html", title="My sessions", sessions=rows,
                  current_id=signed.session_id, note=note)


@router.get("/sessions")
def sessions_page(request: Request, db: SessionDep, signed: SignedIn,
                  done: Done = None) -> Response:
    """Your sessions still in force (dashboard and API), each of which you can end."""
    return _sessions_page(request, db, signed, note=DONE_NOTES.get(done or ""))


@router.post("/sessions/{session_id}/end")
def end_session(request: Request, session_id: UUID, db: SessionDep, signed: SignedIn,
                _csrf: CsrfChecked) -> Response:
    service.revoke_own_session(db, signed.actor, session_id)
    if session_id == signed.session_id:
        response = _redirect(f"{LOGIN_PATH}?note=signed-out")
        clear_session_cookie(response, request)
        return response
    return _redirect("/dashboard/sessions?done=session-ended")


def _security_page(request: Request, db: SessionDep, signed: Signed, *,
                   status_code: int = 200, problem: DomainError | None = None,
                   note: str | None = None) -> Response:
    user = db.get(StaffUser, signed.actor.id)
    org = db.get(Org, signed.actor.org_id)
    assert user is not None and org is not None
    return render(request, "security.html", title="Security", user=user,
                  mfa_required=mfa_required(user.role, org.require_mfa_for_all),
                  note=note, problem=problem, status_code=status_code)


@router.get("/security")
def security_page(request: Request, db: SessionDep, signed: SignedIn,
                  done: Done = None) -> Response:
    """MFA status and the password change form."""
    return _security_page(request, db, signed, note=DONE_NOTES.get(done or ""))


@router.post("/security/password")
def change_password(request: Request, db: SessionDep, signed: SignedIn, _csrf: CsrfChecked,
                    current_password: Annotated[str, Form(max_length=1024)] = "",
                    new_password: Annotated[str, Form(max_length=1024)] = "",
                    new_password_again: Annotated[str, Form(max_length=1024)] = "",
                    ) -> Response:
    if new_password != new_password_again:
        return _security_page(request, db, signed, status_code=422,
                              problem=_mismatch("new_password"))
    try:
        service.change_password(db, signed.actor, current_password=current_password,
                                new_password=new_password)
    except DomainError as exc:
        refuse(request, exc)
        return _security_page(request, db, signed, status_code=exc.status, problem=exc)
    return _redirect("/dashboard/security?done=password-changed")


def _mfa_page(request: Request, db: SessionDep, signed: Signed, *, stage: str,
              status_code: int = 200, problem: DomainError | None = None,
              **context: Any) -> Response:
    user = db.get(StaffUser, signed.actor.id)
    assert user is not None
    return render(request, "mfa.html", title="Set up two-step sign-in", user=user, stage=stage,
                  problem=problem, status_code=status_code, **context)


@router.get("/security/mfa")
def mfa_page(request: Request, db: SessionDep, signed: AnySigned) -> Response:
    """MFA enrolment; an account that must use MFA can reach nothing else until done."""
    return _mfa_page(request, db, signed, stage="intro")


@router.post("/security/mfa")
def mfa_start(request: Request, db: SessionDep, signed: CsrfChecked) -> Response:
    try:
        enrolment = service.start_mfa_enrolment(db, signed.actor)
    except Conflict as exc:
        refuse(request, exc)
        return _mfa_page(request, db, signed, stage="intro", status_code=409, problem=exc)
    return _mfa_page(request, db, signed, stage="scan", secret=enrolment.secret,
                     qr_svg=enrolment.qr_svg_data_uri)


@router.post("/security/mfa/confirm")
def mfa_confirm(request: Request, db: SessionDep, signed: CsrfChecked,
                code: Annotated[str, Form(max_length=64)] = "") -> Response:
    try:
        codes = service.confirm_mfa_enrolment(db, signed.actor, code=code)
    except (Invalid, Conflict) as exc:
        refuse(request, exc)
        return _mfa_page(request, db, signed, stage="scan", status_code=exc.status,
                         problem=exc)
    # From here on the whole dashboard is open: show the navigation on this very page.
    request.state.dashboard = dataclasses.replace(signed, enrolling=False)
    return _mfa_page(request, db, signed, stage="codes", recovery_codes=codes)


# --- admin: users ------------------------------------------------------------------------


def _page(db: SessionDep, statement: sa.Select[Any], model: Any, *, listing: str,
          cursor: str | None) -> tuple[list[Any], str | None]:
    # Keyed on creation time and id: a cursor (it rides in the URL) holds no name or email.
    return paginate(db, statement, listing=listing,
                    keys=[SortKey(model.created_at), SortKey(model.id)],
                    params=PageParams(limit=PAGE_SIZE, cursor=cursor or None))


def _users_page(request: Request, db: SessionDep, signed: Signed, *, cursor: str | None = None,
                status_code: int = 200, problem: DomainError | None = None,
                note: str | None = None, values: dict[str, str] | None = None) -> Response:
    rows, next_cursor = _page(db, service.readable_users(signed.actor), StaffUser,
                              listing="dashboard-users", cursor=cursor)
    return render(request, "users.html", title="Users", users=rows, next_cursor=next_cursor,
                  roles=[(role, ROLE_LABELS[role]) for role in ROLES],
                  values=values or {"role": "advocate"}, note=note, problem=problem,
                  status_code=status_code)


@router.get("/users")
def users_page(request: Request, db: SessionDep, signed: UsersAdmin, cursor: Cursor = None,
               done: Done = None) -> Response:
    """Staff of the agency, and the form to add one (admins)."""
    return _users_page(request, db, signed, cursor=cursor, note=DONE_NOTES.get(done or ""))


@router.post("/users")
def create_user(request: Request, db: SessionDep, signed: UsersAdmin, _csrf: CsrfChecked,
                display_name: Annotated[str, Form(max_length=200)] = "",
                email: Annotated[str, Form(max_length=254)] = "",
                role: Annotated[str, Form(max_length=20)] = "",
                password: Annotated[str, Form(max_length=1024)] = "") -> Response:
    org = db.get(Org, signed.actor.org_id)
    assert org is not None
    try:
        if not display_name.strip():
            raise Invalid("Give the person's name as colleagues know it.",
                          errors=[{"field": "display_name", "message": "required"}])
        created = service.create_user(db, signed.actor, org=org, email=email,
                                      display_name=display_name, role=role,
                                      password=password or None)
    except DomainError as exc:
        refuse(request, exc)
        return _users_page(request, db, signed, status_code=exc.status, problem=exc,
                           values={"display_name": display_name, "email": email,
                                   "role": role})
    return render(request, "user_created.html", title="User added", user=created.user,
                  invitation_token=created.invitation_token,
                  role_label=ROLE_LABELS.get(created.user.role, created.user.role))


def _user_page(request: Request, db: SessionDep, signed: Signed, user_id: UUID, *,
               status_code: int = 200, problem: DomainError | None = None,
               note: str | None = None) -> Response:
    user = service.get_user(db, signed.actor, user_id)
    return render(request, "user_detail.html", title=f"User: {user.display_name}", user=user,
                  roles=[(role, ROLE_LABELS[role]) for role in ROLES], is_self=user.id ==
                  signed.actor.id, note=note, problem=problem, status_code=status_code)


@router.get("/users/{user_id}")
def user_page(request: Request, user_id: UUID, db: SessionDep, signed: UsersAdmin,
              done: Done = None) -> Response:
    """One colleague: role, status and MFA reset (admins)."""
    return _user_page(request, db, signed, user_id, note=DONE_NOTES.get(done or ""))


def _user_change(request: Request, db: SessionDep, signed: Signed, user_id: UUID,
                 change: Callable[[], object], done: str) -> Response:
    try:
        change()
    except (Conflict, Invalid, Forbidden) as exc:
        refuse(request, exc)
        return _user_page(request, db, signed, user_id, status_code=exc.status, problem=exc)
    return _redirect(f"/dashboard/users/{user_id}?done={done}")


@router.post("/users/{user_id}/role")
def change_role(request: Request, user_id: UUID, db: SessionDep, signed: UsersAdmin,
                _csrf: CsrfChecked, role: Annotated[str, Form(max_length=20)] = "") -> Response:
    return _user_change(request, db, signed, user_id,
                        lambda: service.update_user(db, signed.actor, user_id, role=role),
                        "role-changed")


@router.post("/users/{user_id}/status")
def change_status(request: Request, user_id: UUID, db: SessionDep, signed: UsersAdmin,
                  _csrf: CsrfChecked, is_active: Annotated[bool, Form()]) -> Response:
    return _user_change(request, db, signed, user_id,
                        lambda: service.update_user(db, signed.actor, user_id,
                                                    is_active=is_active),
                        "reactivated" if is_active else "deactivated")


@router.post("/users/{user_id}/mfa-reset")
def reset_mfa(request: Request, user_id: UUID, db: SessionDep, signed: UsersAdmin,
              _csrf: CsrfChecked,
              password: Annotated[str, Form(max_length=1024)] = "") -> Response:
    return _user_change(request, db, signed, user_id,
                        lambda: service.admin_reset_mfa(db, signed.actor, user_id,
                                                        password=password),
                        "mfa-reset")


# --- admin: partner apps -----------------------------------------------------------------


def _partner_apps_page(request: Request, db: SessionDep, signed: Signed, *,
                       cursor: str | None = None, status_code: int = 200,
                       problem: DomainError | None = None, note: str | None = None,
                       values: dict[str, Any] | None = None) -> Response:
    rows, next_cursor = _page(db, partners.readable_partner_apps(signed.actor), PartnerApp,
                              listing="dashboard-partner-apps", cursor=cursor)
    return render(request, "partner_apps.html", title="Partner apps", apps=rows,
                  next_cursor=next_cursor, all_scopes=PARTNER_SCOPES,
                  values=values or {"name": "", "scopes": []}, note=note, problem=problem,
                  status_code=status_code)


@router.get("/partner-apps")
def partner_apps_page(request: Request, db: SessionDep, signed: PartnerAppsAdmin,
                      cursor: Cursor = None, done: Done = None) -> Response:
    """Other agencies' software with API access, and the form to register one (admins)."""
    return _partner_apps_page(request, db, signed, cursor=cursor,
                              note=DONE_NOTES.get(done or ""))


@router.post("/partner-apps")
def create_partner_app(request: Request, db: SessionDep, signed: PartnerAppsAdmin,
                       _csrf: CsrfChecked, name: Annotated[str, Form(max_length=200)] = "",
                       scopes: Annotated[list[str] | None, Form()] = None) -> Response:
    org = db.get(Org, signed.actor.org_id)
    assert org is not None
    chosen = [scope[:40] for scope in (scopes or [])][:10]
    try:
        app, secret = partners.create_partner_app(db, signed.actor, org=org, name=name,
                                                  scopes=chosen)
    except DomainError as exc:
        refuse(request, exc)
        return _partner_apps_page(request, db, signed, status_code=exc.status, problem=exc,
                                  values={"name": name, "scopes": chosen})
    return render(request, "partner_app_created.html", title="Partner app registered",
                  app=app, client_secret=secret)


@router.post("/partner-apps/{app_id}/status")
def change_partner_app_status(request: Request, app_id: UUID, db: SessionDep,
                              signed: PartnerAppsAdmin, _csrf: CsrfChecked,
                              is_active: Annotated[bool, Form()]) -> Response:
    partners.update_partner_app(db, signed.actor, app_id, is_active=is_active)
    done = "app-enabled" if is_active else "app-disabled"
    return _redirect(f"/dashboard/partner-apps?done={done}")

