"""Dashboard pages through the real app (no browser): access, sign-in, CSRF, timeouts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

import pytest
import sqlalchemy as sa
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlmodel import Session

from app.clients import service as clients
from app.core.access import Actor
from app.core.crypto import token_digest
from app.core.passwords import verify_password
from app.dashboard.auth import LOGIN_FORM_COOKIE, PENDING_LOGIN_COOKIE, SESSION_COOKIE
from app.dashboard.evidence_pages import CONTENT_POLICY as EVIDENCE_FILE_POLICY
from app.dashboard.web import DASHBOARD_CSP
from app.db import utcnow
from app.identity.models import AuthSession, PartnerApp, StaffUser
from app.safety_plans import service as plans
from tests.dashboard.casefile_records import make_case_file
from tests.dashboard.helpers import csrf_from, enable_mfa, events, page_csrf, sign_in
from tests.dashboard.referral_records import make_directory_records, make_referral_of
from tests.support.identity import PASSWORD, make_org, make_user

NEW_PASSWORD = "a brand new fictional passphrase 2026"
ROLES = ("admin", "supervisor", "advocate", "auditor")
CALLERS = ("anonymous", *ROLES)


# --- who may open which page: every GET route of the dashboard has a row --------------------


@dataclass(frozen=True)
class Page:
    path: str
    expected: dict[str, int]
    # A 200 of a document (a printed plan, an evidence file): its type and policy.
    media: str = "text/html"
    policy: str = DASHBOARD_CSP


SIGNED_IN = {role: 200 for role in ROLES}
ADMINS_ONLY = {"admin": 200, "supervisor": 404, "advocate": 404, "auditor": 404}
# Client pages: the advocate's own client (a supervisor reaches every client of the agency).
CLIENT_STAFF = {"anonymous": 303, "admin": 404, "supervisor": 200, "advocate": 200,
                "auditor": 404}
# The directory: staff whose role reads it; its forms for those who keep listings.
DIRECTORY_READERS = {"anonymous": 303, "admin": 200, "supervisor": 200, "advocate": 200,
                     "auditor": 404}
DIRECTORY_KEEPERS = {"anonymous": 303, "admin": 200, "supervisor": 200, "advocate": 404,
                     "auditor": 404}
# A report still waiting for its worker: nothing to download yet (409) for those in reach.
REPORT_NOT_BUILT = {"anonymous": 303, "admin": 404, "supervisor": 409, "advocate": 409,
                    "auditor": 404}

PAGES = [
    # Public pages. A signed-in visitor of the sign-in page goes home; the code step
    # without a pending sign-in goes back to the sign-in page.
    Page("/dashboard/login", {"anonymous": 200} | {role: 303 for role in ROLES}),
    Page("/dashboard/login/mfa", {caller: 303 for caller in CALLERS}),
    Page("/dashboard/invitation", {caller: 200 for caller in CALLERS}),
    # Everything else needs a session.
    Page("/dashboard", {"anonymous": 303} | SIGNED_IN),
    Page("/dashboard/sessions", {"anonymous": 303} | SIGNED_IN),
    Page("/dashboard/security", {"anonymous": 303} | SIGNED_IN),
    Page("/dashboard/security/mfa", {"anonymous": 303} | SIGNED_IN),
    Page("/dashboard/users", {"anonymous": 303} | ADMINS_ONLY),
    Page("/dashboard/users/{user_id}", {"anonymous": 303} | ADMINS_ONLY),
    Page("/dashboard/partner-apps", {"anonymous": 303} | ADMINS_ONLY),
    Page("/dashboard/clients", CLIENT_STAFF),
    Page("/dashboard/clients/new", CLIENT_STAFF),
    Page("/dashboard/clients/{client_id}", CLIENT_STAFF),
    Page("/dashboard/clients/{client_id}/edit", CLIENT_STAFF),
    Page("/dashboard/clients/{client_id}/plan", CLIENT_STAFF),
    Page("/dashboard/clients/{client_id}/plan/versions", CLIENT_STAFF),
    Page("/dashboard/clients/{client_id}/plan/versions/{version}", CLIENT_STAFF),
    Page("/dashboard/clients/{client_id}/plan/diff", CLIENT_STAFF),
    Page("/dashboard/clients/{client_id}/assessment", CLIENT_STAFF),
    Page("/dashboard/clients/{client_id}/contacts", CLIENT_STAFF),
    Page("/dashboard/clients/{client_id}/plan/print", CLIENT_STAFF, media="application/pdf"),
    Page("/dashboard/clients/{client_id}/incidents", CLIENT_STAFF),
    Page("/dashboard/clients/{client_id}/incidents/new", CLIENT_STAFF),
    Page("/dashboard/clients/{client_id}/incidents/{incident_id}", CLIENT_STAFF),
    Page("/dashboard/clients/{client_id}/incidents/{incident_id}/correct", CLIENT_STAFF),
    Page("/dashboard/clients/{client_id}/incidents/{incident_id}/evidence", CLIENT_STAFF),
    Page("/dashboard/clients/{client_id}/evidence/{evidence_id}", CLIENT_STAFF),
    Page("/dashboard/clients/{client_id}/evidence/{evidence_id}/content", CLIENT_STAFF,
         media="image/jpeg", policy=EVIDENCE_FILE_POLICY),
    Page("/dashboard/clients/{client_id}/orders", CLIENT_STAFF),
    Page("/dashboard/clients/{client_id}/orders/new", CLIENT_STAFF),
    Page("/dashboard/clients/{client_id}/orders/{order_id}", CLIENT_STAFF),
    Page("/dashboard/clients/{client_id}/court-dates", CLIENT_STAFF),
    Page("/dashboard/clients/{client_id}/court-dates/new", CLIENT_STAFF),
    Page("/dashboard/clients/{client_id}/court-dates/{court_date_id}", CLIENT_STAFF),
    Page("/dashboard/clients/{client_id}/timeline", CLIENT_STAFF),
    # The directory and referrals (an own-agency listing; a referral of the client).
    Page("/dashboard/resources", DIRECTORY_READERS),
    Page("/dashboard/resources/new", DIRECTORY_KEEPERS),
    Page("/dashboard/resources/{resource_id}", DIRECTORY_READERS),
    Page("/dashboard/resources/{resource_id}/edit", DIRECTORY_KEEPERS),
    Page("/dashboard/referrals", CLIENT_STAFF),
    Page("/dashboard/clients/{client_id}/referrals", CLIENT_STAFF),
    Page("/dashboard/clients/{client_id}/referrals/new", CLIENT_STAFF),
    Page("/dashboard/clients/{client_id}/referrals/{referral_id}", CLIENT_STAFF),
    Page("/dashboard/clients/{client_id}/referrals/{referral_id}/preview", CLIENT_STAFF),
    Page("/dashboard/partner-apps/{app_id}/webhooks", {"anonymous": 303} | ADMINS_ONLY),
    # Reminders: "My day" and notifications are everyone's own; setting a reminder needs
    # client write access; a reminder is the advocate's own (the service's reach: the
    # agency's for supervisors); the rules are for supervisors and admins.
    Page("/dashboard/my-day", {"anonymous": 303} | SIGNED_IN),
    Page("/dashboard/reminders/new", CLIENT_STAFF),
    Page("/dashboard/reminders/{reminder_id}", CLIENT_STAFF),
    Page("/dashboard/notifications", {"anonymous": 303} | SIGNED_IN),
    Page("/dashboard/notifications/unread-count", {"anonymous": 303} | SIGNED_IN,
         media="application/json"),
    Page("/dashboard/notification-settings", {"anonymous": 303} | SIGNED_IN),
    Page("/dashboard/reminder-rules", {"anonymous": 303, "admin": 200, "supervisor": 200,
                                       "advocate": 404, "auditor": 404}),
    # Reports: of a client in reach (the advocate's own; every client for a supervisor).
    # The agency's funder report is its supervisors' and admins': admins have the list
    # (their funder reports) and the funder form, and no client's report.
    Page("/dashboard/clients/{client_id}/reports/new", CLIENT_STAFF),
    Page("/dashboard/reports", CLIENT_STAFF | {"admin": 200}),
    Page("/dashboard/reports/funder/new", {"anonymous": 303, "admin": 200, "supervisor": 200,
                                           "advocate": 404, "auditor": 404}),
    Page("/dashboard/reports/verify", CLIENT_STAFF),
    Page("/dashboard/reports/{report_id}", CLIENT_STAFF),
    Page("/dashboard/reports/{report_id}/progress", CLIENT_STAFF, media="application/json"),
    Page("/dashboard/reports/{report_id}/download", REPORT_NOT_BUILT),
]


def client_with_plan(db: Session, advocate: StaffUser) -> UUID:
    """A client in ``advocate``'s caseload with a first safety plan."""
    actor = Actor(kind="user", id=advocate.id, org_id=advocate.org_id, role=advocate.role)
    client = clients.create_client(db, actor, personal={"preferred_name": "Page Fictional"})
    plans.create_version(db, actor, client.client.id, content={},
                         review_date=utcnow().date() + timedelta(days=30))
    return client.client.id


