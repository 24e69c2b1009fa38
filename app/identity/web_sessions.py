"""Dashboard sign-in: server-side cookie sessions, the password → second-factor step, CSRF.

The browser holds only a random token; the session (its expiry, its CSRF secret)
lives in ``auth_session`` with kind ``dashboard``, stored by the token's digest.
A session ends after ``dashboard_idle_minutes`` without a request or
``dashboard_absolute_hours`` after sign-in, whichever comes first.

Between a correct password and the second factor the browser carries a short-lived
signed marker (no row, no session): it names the account, expires after five
minutes and stops working as soon as the password or the MFA secret changes.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

import sqlalchemy as sa
from sqlmodel import Session

from app.core import audit
from app.core.crypto import constant_time_equal, keyed_digest, new_token, token_digest
from app.core.errors import TooManyRequests, Unauthorized
from app.db import utcnow
from app.identity import service
from app.identity.models import AuthSession, StaffUser
from app.settings import get_settings

DASHBOARD_KIND = "dashboard"
# last_seen_at is written at most this often: not one write per page view.
TOUCH_EVERY = timedelta(minutes=1)
PENDING_LOGIN_SECONDS = 300
_PENDING_PURPOSE = "advocase/dashboard-pending-login/v1"
_MAX_TOKEN_LENGTH = 128


def _audit(db: Session, action: str, session: AuthSession, *, outcome: str = "success",
           details: dict[str, object] | None = None) -> None:
    audit.append(db, action=action, outcome=outcome, org_id=session.org_id, actor_type="user",
                 actor_id=str(session.user_id), object_type="auth_session",
                 object_id=session.id, details=details)  # type: ignore[arg-type]


# --- sessions ----------------------------------------------------------------------------


def start_dashboard_session(db: Session, user: StaffUser, *,
                            user_agent: str | None) -> tuple[AuthSession, str]:
    """Open a dashboard session for a user who has passed every sign-in step; returns the
    session and the cookie token (kept by the browser only; the database holds its digest)."""
    settings = get_settings()
    token = new_token()
    now = utcnow()
    session = AuthSession(
        org_id=user.org_id, user_id=user.id, kind=DASHBOARD_KIND, created_at=now,
        last_seen_at=now, expires_at=now + timedelta(hours=settings.dashboard_absolute_hours),
        user_agent=(user_agent or "")[:200] or None, cookie_digest=token_digest(token),
        csrf_secret=new_token(),
    )
    db.add(session)
    user.last_login_at = now
    db.flush()
    _audit(db, "auth.dashboard_login", session,
           details={"mfa": user.mfa_enabled,
                    "mfa_enrolment_required": service.needs_mfa_enrolment(db, user)})
    return session, token


def resolve_dashboard_session(db: Session, cookie_token: str | None, *,
                              touch: bool = True) -> tuple[AuthSession, StaffUser] | None:
    """The live session behind a cookie token and its user, or None.

    A session idle too long or past its absolute expiry is revoked on the spot. A
    request a person made marks the session active (``touch``); a page's background poll
    must not, or a page left open would keep the session alive past its idle timeout."""
    if not cookie_token or len(cookie_token) > _MAX_TOKEN_LENGTH:
        return None
    session = db.scalar(sa.select(AuthSession).where(
        AuthSession.cookie_digest == token_digest(cookie_token)))
    if session is None or session.kind != DASHBOARD_KIND or session.revoked_at is not None:
        return None
    settings = get_settings()
    now = utcnow()
    if session.expires_at <= now:
        service.revoke_session(db, session, reason="expired")
        _audit(db, "auth.dashboard_session_expired", session)
        return None
    if now - session.last_seen_at > timedelta(minutes=settings.dashboard_idle_minutes):
        service.revoke_session(db, session, reason="idle")
        _audit(db, "auth.dashboard_idle_expired", session)
        return None
    user = db.get(StaffUser, session.user_id)
    if user is None or not user.is_active:
        return None
    if touch and now - session.last_seen_at >= TOUCH_EVERY:
        session.last_seen_at = now
        db.flush()
    return session, user


def end_dashboard_session(db: Session, session: AuthSession) -> None:
    """Sign out: the session is revoked; its cookie token no longer opens anything."""
    already_ended = session.revoked_at is not None
    service.revoke_session(db, session, reason="logout")
    if not already_ended:
        _audit(db, "auth.dashboard_logout", session)


# --- CSRF --------------------------------------------------------------------------------


def csrf_token(session: AuthSession) -> str:
    """The hidden-field value every form of this session must send back."""
    assert session.csrf_secret is not None
    return hmac.new(session.csrf_secret.encode(), f"csrf\x00{session.id}".encode(),
                    hashlib.sha256).hexdigest()


# --- the two sign-in steps ---------------------------------------------------------------


@dataclass
class PasswordStep:
    user: StaffUser
    second_factor_needed: bool


def check_password(db: Session, *, email: str, password: str, address: str) -> PasswordStep:
    """First step: the password (throttled; one answer for unknown email and wrong password).

    Raises what :func:`service.authenticate` raises, except that an account with MFA
    is not refused but told to give its second factor next."""
    try:
        user = service.authenticate(db, email=email, password=password, totp_code=None,
                                    address=address)
    except Unauthorized as exc:
        if exc.kind != "mfa-required":
            raise
        pending = db.scalar(sa.select(StaffUser).where(
            StaffUser.email == service.normalise_email(email)))
        assert pending is not None  # authenticate checked the password of this account
        audit.append(db, action="auth.second_factor_pending", org_id=pending.org_id,
                     actor_type="user", actor_id=str(pending.id), object_type="staff_user",
                     object_id=pending.id)
        return PasswordStep(pending, True)
    return PasswordStep(user, False)


def _pending_signature(payload: str, user: StaffUser) -> str:
    # The password hash and MFA secret are mixed in (never stored in the marker) so a
    # marker dies with a password change or an MFA reset.
    return keyed_digest(_PENDING_PURPOSE,
                        f"{payload}\x00{user.password_hash}\x00{user.mfa_secret}")


def issue_pending_login(user: StaffUser) -> str:
    """A marker that the password was right, valid for five minutes (for a cookie)."""
    expires = int(time.time()) + PENDING_LOGIN_SECONDS
    payload = f"{user.id}.{expires}.{new_token(9)}"
    return f"{payload}.{_pending_signature(payload, user)}"


def pending_login_user(db: Session, marker: str | None) -> StaffUser | None:
    """The account a valid, unexpired marker names, or None."""
    if not marker or len(marker) > 256:
        return None
    parts = marker.split(".")
    if len(parts) != 4:
        return None
    raw_id, raw_expires, _nonce, signature = parts
    try:
        user_id = UUID(raw_id)
        expires = int(raw_expires)
    except ValueError:
        return None
    if expires < time.time():
        return None
    user = db.get(StaffUser, user_id)
    if user is None or not user.is_active or not user.mfa_enabled:
        return None
    payload = ".".join(parts[:3])
    if not constant_time_equal(_pending_signature(payload, user), signature):
        return None
    return user


def check_pending_second_factor(db: Session, user: StaffUser, *, code: str,
                                address: str) -> None:
    """Second step: a TOTP or recovery code, throttled like the password."""
    from app.core.ratelimit import LoginThrottle, get_store

    throttle = LoginThrottle(get_store(get_settings()))
    wait = throttle.check(user.email, address)
    if wait:
        seconds = max(1, int(wait + 0.999))
        raise TooManyRequests(f"Too many failed attempts. Try again in {seconds} seconds.",
                              headers={"Retry-After": str(seconds)},
                              audit={"event": "auth.login_throttled", "org_id": user.org_id,
                                     "object_type": "staff_user", "object_id": user.id})
    if not code.strip() or not service.check_second_factor(db, user, code):
        throttle.record_failure(user.email, address)
        raise Unauthorized("That code is not valid.", kind="invalid-mfa-code",
                           audit={"event": "auth.mfa_failed", "org_id": user.org_id,
                                  "object_type": "staff_user", "object_id": user.id})
    throttle.record_success(user.email, address)
