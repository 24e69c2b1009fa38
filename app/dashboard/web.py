"""Rendering: the signed-in context every page gets, the navigation and the templates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import HTMLResponse

from app.core.access import Actor
from app.dashboard import STATIC_URL, TEMPLATES_DIR
from app.notifications import service as notifications
from app.settings import get_settings

# Policy of every dashboard response: no inline script or style, nothing from elsewhere.
DASHBOARD_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; "
                 "script-src 'self'; form-action 'self'; frame-ancestors 'none'; "
                 "base-uri 'none'")

ROLE_LABELS = {"admin": "Admin", "supervisor": "Supervisor", "advocate": "Advocate",
               "auditor": "Auditor"}


@dataclass(frozen=True)
class NavItem:
    label: str
    path: str
    permission: str
    roles: frozenset[str] = frozenset()  # roles that see it without the permission


NAV = (
    NavItem("Home", "/dashboard", "me:read"),
    NavItem("My day", "/dashboard/my-day", "clients:read"),
    NavItem("Clients", "/dashboard/clients", "clients:read"),
    NavItem("Referrals", "/dashboard/referrals", "clients:read"),
    # Admins ask for the agency's funder reports there (and read no client's).
    NavItem("Reports", "/dashboard/reports", "clients:read", frozenset({"admin"})),
    NavItem("Directory", "/dashboard/resources", "resources:read"),
    NavItem("My sessions", "/dashboard/sessions", "sessions:own"),
    NavItem("Security", "/dashboard/security", "mfa:own"),
    NavItem("Users", "/dashboard/users", "users:manage"),
    NavItem("Partner apps", "/dashboard/partner-apps", "partner_apps:manage"),
)


@dataclass(frozen=True)
class Signed:
    """The signed-in staff member, as plain values (safe to use after a rollback)."""

    actor: Actor
    session_id: UUID
    display_name: str
    role: str
    csrf_token: str
    enrolling: bool  # must set up MFA before anything else

    def can(self, action: str) -> bool:
        return self.actor.can(action)

    @property
    def role_label(self) -> str:
        return ROLE_LABELS.get(self.role, self.role)

    @property
    def nav(self) -> list[NavItem]:
        if self.enrolling:
            return []
        return [item for item in NAV if self.can(item.permission) or self.role in item.roles]


def _when(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.strftime("%Y-%m-%d %H:%M UTC")


def _static(path: str) -> str:
    return f"{STATIC_URL}/{path}"


templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
templates.env.trim_blocks = True
templates.env.lstrip_blocks = True
templates.env.globals["static"] = _static
templates.env.filters["when"] = _when


@dataclass(frozen=True)
class Bell:
    """The header's link to the notifications: the unread count as the page was made,
    and how often the page's script asks again."""

    unread: int
    poll_seconds: float


def _bell(request: Request, me: Signed | None) -> Bell | None:
    db = getattr(request.state, "dashboard_db", None)
    if me is None or me.enrolling or db is None:
        return None
    return Bell(notifications.unread_count(db, me.actor),
                get_settings().dashboard_bell_poll_seconds)


def render(request: Request, name: str, *, title: str, status_code: int = 200,
           headers: dict[str, str] | None = None, problem: Any = None,
           **context: Any) -> HTMLResponse:
    """Render a page; the signed-in context (if any) comes from the request state.

    ``problem`` (a domain error) fills the error summary and the per-field messages;
    the values a person typed are never echoed into an error."""
    me: Signed | None = getattr(request.state, "dashboard", None)
    field_errors: dict[str, list[str]] = {}
    for error in (getattr(problem, "errors", None) or []):
        field_errors.setdefault(str(error.get("field") or ""), []).append(
            str(error.get("message") or "invalid"))
    values = {"me": me, "bell": _bell(request, me), "title": title,
              "current_path": request.url.path,
              "error": getattr(problem, "detail", None), "field_errors": field_errors,
              **context}
    return templates.TemplateResponse(request, name, values, status_code=status_code,
                                      headers=headers)