def reminder_of(db: Session, user: StaffUser) -> UUID:
    """A reminder assigned to ``user`` (an hour from now), set by themselves."""
    from app.reminders import service as reminders
    from app.reminders.schemas import ReminderCreate

    actor = Actor(kind="user", id=user.id, org_id=user.org_id, role=user.role)
    made = reminders.create_reminder(db, actor, ReminderCreate(
        due_at=utcnow() + timedelta(hours=1), note="Fictional page reminder"))
    return made.reminder.id


def report_of(db: Session, user: StaffUser) -> UUID:
    """A court summary of a client of ``user``'s, queued (no worker has taken it)."""
    from app.reports.models import Report

    report = Report(org_id=user.org_id, client_id=client_with_plan(db, user),
                    kind="court_summary", parameters="", requested_by=user.id)
    db.add(report)
    db.flush()
    return report.id


def dashboard_routes(routes: list[Any]) -> set[tuple[str, str]]:
    """(method, path) of every dashboard route, looking inside included routers."""
    found = set()
    for route in routes:
        if isinstance(route, APIRoute) and route.path.startswith("/dashboard"):
            found |= {(method, route.path) for method in route.methods}
        inner = getattr(route, "original_router", None)
        if inner is not None:
            found |= dashboard_routes(inner.routes)
    return found


