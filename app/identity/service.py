"""Identity: orgs, staff accounts, sign-in with MFA, sessions and refresh tokens."""

from __future__ import annotations

import base64
import io
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import pyotp
import sqlalchemy as sa
from sqlmodel import Session

from app.core import audit
from app.core.access import Actor, mfa_required, require
from app.core.crypto import new_token, seal, token_digest, unseal
from app.core.errors import Conflict, Forbidden, Invalid, NotFound, TooManyRequests, Unauthorized
from app.core.passwords import (
    burn_verify_time,
    hash_password,
    needs_rehash,
    require_acceptable_password,
    verify_password,
)
from app.db import utcnow
from app.identity import tokens
from app.identity.models import AuthSession, Org, RecoveryCode, RefreshToken, Role, StaffUser
from app.settings import get_settings

WRONG_CREDENTIALS = "The email address or the password is wrong."
TOTP_ISSUER = "advocase"
RECOVERY_CODES = 10
_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def normalise_email(email: str) -> str:
    return email.strip().lower()


def valid_staff_email(email: str) -> str:
    """A syntactically valid address, normalised; no DNS look-up (agencies' mail may be
    internal). Reserved test domains are allowed so demo data can use them."""
    from email_validator import EmailNotValidError, validate_email

    try:
        checked = validate_email(email.strip(), check_deliverability=False,
                                 test_environment=True)
    except EmailNotValidError as exc:
        raise Invalid("That is not a valid email address.", errors=[{
            "field": "email", "location": "body", "message": str(exc), "type": "email"}]) from exc
    return normalise_email(checked.normalized)


# --- orgs and users ----------------------------------------------------------------------


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:63].strip("-")
    return slug or "agency"


def create_org(db: Session, *, name: str, slug: str | None = None,
               require_mfa_for_all: bool = False) -> Org:
    """Create an agency (tenant) with a unique slug."""
    name = name.strip()
    if not name or len(name) > 200:
        raise Invalid("An agency needs a name of 1 to 200 characters.",
                      errors=[{"field": "name", "location": "body", "message": "1–200 characters",
                               "type": "length"}])
    slug = slug or slugify(name)
    if not _SLUG.match(slug):
        raise Invalid("The slug may hold lowercase letters, digits and hyphens.",
                      errors=[{"field": "slug", "location": "body", "message": "invalid slug",
                               "type": "pattern"}])
    if db.scalar(sa.select(Org.id).where(Org.slug == slug)) is not None:
        raise Conflict(f"An agency with the slug {slug!r} exists already.")
    org = Org(name=name, slug=slug, require_mfa_for_all=require_mfa_for_all)
    db.add(org)
    db.flush()
    audit.append(db, action="org.created", org_id=org.id, object_type="org", object_id=org.id)
    return org


def get_org_by_slug(db: Session, slug: str) -> Org:
    org = db.scalar(sa.select(Org).where(Org.slug == slug))
    if org is None:
        raise NotFound("No agency with that slug.")
    return org


DEMO_ORG_SLUG = "demo"
DEMO_ADMIN_EMAIL = "admin@demo.advocase.test"


def bootstrap_demo_agency(db: Session, *, password: str) -> tuple[str, str, str] | None:
    """First run only (no agency at all): a clearly fictional demo agency and its admin."""
    if db.scalar(sa.select(Org.id).limit(1)) is not None:
        return None
    org = create_org(db, name="Demo Agency (fictional)", slug=DEMO_ORG_SLUG)
    create_user(db, None, org=org, email=DEMO_ADMIN_EMAIL, display_name="Demo Admin",
                role=Role.admin.value, password=password)
    return org.slug, DEMO_ADMIN_EMAIL, password


@dataclass
class NewUser:
    user: StaffUser
    invitation_token: str | None


def _check_role(role: str) -> str:
    if role not in {r.value for r in Role}:
        raise Invalid("Unknown role.", errors=[{"field": "role", "location": "body",
                                                 "message": "one of admin, supervisor, "
                                                 "advocate, auditor", "type": "enum"}])
    return role


