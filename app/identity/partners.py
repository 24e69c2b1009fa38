"""Partner apps: other agencies' software reaching the API with OAuth2 client credentials.

The client secret is shown once, when it is made, and kept only as a SHA-256
digest. Disabling an app, narrowing its scopes or rotating its secret revokes
the access tokens it holds, so none outlives the change (bearer authentication
also checks ``is_active`` on every request).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlmodel import Session

from app.core import audit
from app.core.access import PARTNER_SCOPES, Actor, in_org, require
from app.core.crypto import new_token, token_digest
from app.core.errors import Forbidden, Invalid, NotFound
from app.db import utcnow
from app.identity.models import Org, PartnerApp, PartnerToken

CLIENT_ID_PREFIX = "pa_"


def _field_error(field: str, message: str, kind: str) -> dict[str, str]:
    return {"field": field, "location": "body", "message": message, "type": kind}


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 200:
        raise Invalid("A partner app needs a name of 1 to 200 characters.",
                      errors=[_field_error("name", "1–200 characters", "length")])
    return name


def normalise_scopes(scopes: Iterable[str]) -> str:
    """Known partner scopes, deduplicated, in canonical order, space-separated."""
    wanted = set(scopes)
    unknown = wanted - set(PARTNER_SCOPES)
    if unknown or not wanted:
        raise Invalid(
            "Scopes must be one or more of: " + ", ".join(PARTNER_SCOPES) + ".",
            errors=[_field_error("scopes", "one or more of " + " ".join(PARTNER_SCOPES),
                                 "enum")])
    return " ".join(scope for scope in PARTNER_SCOPES if scope in wanted)


def _new_client_id() -> str:
    return CLIENT_ID_PREFIX + secrets.token_urlsafe(18)


def revoke_live_tokens(db: Session, app_id: UUID) -> int:
    """Revoke the app's access tokens that are still in force; returns how many."""
    now = utcnow()
    result = db.execute(
        sa.update(PartnerToken)
        .where(PartnerToken.app_id == app_id, PartnerToken.revoked_at.is_(None),
               PartnerToken.expires_at > now)
        .values(revoked_at=now)
        .execution_options(synchronize_session="fetch")
    )
    return int(getattr(result, "rowcount", 0) or 0)


def create_partner_app(db: Session, actor: Actor | None, *, org: Org, name: str,
                       scopes: list[str]) -> tuple[PartnerApp, str]:
    """Register a partner app; returns it and its client secret (shown this once only)."""
    if actor is not None:
        require(actor, "partner_apps:manage")
        if actor.org_id != org.id:
            raise Forbidden("Partner apps can only be added to your own agency.",
                            audit={"action": "partner_apps:manage"})
    secret = new_token()
    app = PartnerApp(org_id=org.id, name=_check_name(name), client_id=_new_client_id(),
                     client_secret_digest=token_digest(secret), scopes=normalise_scopes(scopes),
                     created_by=actor.id if actor is not None and actor.is_user else None)
    db.add(app)
    db.flush()
    audit.record(db, actor, "partner_app.created", app, org_id=org.id,
                 details={"scopes": app.scopes})
    return app, secret


def readable_partner_apps(actor: Actor) -> sa.Select[Any]:
    """The partner apps of the actor's agency (admins)."""
    require(actor, "partner_apps:read")
    return in_org(sa.select(PartnerApp), PartnerApp, actor)


def get_partner_app(db: Session, actor: Actor, app_id: UUID) -> PartnerApp:
    app = db.scalar(readable_partner_apps(actor).where(PartnerApp.id == app_id))
    if app is None:
        raise NotFound("No such partner app.")
    return app


def update_partner_app(db: Session, actor: Actor, app_id: UUID, *, name: str | None = None,
                       scopes: list[str] | None = None,
                       is_active: bool | None = None) -> PartnerApp:
    """Rename, re-scope, disable or re-enable an app; its tokens stop at once when it is
    disabled or loses a scope."""
    app = get_partner_app(db, actor, app_id)
    require(actor, "partner_apps:manage")
    changes: dict[str, Any] = {}
    revoke = False
    if name is not None:
        new_name = _check_name(name)
        if new_name != app.name:
            app.name = new_name
            changes["name"] = True
    if scopes is not None:
        new_scopes = normalise_scopes(scopes)
        if new_scopes != app.scopes:
            revoke = revoke or bool(set(app.scopes.split()) - set(new_scopes.split()))
            app.scopes = new_scopes
            changes["scopes"] = new_scopes
    if is_active is not None and is_active != app.is_active:
        app.is_active = is_active
        app.disabled_at = None if is_active else utcnow()
        changes["is_active"] = is_active
        revoke = revoke or not is_active
    if revoke:
        changes["tokens_revoked"] = revoke_live_tokens(db, app.id)
    db.flush()
    audit.record(db, actor, "partner_app.updated", app, details=changes)
    return app


def rotate_secret(db: Session, actor: Actor, app_id: UUID) -> tuple[PartnerApp, str]:
    """Replace the app's client secret (the new one is shown once); the old secret and
    the tokens obtained with it stop working at once."""
    app = get_partner_app(db, actor, app_id)
    require(actor, "partner_apps:manage")
    secret = new_token()
    app.client_secret_digest = token_digest(secret)
    revoked = revoke_live_tokens(db, app.id)
    db.flush()
    audit.record(db, actor, "partner_app.secret_rotated", app,
                 details={"tokens_revoked": revoked})
    return app, secret