def test_every_dashboard_page_has_a_row(app) -> None:
    get_routes = {path for method, path in dashboard_routes(app.routes) if method == "GET"}
    assert get_routes, "the dashboard router is not mounted"
    rows = {page.path for page in PAGES}
    assert not get_routes - rows, f"dashboard pages without a row: {sorted(get_routes - rows)}"
    assert not rows - get_routes, f"rows for pages that do not exist: {sorted(rows - get_routes)}"
    for page in PAGES:
        assert set(page.expected) == set(CALLERS), f"{page.path}: a caller is missing"


@pytest.mark.parametrize(("page", "caller"), [
    pytest.param(page, caller, id=f"{page.path} as {caller}")
    for page in PAGES for caller in CALLERS])
def test_page_access(web: TestClient, db: Session, page: Page, caller: str) -> None:
    org = make_org(db)
    colleague = make_user(db, org, "advocate")
    user = None if caller == "anonymous" else make_user(db, org, caller)
    if user is not None:
        sign_in(web, db, user)
    path = page.path.replace("{user_id}", str(colleague.id))
    if "{resource_id}" in path or "{app_id}" in path:
        path = make_directory_records(db, org).path(path)
    if "{reminder_id}" in path:
        owner = user if caller == "advocate" else colleague
        path = path.replace("{reminder_id}", str(reminder_of(db, owner)))
    if "{report_id}" in path:
        owner = user if caller == "advocate" else colleague
        path = path.replace("{report_id}", str(report_of(db, owner)))
    if "{client_id}" in path:
        owner = user if caller == "advocate" else colleague
        client_id = client_with_plan(db, owner)
        path = path.replace("{client_id}", str(client_id)).replace("{version}", "1")
        if "{referral_id}" in path:
            path = path.replace("{referral_id}", str(make_referral_of(db, owner, client_id)))
        if "_id}" in path:
            path = make_case_file(db, owner, client_id).path(path)
    db.commit()
    response = web.get(path)
    assert response.status_code == page.expected[caller], response.text[:500]
    assert response.headers["content-security-policy"] == (
        page.policy if response.status_code == 200 else DASHBOARD_CSP)
    assert response.headers["cache-control"] == "no-store"
    if response.status_code == 303:
        location = response.headers["location"]
        if caller == "anonymous" or page.path.startswith("/dashboard/login/"):
            # The sign-in page, remembering the page asked for (path only).
            assert urlsplit(location).path == "/dashboard/login"
            assert parse_qs(urlsplit(location).query).get("next", [path])[0] == path
        else:
            assert location == "/dashboard"
    elif response.status_code == 200 and page.media != "text/html":
        assert response.headers["content-type"] == page.media
    else:
        assert response.headers["content-type"].startswith("text/html")
        assert '<html lang="en">' in response.text
    if response.status_code == 404:
        assert "There is nothing at this address." in response.text