def create_user(
    db: Session,
    actor: Actor | None,
    *,
    org: Org,
    email: str,
    display_name: str,
    role: str,
    password: str | None = None,
) -> NewUser:
    """Create a staff account; without a password it gets a one-time invitation token."""
    if actor is not None:
        require(actor, "users:manage")
    email = valid_staff_email(email)
    _check_role(role)
    if db.scalar(sa.select(StaffUser.id).where(StaffUser.email == email)) is not None:
        raise Conflict("An account with that email address exists already.",
                       errors=[{"field": "email", "location": "body", "message": "taken",
                                "type": "unique"}])
    user = StaffUser(org_id=org.id, email=email, display_name=display_name.strip(), role=role)
    invitation = None
    if password is not None:
        require_acceptable_password(password, email=email)
        user.password_hash = hash_password(password)
        user.password_changed_at = utcnow()
    else:
        invitation = new_token()
        user.invitation_digest = token_digest(invitation)
        user.invitation_expires_at = utcnow() + timedelta(hours=get_settings().invitation_hours)
    db.add(user)
    db.flush()
    audit.record(db, actor, "user.created", user, org_id=org.id, details={"role": role})
    return NewUser(user, invitation)


def accept_invitation(db: Session, *, token: str, password: str) -> StaffUser:
    """Set the first password of an invited account (the token works once)."""
    user = db.scalar(sa.select(StaffUser).where(StaffUser.invitation_digest == token_digest(token)))
    if user is None or user.invitation_expires_at is None or user.invitation_expires_at < utcnow():
        raise Unauthorized("This invitation is not valid (it may have expired or been used).",
                           kind="invalid-invitation", audit={"event": "user.invitation_refused"})
    require_acceptable_password(password, email=user.email)
    user.password_hash = hash_password(password)
    user.password_changed_at = utcnow()
    user.invitation_digest = None
    user.invitation_expires_at = None
    db.flush()
    audit.append(db, action="user.invitation_accepted", org_id=user.org_id, actor_type="user",
                 actor_id=str(user.id), object_type="staff_user", object_id=user.id)
    return user


def readable_users(actor: Actor) -> sa.Select[Any]:
    require(actor, "users:read")
    return sa.select(StaffUser).where(StaffUser.org_id == actor.org_id)


def get_user(db: Session, actor: Actor, user_id: UUID) -> StaffUser:
    user = db.scalar(readable_users(actor).where(StaffUser.id == user_id))
    if user is None:
        raise NotFound("No such user.")
    return user


def _active_admins(db: Session, org_id: UUID) -> int:
    return int(db.scalar(sa.select(sa.func.count()).select_from(StaffUser).where(
        StaffUser.org_id == org_id, StaffUser.role == Role.admin.value,
        StaffUser.is_active.is_(True))) or 0)


def update_user(db: Session, actor: Actor, user_id: UUID, *, role: str | None = None,
                is_active: bool | None = None, display_name: str | None = None) -> StaffUser:
    """Change a colleague's role, name or status; the last active admin cannot be removed."""
    user = get_user(db, actor, user_id)
    require(actor, "users:manage")
    changes: dict[str, Any] = {}
    losing_admin = user.role == Role.admin.value and user.is_active and (
        (role is not None and role != Role.admin.value) or is_active is False)
    if losing_admin and _active_admins(db, user.org_id) <= 1:
        raise Conflict("An agency needs at least one active admin.")
    if role is not None and role != user.role:
        changes["role_from"], changes["role_to"] = user.role, _check_role(role)
        user.role = role
        revoke_user_sessions(db, user.id, reason="role_changed")
    if display_name is not None:
        user.display_name = display_name.strip()
        changes["display_name"] = True
    if is_active is not None and is_active != user.is_active:
        user.is_active = is_active
        user.deactivated_at = None if is_active else utcnow()
        changes["is_active"] = is_active
        if not is_active:
            revoke_user_sessions(db, user.id, reason="deactivated")
    db.flush()
    audit.record(db, actor, "user.updated", user, details=changes)
    return user


# --- sign-in -----------------------------------------------------------------------------


