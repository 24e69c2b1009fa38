"""Small factories for orgs, staff and their tokens (test data is plainly fictional)."""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from uuid import uuid4

from sqlmodel import Session

from app.core.passwords import hash_password
from app.db import utcnow
from app.identity import service, tokens
from app.identity.models import AuthSession, Org, PartnerApp, StaffUser

PASSWORD = "correct horse battery staple (fictional)"


def make_org(db: Session, slug: str | None = None, **fields: object) -> Org:
    slug = slug or f"org-{uuid4().hex[:8]}"
    return service.create_org(db, name=f"Fictional Agency {slug}", slug=slug, **fields)


@lru_cache(maxsize=1)
def _password_hash() -> str:
    return hash_password(PASSWORD)


def make_user(db: Session, org: Org, role: str = "advocate", *, email: str | None = None,
              password: str = PASSWORD) -> StaffUser:
    """A staff account through the service. The usual test password's Argon2id hash is
    computed once per run (it costs ~40 ms), the rest exactly as the service does it."""
    email = email or f"{role}-{uuid4().hex[:8]}@example.test"
    if password != PASSWORD:
        return service.create_user(db, None, org=org, email=email, display_name=f"Test {role}",
                                   role=role, password=password).user
    user = service.create_user(db, None, org=org, email=email, display_name=f"Test {role}",
                               role=role).user
    user.password_hash = _password_hash()
    user.password_changed_at = utcnow()
    user.invitation_digest = user.invitation_expires_at = None
    db.flush()
    return user


def staff_session(db: Session, user: StaffUser, kind: str = "api") -> AuthSession:
    session = AuthSession(org_id=user.org_id, user_id=user.id, kind=kind,
                          expires_at=utcnow() + timedelta(hours=1))
    db.add(session)
    db.flush()
    return session


def staff_token(db: Session, user: StaffUser, *, scope: str = "") -> str:
    """A valid access token for ``user`` on a fresh session (no password or MFA dance)."""
    session = staff_session(db, user)
    token, _ = tokens.issue_staff_token(user_id=user.id, org_id=user.org_id, role=user.role,
                                        session_id=session.id, scope=scope)
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make_partner_app(db: Session, org: Org, scopes: tuple[str, ...] = ("referrals:read",),
                     name: str = "Fictional Partner App") -> tuple[PartnerApp, str]:
    """A partner app registered through the service (as the CLI does); returns it and its
    client secret."""
    from app.identity import partners

    return partners.create_partner_app(db, None, org=org, name=name, scopes=list(scopes))