def test_admin_pages_do_not_exist_for_others_and_change_nothing(web, db) -> None:
    org = make_org(db)
    sign_in(web, db, make_user(db, org, "supervisor"))
    token = page_csrf(web)
    before = db.scalar(sa.select(sa.func.count()).select_from(StaffUser))
    response = web.post("/dashboard/users", data={
        "csrf_token": token, "display_name": "Fictional Newcomer",
        "email": "newcomer@example.test", "role": "admin"})
    assert response.status_code == 404
    assert db.scalar(sa.select(sa.func.count()).select_from(StaffUser)) == before
    assert events(db, "access.denied")
    home = web.get("/dashboard")
    assert 'href="/dashboard/users"' not in home.text
    assert 'href="/dashboard/partner-apps"' not in home.text


def test_a_colleague_of_another_agency_is_not_found(web, db) -> None:
    admin = make_user(db, make_org(db), "admin")
    stranger = make_user(db, make_org(db), "advocate")
    sign_in(web, db, admin)
    assert web.get(f"/dashboard/users/{stranger.id}").status_code == 404
    assert web.get("/dashboard/users/not-a-uuid").status_code == 404


# --- sign-in ---------------------------------------------------------------------------------


def login(web: TestClient, email: str, password: str = PASSWORD) -> Any:
    token = csrf_from(web.get("/dashboard/login").text)
    return web.post("/dashboard/login", data={"csrf_token": token, "email": email,
                                              "password": password})


def test_wrong_password_and_unknown_email_get_the_same_generic_page(web, db) -> None:
    user = make_user(db, make_org(db), "advocate")
    db.commit()
    wrong = login(web, user.email, "not the password at all")
    unknown = login(web, "nobody@example.test", "not the password at all")
    for response in (wrong, unknown):
        assert response.status_code == 400
        assert "The email address or the password is wrong." in response.text
        assert 'role="alert"' in response.text
        assert SESSION_COOKIE not in response.headers.get("set-cookie", "")
    assert len(events(db, "auth.login_failed")) == 2


def test_sign_in_sets_a_strict_session_cookie(web, db) -> None:
    user = make_user(db, make_org(db), "advocate")
    db.commit()
    response = login(web, user.email.upper())
    assert response.status_code == 303 and response.headers["location"] == "/dashboard"
    cookie = next(c for c in response.headers.get_list("set-cookie")
                  if c.startswith(SESSION_COOKIE + "="))
    flags = [part.strip().lower() for part in cookie.split(";")]
    assert "httponly" in flags and "samesite=lax" in flags and "path=/dashboard" in flags
    assert "secure" not in flags  # plain HTTP here; see the HTTPS test
    assert not any(f.startswith(("max-age", "expires")) for f in flags)
    token = cookie.split(";")[0].split("=", 1)[1]
    session = db.scalar(sa.select(AuthSession).where(
        AuthSession.cookie_digest == token_digest(token)))
    assert session is not None and session.kind == "dashboard"
    assert session.expires_at - session.created_at == timedelta(hours=8)
    assert events(db, "auth.dashboard_login")
    home = web.get("/dashboard")
    assert home.status_code == 200 and user.display_name in home.text


def test_cookies_are_secure_over_https(app, db) -> None:
    user = make_user(db, make_org(db), "advocate")
    db.commit()
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as web:
        response = login(web, user.email)
    cookies = response.headers.get_list("set-cookie")
    session_cookie = next(c for c in cookies if c.startswith(SESSION_COOKIE + "="))
    assert "secure" in [p.strip().lower() for p in session_cookie.split(";")]


def test_sign_in_form_needs_its_csrf_token(web, db) -> None:
    user = make_user(db, make_org(db), "advocate")
    db.commit()
    web.get("/dashboard/login")  # the form cookie is set, but the field is missing
    response = web.post("/dashboard/login", data={"email": user.email, "password": PASSWORD})
    assert response.status_code == 403
    assert SESSION_COOKIE not in response.headers.get("set-cookie", "")
    web.cookies.delete(LOGIN_FORM_COOKIE)  # a token without its cookie is refused too
    stale = csrf_from(login(web, user.email, "wrong").text)
    web.cookies.clear()
    response = web.post("/dashboard/login", data={"csrf_token": stale, "email": user.email,
                                                  "password": PASSWORD})
    assert response.status_code == 403