@dataclass
class IssuedTokens:
    access_token: str
    refresh_token: str | None
    expires_in: int
    session: AuthSession
    user: StaffUser
    scope: str = ""


def _throttle() -> Any:
    from app.core.ratelimit import LoginThrottle, get_store

    return LoginThrottle(get_store(get_settings()))


# Second-factor and re-authentication attempts per account: enough for typos, far too
# few to guess a 6-digit code or a password.
REAUTH_LIMIT, REAUTH_WINDOW = 10, 15 * 60


def limit_attempts(bucket: str, user_id: UUID) -> None:
    """Refuse (429) a burst of code or password guesses against one account."""
    from app.core.ratelimit import RateLimiter, get_store

    wait = RateLimiter(get_store(get_settings())).hit(bucket, str(user_id), REAUTH_LIMIT,
                                                      REAUTH_WINDOW)
    if wait:
        seconds = max(1, int(wait + 0.999))
        raise TooManyRequests(f"Too many attempts. Try again in {seconds} seconds.",
                              headers={"Retry-After": str(seconds)},
                              audit={"event": "auth.attempts_throttled", "bucket": bucket})


def _too_many(wait: float) -> TooManyRequests:
    seconds = max(1, int(wait + 0.999))
    return TooManyRequests(
        f"Too many failed attempts. Try again in {seconds} seconds.",
        headers={"Retry-After": str(seconds)},
        audit={"event": "auth.login_throttled"},
    )


def authenticate(db: Session, *, email: str, password: str, totp_code: str | None,
                 address: str) -> StaffUser:
    """Password (and MFA when enrolled) with throttling; unknown emails get the same answer."""
    account = normalise_email(email)
    throttle = _throttle()
    wait = throttle.check(account, address)
    if wait:
        raise _too_many(wait)
    user = db.scalar(sa.select(StaffUser).where(StaffUser.email == account))
    if user is None or not user.is_active or not user.password_hash:
        burn_verify_time()
        throttle.record_failure(account, address)
        raise Unauthorized(WRONG_CREDENTIALS, kind="invalid-credentials",
                           audit={"event": "auth.login_failed"})
    if not verify_password(user.password_hash, password):
        throttle.record_failure(account, address)
        raise Unauthorized(WRONG_CREDENTIALS, kind="invalid-credentials",
                           audit={"event": "auth.login_failed", "org_id": user.org_id,
                                  "object_type": "staff_user", "object_id": user.id})
    if user.mfa_enabled:
        if not totp_code:
            raise Unauthorized("Enter the code from your authenticator app.", kind="mfa-required",
                               audit={"event": "auth.mfa_required", "org_id": user.org_id,
                                      "object_type": "staff_user", "object_id": user.id})
        if not check_second_factor(db, user, totp_code):
            throttle.record_failure(account, address)
            raise Unauthorized("That code is not valid.", kind="invalid-mfa-code",
                               keep_changes=False,
                               audit={"event": "auth.mfa_failed", "org_id": user.org_id,
                                      "object_type": "staff_user", "object_id": user.id})
    throttle.record_success(account, address)
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return user


def _new_session(db: Session, user: StaffUser, *, kind: str, user_agent: str | None,
                 lifetime: timedelta) -> AuthSession:
    now = utcnow()
    session = AuthSession(org_id=user.org_id, user_id=user.id, kind=kind, created_at=now,
                          last_seen_at=now, expires_at=now + lifetime,
                          user_agent=(user_agent or "")[:200] or None)
    db.add(session)
    db.flush()
    return session


def _issue_refresh(db: Session, session: AuthSession) -> str:
    settings = get_settings()
    token = new_token()
    expires = min(session.expires_at, utcnow() + timedelta(hours=settings.refresh_idle_hours))
    db.add(RefreshToken(session_id=session.id, token_digest=token_digest(token),
                        expires_at=expires))
    return token


def needs_mfa_enrolment(db: Session, user: StaffUser) -> bool:
    if user.mfa_enabled:
        return False
    org = db.get(Org, user.org_id)
    return mfa_required(user.role, bool(org and org.require_mfa_for_all))


