"""Dashboard test helpers: signed-in clients, CSRF fields, MFA set up through the services."""

from __future__ import annotations

import re
import time

import pyotp
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session

from app.core import audit
from app.core.access import Actor
from app.dashboard.auth import SESSION_COOKIE
from app.identity import service, web_sessions
from app.identity.models import AuthSession, StaffUser

CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_from(html: str) -> str:
    match = CSRF_FIELD.search(html)
    assert match, "no CSRF field on the page"
    return match.group(1)


def sign_in(web: TestClient, db: Session, user: StaffUser) -> AuthSession:
    """A live dashboard session for ``user`` (as after password and MFA), cookie set."""
    if service.needs_mfa_enrolment(db, user):
        user.mfa_enabled = True  # the roles that must use MFA are past that step here
    session, token = web_sessions.start_dashboard_session(db, user, user_agent="pytest")
    db.commit()
    web.cookies.set(SESSION_COOKIE, token, path="/dashboard")
    return session


def page_csrf(web: TestClient, path: str = "/dashboard/security") -> str:
    response = web.get(path)
    assert response.status_code == 200, response.status_code
    return csrf_from(response.text)


def enable_mfa(db: Session, user: StaffUser) -> tuple[pyotp.TOTP, list[str]]:
    """Turn MFA on through the services; returns the authenticator the person would hold
    and their recovery codes.

    The enrolment is confirmed with the previous time step's code, so the current
    one is still unused for a sign-in."""
    actor = Actor(kind="user", id=user.id, org_id=user.org_id, role=user.role)
    enrolment = service.start_mfa_enrolment(db, actor)
    totp = pyotp.TOTP(enrolment.secret)
    codes = service.confirm_mfa_enrolment(db, actor,
                                          code=totp.at(time.time() - totp.interval))
    db.commit()
    return totp, codes


def events(db: Session, action: str) -> list[audit.AuditEvent]:
    return list(db.scalars(sa.select(audit.AuditEvent).where(audit.AuditEvent.action == action)))