def test_repeated_failures_are_throttled(web, db) -> None:
    user = make_user(db, make_org(db), "advocate")
    db.commit()
    for _ in range(5):
        assert login(web, user.email, "wrong password guess").status_code == 400
    response = login(web, user.email)
    assert response.status_code == 429
    assert "Try again in" in response.text and int(response.headers["retry-after"]) >= 1


def test_sign_in_with_mfa_takes_two_steps(web, db) -> None:
    user = make_user(db, make_org(db), "advocate")
    totp, _ = enable_mfa(db, user)
    first = login(web, user.email)
    assert first.status_code == 303 and first.headers["location"] == "/dashboard/login/mfa"
    assert SESSION_COOKIE not in first.headers.get("set-cookie", "")
    assert PENDING_LOGIN_COOKIE in first.headers["set-cookie"]
    assert web.get("/dashboard").status_code == 303  # not signed in yet

    form = web.get("/dashboard/login/mfa")
    assert form.status_code == 200 and 'autocomplete="one-time-code"' in form.text
    wrong = web.post("/dashboard/login/mfa", data={"csrf_token": csrf_from(form.text),
                                                   "code": "000000"})
    assert wrong.status_code == 400 and "That code is not valid." in wrong.text
    assert events(db, "auth.mfa_failed")
    right = web.post("/dashboard/login/mfa", data={"csrf_token": csrf_from(form.text),
                                                   "code": totp.now()})
    assert right.status_code == 303 and right.headers["location"] == "/dashboard"
    assert SESSION_COOKIE in right.headers["set-cookie"]
    assert web.get("/dashboard").status_code == 200


def test_the_code_step_refuses_a_tampered_or_missing_marker(web, db) -> None:
    user = make_user(db, make_org(db), "advocate")
    totp, _ = enable_mfa(db, user)
    login(web, user.email)
    marker = web.cookies.get(PENDING_LOGIN_COOKIE)
    token = csrf_from(web.get("/dashboard/login/mfa").text)
    forged = marker[:-1] + ("0" if marker[-1] != "0" else "1")
    web.cookies.delete(PENDING_LOGIN_COOKIE)
    web.cookies.set(PENDING_LOGIN_COOKIE, forged, path="/dashboard/login")
    response = web.post("/dashboard/login/mfa", data={"csrf_token": token, "code": totp.now()})
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard/login?note=signin-expired"
    assert SESSION_COOKIE not in response.headers.get("set-cookie", "")


def test_wrong_codes_are_throttled(web, db) -> None:
    user = make_user(db, make_org(db), "advocate")
    enable_mfa(db, user)
    login(web, user.email)
    token = csrf_from(web.get("/dashboard/login/mfa").text)
    statuses = [web.post("/dashboard/login/mfa", data={"csrf_token": token, "code": "123456"})
                .status_code for _ in range(7)]
    assert statuses[:5] == [400] * 5 and 429 in statuses


def test_an_admin_must_enrol_mfa_before_anything_else(web, db) -> None:
    import pyotp

    admin = make_user(db, make_org(db), "admin")
    db.commit()
    response = login(web, admin.email)
    assert response.headers["location"] == "/dashboard/security/mfa"
    for path in ("/dashboard", "/dashboard/users", "/dashboard/security"):
        blocked = web.get(path)
        assert blocked.status_code == 303, path
        assert blocked.headers["location"] == "/dashboard/security/mfa"
    intro = web.get("/dashboard/security/mfa")
    assert intro.status_code == 200 and "Your role must use two-step sign-in" in intro.text
    assert 'href="/dashboard/users"' not in intro.text
    scan = web.post("/dashboard/security/mfa", data={"csrf_token": csrf_from(intro.text)})
    assert scan.status_code == 200 and 'src="data:image/svg+xml;base64,' in scan.text
    secret = scan.text.split('id="mfa-secret" class="secret">', 1)[1].split("<", 1)[0]
    wrong = web.post("/dashboard/security/mfa/confirm",
                     data={"csrf_token": csrf_from(scan.text), "code": "000000"})
    assert wrong.status_code == 422 and "That code is not valid." in wrong.text
    done = web.post("/dashboard/security/mfa/confirm",
                    data={"csrf_token": csrf_from(scan.text), "code": pyotp.TOTP(secret).now()})
    assert done.status_code == 200
    assert done.text.count("<li><code>") == 10  # the recovery codes, shown this once
    assert 'href="/dashboard/users"' in done.text
    assert web.get("/dashboard/users").status_code == 200
    db.refresh(admin)
    assert admin.mfa_enabled


