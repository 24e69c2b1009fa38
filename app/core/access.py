"""Who may do what: the one place authorization is decided.

Two layers, both here:
- what a role (staff) or a scope (partner app) may do at all: ``require`` → 403;
- which rows an actor can reach: every read starts from a ``readable`` query
  that filters on the actor's org (and, for client data, caseload), so a row
  outside reach is simply not found → 404.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from app.core.errors import Forbidden

ROLES = ("admin", "supervisor", "advocate", "auditor")
PARTNER_SCOPES = ("referrals:read", "referrals:write", "resources:read", "resources:write")

# role × action. Admins run the agency's accounts but read no client record;
# auditors read the audit trail only; advocates see their caseload; supervisors
# see every client of their org.
PERMISSIONS: dict[str, frozenset[str]] = {
    "admin": frozenset({
        "me:read", "sessions:own", "mfa:own",
        "users:read", "users:manage", "users:reset_mfa",
        "partner_apps:read", "partner_apps:manage",
        "org:manage",
        "break_glass",
        "instruments:manage", "plan_template:manage",
        "resources:read", "resources:manage",
    }),
    "supervisor": frozenset({
        "me:read", "sessions:own", "mfa:own",
        "users:read",
        "audit:read",
        "clients:read", "clients:write", "clients:read_all", "clients:purge",
        "break_glass",
        "instruments:manage", "plan_template:manage",
        "resources:read", "resources:manage",
    }),
    "advocate": frozenset({
        "me:read", "sessions:own", "mfa:own",
        "clients:read", "clients:write",
        "break_glass",
        "resources:read",
    }),
    "auditor": frozenset({
        "me:read", "sessions:own", "mfa:own",
        "audit:read",
    }),
}

# Roles that must use MFA whatever the org's policy says.
MFA_REQUIRED_ROLES = frozenset({"admin", "supervisor"})


@dataclass(frozen=True)
class Actor:
    """Who is acting: a staff user (with a role) or a partner app (with scopes)."""

    kind: str  # "user" | "partner_app"
    id: UUID
    org_id: UUID
    role: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    session_id: UUID | None = None
    token_id: str | None = None

    @property
    def is_user(self) -> bool:
        return self.kind == "user"

    @property
    def is_partner(self) -> bool:
        return self.kind == "partner_app"

    def can(self, action: str) -> bool:
        if self.is_partner:
            return action in self.scopes
        return action in PERMISSIONS.get(self.role or "", frozenset())


def require(actor: Actor, action: str) -> None:
    """Refuse (403) an action the actor's role or scopes never allow."""
    if not actor.can(action):
        raise Forbidden(
            "Your role does not allow this." if actor.is_user
            else "This app's scopes do not allow this.",
            audit={"action": action},
        )


def require_user(actor: Actor) -> None:
    """Staff-only routes: a partner app gets 403 whatever its scopes."""
    if not actor.is_user:
        raise Forbidden("Only staff can do this.", audit={"action": "staff_only"})


def require_client_staff(actor: Actor) -> None:
    """Routes about clients: staff with some reach to clients (403 for partner apps and
    auditors). Admins pass, for emergency access, and then find no client (404)."""
    require_user(actor)
    if not (actor.can("clients:read") or actor.can("break_glass")):
        require(actor, "clients:read")


def in_org(statement: sa.Select[Any], model: Any, actor: Actor) -> sa.Select[Any]:
    """Restrict a query to the actor's org: the base of every ``readable``."""
    return statement.where(model.org_id == actor.org_id)


def mfa_required(role: str, org_requires_mfa_for_all: bool) -> bool:
    return role in MFA_REQUIRED_ROLES or org_requires_mfa_for_all