def login(db: Session, *, email: str, password: str, totp_code: str | None, address: str,
          user_agent: str | None) -> IssuedTokens:
    """Password (+ TOTP) sign-in for the API: an access token and a refresh token."""
    user = authenticate(db, email=email, password=password, totp_code=totp_code, address=address)
    settings = get_settings()
    session = _new_session(db, user, kind="api", user_agent=user_agent,
                           lifetime=timedelta(hours=settings.session_absolute_hours))
    user.last_login_at = utcnow()
    if needs_mfa_enrolment(db, user):
        # Only the MFA enrolment routes accept this token; no refresh token is given.
        access, expires_in = tokens.issue_staff_token(
            user_id=user.id, org_id=user.org_id, role=user.role, session_id=session.id,
            scope=tokens.ENROLMENT_SCOPE)
        audit.append(db, action="auth.login_mfa_enrolment_required", org_id=user.org_id,
                     actor_type="user", actor_id=str(user.id), object_type="auth_session",
                     object_id=session.id)
        return IssuedTokens(access, None, expires_in, session, user, tokens.ENROLMENT_SCOPE)
    refresh = _issue_refresh(db, session)
    access, expires_in = tokens.issue_staff_token(user_id=user.id, org_id=user.org_id,
                                                  role=user.role, session_id=session.id)
    db.flush()
    audit.append(db, action="auth.login", org_id=user.org_id, actor_type="user",
                 actor_id=str(user.id), object_type="auth_session", object_id=session.id,
                 details={"mfa": user.mfa_enabled})
    return IssuedTokens(access, refresh, expires_in, session, user)


def refresh(db: Session, *, refresh_token: str) -> IssuedTokens:
    """Rotate a refresh token; a spent one presented again revokes its whole family."""
    now = utcnow()
    row = db.scalar(sa.select(RefreshToken).where(
        RefreshToken.token_digest == token_digest(refresh_token)).with_for_update())
    if row is None:
        raise Unauthorized("The refresh token is not valid.", kind="invalid-token",
                           audit={"event": "auth.refresh_refused", "reason": "unknown"})
    session = db.get(AuthSession, row.session_id)
    assert session is not None
    if row.used_at is not None:
        if session.revoked_at is None:
            session.revoked_at, session.revoked_reason = now, "refresh_reuse"
        audit.append(db, action="auth.refresh_reused", outcome="denied", org_id=session.org_id,
                     actor_type="user", actor_id=str(session.user_id),
                     object_type="auth_session", object_id=session.id)
        raise Unauthorized("This refresh token was already used; the session has been ended.",
                           kind="invalid-token", keep_changes=True)
    user = db.get(StaffUser, session.user_id)
    if (session.revoked_at is not None or session.expires_at <= now or row.expires_at <= now
            or user is None or not user.is_active):
        raise Unauthorized("The session has ended; sign in again.", kind="invalid-token",
                           audit={"event": "auth.refresh_refused", "reason": "ended",
                                  "org_id": session.org_id, "object_type": "auth_session",
                                  "object_id": session.id})
    row.used_at = now
    session.last_seen_at = now
    new_refresh = _issue_refresh(db, session)
    access, expires_in = tokens.issue_staff_token(user_id=user.id, org_id=user.org_id,
                                                  role=user.role, session_id=session.id)
    db.flush()
    audit.append(db, action="auth.refresh", org_id=user.org_id, actor_type="user",
                 actor_id=str(user.id), object_type="auth_session", object_id=session.id)
    return IssuedTokens(access, new_refresh, expires_in, session, user)


def revoke_session(db: Session, session: AuthSession, *, reason: str) -> None:
    if session.revoked_at is None:
        session.revoked_at, session.revoked_reason = utcnow(), reason
        db.flush()


def revoke_user_sessions(db: Session, user_id: UUID, *, reason: str,
                         keep: UUID | None = None) -> int:
    query = sa.select(AuthSession).where(AuthSession.user_id == user_id,
                                         AuthSession.revoked_at.is_(None))
    if keep is not None:
        query = query.where(AuthSession.id != keep)
    sessions = list(db.scalars(query))
    for session in sessions:
        revoke_session(db, session, reason=reason)
    return len(sessions)