def test_an_invited_colleague_chooses_a_password_and_signs_in(web, db) -> None:
    admin = make_user(db, make_org(db), "admin")
    sign_in(web, db, admin)
    created = web.post("/dashboard/users", data={
        "csrf_token": page_csrf(web, "/dashboard/users"), "display_name": "Fictional Invitee",
        "email": "invitee@example.test", "role": "advocate", "password": ""})
    assert created.status_code == 200
    invitation = created.text.split('id="invitation-token" class="secret">', 1)[1].split("<")[0]
    web.cookies.clear()
    form = web.get("/dashboard/invitation")
    accepted = web.post("/dashboard/invitation", data={
        "csrf_token": csrf_from(form.text), "token": invitation, "password": NEW_PASSWORD,
        "password_again": NEW_PASSWORD})
    assert accepted.status_code == 303
    assert accepted.headers["location"] == "/dashboard/login?note=password-set"
    assert login(web, "invitee@example.test", NEW_PASSWORD).status_code == 303


# --- CSRF and cross-site requests --------------------------------------------------------


def change_password_form(token: str | None) -> dict[str, str]:
    data = {"current_password": PASSWORD, "new_password": NEW_PASSWORD,
            "new_password_again": NEW_PASSWORD}
    return data | ({"csrf_token": token} if token is not None else {})


@pytest.mark.parametrize("token", [None, "", "0" * 64, "not-even-hex"])
def test_a_form_without_the_right_csrf_token_changes_nothing(web, db, token) -> None:
    user = make_user(db, make_org(db), "advocate")
    sign_in(web, db, user)
    response = web.post("/dashboard/security/password", data=change_password_form(token))
    assert response.status_code == 403
    assert "could not be accepted" in response.text
    db.refresh(user)
    assert verify_password(user.password_hash, PASSWORD)
    denied = events(db, "access.denied")
    assert denied and denied[-1].details["reason"] == "csrf"


def test_one_sessions_token_does_not_work_for_another(web, db) -> None:
    user = make_user(db, make_org(db), "advocate")
    sign_in(web, db, user)
    other_token = page_csrf(web)
    sign_in(web, db, user)  # a new session: new CSRF secret
    response = web.post("/dashboard/security/password", data=change_password_form(other_token))
    assert response.status_code == 403


@pytest.mark.parametrize("headers", [
    {"origin": "https://evil.example"},
    {"sec-fetch-site": "cross-site"},
    {"sec-fetch-site": "same-site"},
])
def test_cross_site_posts_are_refused(web, db, headers) -> None:
    user = make_user(db, make_org(db), "advocate")
    sign_in(web, db, user)
    token = page_csrf(web)
    response = web.post("/dashboard/security/password", data=change_password_form(token),
                        headers=headers)
    assert response.status_code == 403
    db.refresh(user)
    assert verify_password(user.password_hash, PASSWORD)


def test_same_origin_posts_pass(web, db) -> None:
    user = make_user(db, make_org(db), "advocate")
    other = sign_in(web, db, user)
    sign_in(web, db, user)
    token = page_csrf(web)
    response = web.post("/dashboard/security/password", data=change_password_form(token),
                        headers={"origin": "http://testserver", "sec-fetch-site": "same-origin"})
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard/security?done=password-changed"
    db.refresh(user)
    db.refresh(other)
    assert verify_password(user.password_hash, NEW_PASSWORD)
    assert other.revoked_at is not None and other.revoked_reason == "password_changed"
    assert web.get("/dashboard/security").status_code == 200  # this session stays


# --- session lifetime --------------------------------------------------------------------


def test_an_idle_session_ends(web, db) -> None:
    user = make_user(db, make_org(db), "advocate")
    session = sign_in(web, db, user)
    session.last_seen_at = utcnow() - timedelta(minutes=16)
    db.commit()
    response = web.get("/dashboard/sessions")
    assert response.status_code == 303
    assert response.headers["location"] == \
        "/dashboard/login?note=ended&next=%2Fdashboard%2Fsessions"
    assert f'{SESSION_COOKIE}=""' in response.headers["set-cookie"]
    db.refresh(session)
    assert session.revoked_at is not None and session.revoked_reason == "idle"
    assert events(db, "auth.dashboard_idle_expired")
    note = web.get("/dashboard/login?note=ended")
    assert "Your session has ended" in note.text


def test_activity_keeps_a_session_alive(web, db) -> None:
    user = make_user(db, make_org(db), "advocate")
    session = sign_in(web, db, user)
    session.last_seen_at = utcnow() - timedelta(minutes=14)
    db.commit()
    assert web.get("/dashboard").status_code == 200
    db.refresh(session)
    assert utcnow() - session.last_seen_at < timedelta(minutes=1)


def test_a_session_ends_at_its_absolute_limit(web, db) -> None:
    user = make_user(db, make_org(db), "advocate")
    session = sign_in(web, db, user)
    session.created_at = utcnow() - timedelta(hours=8, minutes=1)
    session.expires_at = utcnow() - timedelta(minutes=1)
    db.commit()
    response = web.get("/dashboard")
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard/login?note=ended"
    db.refresh(session)
    assert session.revoked_at is not None and session.revoked_reason == "expired"


def test_an_inactive_account_loses_its_session(web, db) -> None:
    user = make_user(db, make_org(db), "advocate")
    sign_in(web, db, user)
    user.is_active = False
    db.commit()
    assert web.get("/dashboard").status_code == 303


def test_sign_out_revokes_the_session(web, db) -> None:
    user = make_user(db, make_org(db), "advocate")
    session = sign_in(web, db, user)
    home = web.get("/dashboard")
    assert 'action="/dashboard/logout"' in home.text
    response = web.post("/dashboard/logout", data={"csrf_token": csrf_from(home.text)})
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard/login?note=signed-out"
    db.refresh(session)
    assert session.revoked_at is not None and session.revoked_reason == "logout"
    assert events(db, "auth.dashboard_logout")
    assert web.get("/dashboard").status_code == 303


def test_sign_out_needs_the_csrf_token(web, db) -> None:
    session = sign_in(web, db, make_user(db, make_org(db), "advocate"))
    assert web.post("/dashboard/logout", data={}).status_code == 403
    db.refresh(session)
    assert session.revoked_at is None


# --- my sessions, security ---------------------------------------------------------------


def test_my_sessions_lists_and_ends_my_own_sessions_only(web, db) -> None:
    org = make_org(db)
    user = make_user(db, org, "advocate")
    elsewhere = sign_in(web, db, user)
    current = sign_in(web, db, user)
    someone_else = sign_in(TestClient(web.app), db, make_user(db, org, "advocate"))
    page = web.get("/dashboard/sessions")
    assert page.status_code == 200
    assert str(elsewhere.id) in page.text and str(current.id) in page.text
    assert str(someone_else.id) not in page.text and "this session" in page.text
    token = csrf_from(page.text)
    ended = web.post(f"/dashboard/sessions/{elsewhere.id}/end", data={"csrf_token": token})
    assert ended.status_code == 303
    db.refresh(elsewhere)
    assert elsewhere.revoked_reason == "revoked_by_user"
    refused = web.post(f"/dashboard/sessions/{someone_else.id}/end", data={"csrf_token": token})
    assert refused.status_code == 404
    db.refresh(someone_else)
    assert someone_else.revoked_at is None


def test_a_weak_new_password_is_explained_on_the_form(web, db) -> None:
    user = make_user(db, make_org(db), "advocate")
    sign_in(web, db, user)
    response = web.post("/dashboard/security/password", data={
        "csrf_token": page_csrf(web), "current_password": PASSWORD, "new_password": "short",
        "new_password_again": "short"})
    assert response.status_code == 422
    assert "password policy" in response.text and 'aria-invalid="true"' in response.text
    wrong = web.post("/dashboard/security/password", data={
        "csrf_token": page_csrf(web), "current_password": "not it", "new_password": NEW_PASSWORD,
        "new_password_again": NEW_PASSWORD})
    assert wrong.status_code == 403 and "current password is wrong" in wrong.text


# --- admin: users and partner apps -------------------------------------------------------