def logout(db: Session, actor: Actor) -> None:
    """End the caller's current session (its access and refresh tokens stop working)."""
    if actor.session_id is None:
        raise Forbidden("Only a signed-in staff session can sign out.")
    session = db.get(AuthSession, actor.session_id)
    if session is not None:
        revoke_session(db, session, reason="logout")
    audit.record(db, actor, "auth.logout", object_type="auth_session", object_id=actor.session_id)


def list_sessions(actor: Actor) -> sa.Select[Any]:
    """The caller's own sessions still in force."""
    require(actor, "sessions:own")
    return sa.select(AuthSession).where(
        AuthSession.user_id == actor.id, AuthSession.revoked_at.is_(None),
        AuthSession.expires_at > utcnow())


def revoke_own_session(db: Session, actor: Actor, session_id: UUID) -> None:
    session = db.scalar(list_sessions(actor).where(AuthSession.id == session_id))
    if session is None:
        raise NotFound("No such session.")
    revoke_session(db, session, reason="revoked_by_user")
    audit.record(db, actor, "auth.session_revoked", session)


def change_password(db: Session, actor: Actor, *, current_password: str,
                    new_password: str) -> None:
    """Change one's own password; every other session is ended."""
    user = db.get(StaffUser, actor.id)
    assert user is not None
    limit_attempts("password-change", user.id)
    if not user.password_hash or not verify_password(user.password_hash, current_password):
        raise Forbidden("The current password is wrong.", kind="reauthentication-failed",
                        errors=[{"field": "current_password", "location": "body",
                                 "message": "wrong password", "type": "reauth"}],
                        audit={"event": "user.password_change_refused"})
    require_acceptable_password(new_password, field="new_password", email=user.email)
    user.password_hash = hash_password(new_password)
    user.password_changed_at = utcnow()
    ended = revoke_user_sessions(db, user.id, reason="password_changed", keep=actor.session_id)
    audit.record(db, actor, "user.password_changed", user, details={"sessions_ended": ended})


# --- MFA ---------------------------------------------------------------------------------


def _totp(user: StaffUser) -> pyotp.TOTP:
    assert user.mfa_secret is not None
    secret = unseal(user.mfa_secret, table="staff_user", column="mfa_secret", row_id=str(user.id))
    return pyotp.TOTP(secret)


def _matching_step(totp: pyotp.TOTP, code: str, now: datetime) -> int | None:
    """The time step a code belongs to (current ±1, for clock drift), or None."""
    code = code.strip().replace(" ", "")
    if not code.isdigit() or len(code) != totp.digits:
        return None
    step_now = int(now.timestamp()) // totp.interval
    for step in (step_now, step_now - 1, step_now + 1):
        if secrets.compare_digest(totp.at(step * totp.interval), code):
            return step
    return None


def check_second_factor(db: Session, user: StaffUser, code: str) -> bool:
    """A TOTP code never used before, or an unused recovery code (then spent)."""
    now = utcnow()
    if "-" in code or len(code.strip()) > 8:
        digest = token_digest(code.strip().lower())
        recovery = db.scalar(sa.select(RecoveryCode).where(
            RecoveryCode.user_id == user.id, RecoveryCode.code_digest == digest,
            RecoveryCode.used_at.is_(None)))
        if recovery is None:
            return False
        recovery.used_at = now
        audit.append(db, action="auth.recovery_code_used", org_id=user.org_id,
                     actor_type="user", actor_id=str(user.id), object_type="staff_user",
                     object_id=user.id)
        return True
    step = _matching_step(_totp(user), code, now)
    if step is None or (user.mfa_last_step is not None and step <= user.mfa_last_step):
        return False  # wrong, or replayed
    user.mfa_last_step = step
    return True


@dataclass
class Enrolment:
    secret: str
    otpauth_uri: str
    qr_svg_data_uri: str