def test_an_admin_manages_a_colleague(web, db) -> None:
    org = make_org(db)
    admin = make_user(db, org, "admin")
    colleague = make_user(db, org, "advocate")
    enable_mfa(db, colleague)
    sign_in(web, db, admin)
    path = f"/dashboard/users/{colleague.id}"
    token = page_csrf(web, path)

    assert web.post(f"{path}/role", data={"csrf_token": token, "role": "supervisor"}
                    ).headers["location"] == f"{path}?done=role-changed"
    refused = web.post(f"{path}/mfa-reset", data={"csrf_token": token, "password": "wrong"})
    assert refused.status_code == 403 and "Re-enter your own password" in refused.text
    db.refresh(colleague)
    assert colleague.role == "supervisor" and colleague.mfa_enabled
    assert web.post(f"{path}/mfa-reset", data={"csrf_token": token, "password": PASSWORD}
                    ).status_code == 303
    assert web.post(f"{path}/status", data={"csrf_token": token, "is_active": "false"}
                    ).headers["location"] == f"{path}?done=deactivated"
    db.refresh(colleague)
    assert not colleague.mfa_enabled and not colleague.is_active
    assert "deactivated" in web.get(f"{path}?done=deactivated").text


def test_the_last_admin_cannot_be_removed(web, db) -> None:
    admin = make_user(db, make_org(db), "admin")
    sign_in(web, db, admin)
    path = f"/dashboard/users/{admin.id}"
    response = web.post(f"{path}/role", data={"csrf_token": page_csrf(web, path),
                                              "role": "advocate"})
    assert response.status_code == 409
    assert "at least one active admin" in response.text and 'role="alert"' in response.text
    db.refresh(admin)
    assert admin.role == "admin"


def test_adding_a_user_with_a_taken_email_keeps_the_form(web, db) -> None:
    org = make_org(db)
    admin = make_user(db, org, "admin")
    taken = make_user(db, org, "advocate")
    sign_in(web, db, admin)
    response = web.post("/dashboard/users", data={
        "csrf_token": page_csrf(web, "/dashboard/users"), "display_name": "Fictional Twin",
        "email": taken.email, "role": "advocate"})
    assert response.status_code == 409
    assert 'value="Fictional Twin"' in response.text and 'href="#email"' in response.text


def test_an_admin_registers_and_disables_a_partner_app(web, db) -> None:
    admin = make_user(db, make_org(db), "admin")
    sign_in(web, db, admin)
    token = page_csrf(web, "/dashboard/partner-apps")
    missing = web.post("/dashboard/partner-apps", data={"csrf_token": token,
                                                        "name": "Fictional Shelter App"})
    assert missing.status_code == 422 and 'href="#scopes"' in missing.text
    created = web.post("/dashboard/partner-apps", data={
        "csrf_token": token, "name": "Fictional Shelter App",
        "scopes": ["referrals:read", "referrals:write"]})
    assert created.status_code == 200
    client_id = created.text.split('id="client-id" class="secret">', 1)[1].split("<")[0]
    secret = created.text.split('id="client-secret" class="secret">', 1)[1].split("<")[0]
    app = db.scalar(sa.select(PartnerApp).where(PartnerApp.client_id == client_id))
    assert app is not None and app.client_secret_digest == token_digest(secret)
    assert app.scopes == "referrals:read referrals:write"
    listing = web.get("/dashboard/partner-apps")
    assert client_id in listing.text and secret not in listing.text
    disabled = web.post(f"/dashboard/partner-apps/{app.id}/status",
                        data={"csrf_token": token, "is_active": "false"})
    assert disabled.headers["location"] == "/dashboard/partner-apps?done=app-disabled"
    db.refresh(app)
    assert not app.is_active


def test_a_recovery_code_signs_in_once(web, db) -> None:
    user = make_user(db, make_org(db), "advocate")
    _, codes = enable_mfa(db, user)
    for expected in (303, 400):
        web.cookies.clear()
        login(web, user.email)
        token = csrf_from(web.get("/dashboard/login/mfa").text)
        response = web.post("/dashboard/login/mfa", data={"csrf_token": token,
                                                          "code": codes[0]})
        assert response.status_code == expected


def test_what_people_typed_is_escaped(web, db) -> None:
    org = make_org(db)
    admin = make_user(db, org, "admin")
    colleague = make_user(db, org, "advocate")
    colleague.display_name = '<script>alert("fictional")</script>'
    sign_in(web, db, admin)
    page = web.get("/dashboard/users")
    assert "<script>" not in page.text
    assert "&lt;script&gt;" in page.text