def _qr_svg(uri: str) -> str:
    import qrcode
    import qrcode.image.svg

    image = qrcode.make(uri, image_factory=qrcode.image.svg.SvgPathImage, box_size=8)
    buffer = io.BytesIO()
    image.save(buffer)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode()


def start_mfa_enrolment(db: Session, actor: Actor) -> Enrolment:
    """Create a new TOTP secret (shown once); MFA is on only after a code confirms it."""
    user = db.get(StaffUser, actor.id)
    assert user is not None
    if user.mfa_enabled:
        raise Conflict("MFA is already on for this account; an admin can reset it.")
    secret = pyotp.random_base32()
    user.mfa_secret = seal(secret, table="staff_user", column="mfa_secret", row_id=str(user.id))
    user.mfa_last_step = None
    uri = pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=TOTP_ISSUER)
    db.flush()
    audit.record(db, actor, "mfa.enrolment_started", user)
    return Enrolment(secret, uri, _qr_svg(uri))


def _new_recovery_codes(db: Session, user: StaffUser) -> list[str]:
    db.execute(sa.delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = ["-".join(secrets.token_hex(2) for _ in range(3)) for _ in range(RECOVERY_CODES)]
    for code in codes:
        db.add(RecoveryCode(user_id=user.id, code_digest=token_digest(code)))
    return codes


def confirm_mfa_enrolment(db: Session, actor: Actor, *, code: str) -> list[str]:
    """Turn MFA on with a first valid code; returns the recovery codes (shown once)."""
    user = db.get(StaffUser, actor.id)
    assert user is not None
    if user.mfa_enabled:
        raise Conflict("MFA is already on for this account.")
    if user.mfa_secret is None:
        raise Conflict("Start the enrolment first.")
    limit_attempts("mfa-confirm", user.id)
    step = _matching_step(_totp(user), code, utcnow())
    if step is None:
        raise Invalid("That code is not valid.", errors=[{"field": "totp_code", "location": "body",
                                                          "message": "invalid code",
                                                          "type": "totp"}])
    user.mfa_enabled = True
    user.mfa_last_step = step
    codes = _new_recovery_codes(db, user)
    # Sessions opened without the second factor end; this one stays (an enrolment-only
    # API token expires within minutes and has no refresh token).
    revoke_user_sessions(db, user.id, reason="mfa_enabled", keep=actor.session_id)
    db.flush()
    audit.record(db, actor, "mfa.enabled", user)
    return codes


def reset_mfa(db: Session, actor: Actor | None, user: StaffUser) -> None:
    """Turn MFA off for an account (it must enrol again) and end its sessions."""
    user.mfa_enabled = False
    user.mfa_secret = None
    user.mfa_last_step = None
    db.execute(sa.delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    revoke_user_sessions(db, user.id, reason="mfa_reset")
    db.flush()
    audit.record(db, actor, "mfa.reset", user, org_id=user.org_id)


def admin_reset_mfa(db: Session, actor: Actor, user_id: UUID, *, password: str) -> StaffUser:
    """An admin resets a colleague's MFA after re-entering their own password."""
    user = get_user(db, actor, user_id)
    require(actor, "users:reset_mfa")
    limit_attempts("reauth", actor.id)
    admin = db.get(StaffUser, actor.id)
    if admin is None or not admin.password_hash or not verify_password(admin.password_hash,
                                                                         password):
        raise Forbidden("Re-enter your own password to reset someone's MFA.",
                        kind="reauthentication-failed",
                        errors=[{"field": "password", "location": "body",
                                 "message": "wrong password", "type": "reauth"}],
                        audit={"event": "mfa.reset_refused", "object_type": "staff_user",
                               "object_id": user_id})
    reset_mfa(db, actor, user)
    return user


def reset_mfa_by_email(db: Session, email: str) -> StaffUser:
    """CLI: reset MFA for the account with this email."""
    user = db.scalar(sa.select(StaffUser).where(StaffUser.email == normalise_email(email)))
    if user is None:
        raise NotFound("No account with that email address.")
    reset_mfa(db, None, user)
    return user
