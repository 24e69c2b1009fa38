"""The authorization matrix: every API route × every kind of caller → the expected status.

One table decides it. A route of the app with no row fails the coverage test,
so a new endpoint cannot ship without saying who may call it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlmodel import Session

from app.clients import service as clients_service
from app.core import ratelimit
from app.db import utcnow
from app.identity import tokens
from app.identity.models import PartnerApp, PartnerToken, StaffUser
from app.notifications import service as notifications
from app.risk.models import AgencyInstrument
from tests.support.identity import PASSWORD, bearer, make_org, make_user, staff_session

CALLERS = ("anonymous", "admin", "supervisor", "advocate", "auditor", "partner", "enrolling")


@dataclass
class World:
    tokens: dict[str, str]
    users: dict[str, StaffUser]
    other_org_user: StaffUser
    sessions: dict[str, str]
    other_session: str
    partner_apps: dict[str, str]
    clients: dict[str, str]
    notifications: dict[str, str]
    incidents: dict[str, str]  # an incident of each target's client


def partner_token(db: Session, org_id: Any, scopes: str) -> tuple[str, str]:
    app = PartnerApp(org_id=org_id, name="Fictional Shelter App", client_id=f"pa_{uuid4().hex}",
                     client_secret_digest="0" * 64, scopes=scopes)
    db.add(app)
    db.flush()
    token, lifetime = tokens.issue({"sub": app.client_id, "org": str(org_id), "scope": scopes},
                                   audience=tokens.PARTNER_AUDIENCE, lifetime_seconds=600)
    jti = tokens.decode(token).token_id
    db.add(PartnerToken(jti=jti, app_id=app.id, scope=scopes,
                        expires_at=utcnow() + timedelta(seconds=lifetime)))
    return token, str(app.id)


@pytest.fixture
def world(db: Session) -> World:
    ratelimit.reset_stores()
    org, other = make_org(db), make_org(db)
    users = {role: make_user(db, org, role) for role in ("admin", "supervisor", "advocate",
                                                          "auditor")}
    users["enrolling"] = make_user(db, org, "supervisor")
    spare_admin = make_user(db, org, "admin")  # so demoting an admin is not "the last admin"
    del spare_admin
    sessions = {role: staff_session(db, user) for role, user in users.items()}
    issued = {role: tokens.issue_staff_token(
        user_id=user.id, org_id=org.id, role=user.role, session_id=sessions[role].id,
        scope=tokens.ENROLMENT_SCOPE if role == "enrolling" else "")[0]
        for role, user in users.items()}
    all_scopes = "referrals:read referrals:write resources:read resources:write"
    issued["partner"], own_app = partner_token(db, org.id, all_scopes)
    _, other_app = partner_token(db, other.id, all_scopes)
    other_user = make_user(db, other, "advocate")
    other_session = staff_session(db, other_user)
    colleague = make_user(db, org, "advocate")
    db.add(AgencyInstrument(org_id=org.id, instrument_id="matrix-screen-base", version="1",
                            definition=MATRIX_INSTRUMENT.replace("VERSION", "base")))
    clients = {
        "own": _client(db, org.id, users["advocate"]),
        "other_caseload": _client(db, org.id, colleague),
        "other_org": _client(db, other.id, other_user),
    }
    incidents = {target: _incident(db, clients[target],
                                   other_user if target == "other_org" else users["supervisor"])
                 for target in clients}
    notes = {role: notifications.notify(db, org_id=org.id, user_ids=[user.id],
                                        kind="break_glass")[0].id
             for role, user in users.items()}
    notes["other_org"] = notifications.notify(db, org_id=other.id, user_ids=[other_user.id],
                                              kind="break_glass")[0].id
    db.commit()
    return World(issued, users, other_user, {k: str(v.id) for k, v in sessions.items()},
                 str(other_session.id), {"own": own_app, "other_org": other_app},
                 clients, {k: str(v) for k, v in notes.items()}, incidents)


def _client(db: Session, org_id: Any, advocate: StaffUser) -> str:
    from app.core.access import Actor

    actor = Actor(kind="user", id=advocate.id, org_id=org_id, role="advocate")
    return str(clients_service.create_client(db, actor, personal={
        "preferred_name": "Matrix Fictional"}).client.id)


Body = Callable[[World], Any]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    expected: dict[str, int]
    body: Body | None = None
    target: str = "own"  # which record a {placeholder} names: "own" or "other_org"
    form: dict[str, str] | None = None  # a form-encoded body (the OAuth endpoints)
    files: Body | None = None  # a multipart body (evidence uploads)


def user_id(w: World, target: str) -> str:
    return str(w.other_org_user.id if target == "other_org" else w.users["advocate"].id)


def new_user_body(_: World) -> dict[str, str]:
    return {"email": f"m-{uuid4().hex[:8]}@example.test", "display_name": "Matrix",
            "role": "advocate"}


MATRIX_INSTRUMENT = """
id: matrix-screen-VERSION
version: "1"
name: Fictional matrix screen
licence: Fictional, for tests
language: en
items:
  - {id: q1, text: "A fictional question?", type: yes_no, weight: 1}
scoring: {method: sum}
levels:
  - {name: low, min: 0, max: 0}
  - {name: high, min: 1}
"""

STAFF_ALL = {"admin": 200, "supervisor": 200, "advocate": 200, "auditor": 200}
DENY_OTHERS = {"anonymous": 401, "partner": 403, "enrolling": 403}


def client_rights(admin: int, supervisor: int, advocate: int, auditor: int = 403
                  ) -> dict[str, int]:
    return DENY_OTHERS | {"admin": admin, "supervisor": supervisor, "advocate": advocate,
                          "auditor": auditor}


def admin_only(allowed: int, *, other_org: bool = False) -> dict[str, int]:
    """Admins only; another org's record is simply not there for them."""
    return DENY_OTHERS | {"admin": 404 if other_org else allowed, "supervisor": 403,
                          "advocate": 403, "auditor": 403}


# The resource directory: readers read it all; writers change their own listings.
DIRECTORY_READERS = {"anonymous": 401, "admin": 200, "supervisor": 200, "advocate": 200,
                     "auditor": 403, "partner": 200, "enrolling": 403}


def directory_writers(ok: int) -> dict[str, int]:
    return {"anonymous": 401, "admin": ok, "supervisor": ok, "advocate": 403,
            "auditor": 403, "partner": ok, "enrolling": 403}


def webhook_rights(ok: int) -> dict[str, int]:
    """A partner app's own webhooks: only it reaches them; staff are refused."""
    return {"anonymous": 401, "partner": ok, "enrolling": 403} | dict.fromkeys(STAFF_ALL, 403)


MATRIX_WEBHOOK_URL = "https://93.184.215.14/advocase-matrix"  # a public address literal


# Which world referral each caller reaches: (supervisor, advocate, partner). "own" and
# "other_caseload" are sent to a listing of the partner caller's app, "other_partner" to
# another agency's partner app (addressed elsewhere), "other_org" is another agency's.
REFERRAL_REACH = {"own": (True, True, True), "other_caseload": (True, False, True),
                  "other_partner": (True, True, False), "other_org": (False, False, False)}


def referral_rights(target: str, staff_ok: int | None, partner_ok: int | None
                    ) -> dict[str, int]:
    """The answer within reach (404 outside it); None refuses the side outright (403)."""
    supervisor, advocate, partner = REFERRAL_REACH[target]

    def staff(reach: bool) -> int:
        return 403 if staff_ok is None else staff_ok if reach else 404

    return {"anonymous": 401, "enrolling": 403, "auditor": 403, "admin": staff(False),
            "supervisor": staff(supervisor), "advocate": staff(advocate),
            "partner": 403 if partner_ok is None else partner_ok if partner else 404}


# The OAuth endpoints authenticate the *client* (RFC 6749), not a bearer token, and
# answer RFC 6749 JSON errors rather than problem documents.
OAUTH_PATHS = {"/oauth/token", "/oauth/revoke"}

def _soon() -> str:
    return (utcnow() + timedelta(hours=2)).isoformat()


def _reminder_body(target: str) -> Body:
    return lambda w: {"due_at": _soon(), "client_id": w.clients[target],
                      "note": "Fictional matrix reminder"}


def _default_reminder_rules() -> dict[str, Any]:
    from app.reminders.schemas import ReminderRules

    return ReminderRules().model_dump(mode="json")


def _reminder_id(w: World, target: str) -> str:
    """A reminder of the target's client, assigned to its advocate, made for the row."""
    from sqlalchemy.orm import object_session

    from app.core.access import Actor
    from app.reminders import service as reminders
    from app.reminders.schemas import ReminderCreate

    db = object_session(w.users["supervisor"])
    assert db is not None
    user = w.other_org_user if target == "other_org" else w.users["supervisor"]
    actor = Actor(kind="user", id=user.id, org_id=user.org_id, role=user.role)
    made = reminders.create_reminder(db, actor, ReminderCreate(
        due_at=utcnow() + timedelta(hours=2), client_id=UUID(w.clients[target]),
        assignee_id=None if target == "other_org" else _advocate_of(db, w.clients[target])))
    db.commit()
    return str(made.reminder.id)


def _advocate_of(db: Session, client_id: str) -> UUID | None:
    from app.reminders.rules import primary_advocate

    return primary_advocate(db, UUID(client_id))

MATRIX: list[Route] = [
    Route("GET", "/healthz", dict.fromkeys(CALLERS, 200)),
    Route("GET", "/readyz", dict.fromkeys(CALLERS, 200)),
    # Without ADVOCASE_METRICS_TOKEN outside production (tests/system/test_metrics.py covers
    # the token and production): a staff or partner token is no metrics token.
    Route("GET", "/metrics", dict.fromkeys(CALLERS, 200)),
    Route("POST", "/api/v1/auth/login", dict.fromkeys(CALLERS, 401),
          body=lambda w: {"email": "nobody@example.test", "password": "wrong guess here"}),
    Route("POST", "/api/v1/auth/refresh", dict.fromkeys(CALLERS, 401),
          body=lambda w: {"refresh_token": "x" * 43}),
    Route("POST", "/api/v1/auth/accept-invitation", dict.fromkeys(CALLERS, 401),
          body=lambda w: {"token": "y" * 43, "password": "a long fictional passphrase"}),
    Route("POST", "/api/v1/auth/logout",
          {"anonymous": 401, "partner": 403, "enrolling": 204} | dict.fromkeys(STAFF_ALL, 204)),
    Route("GET", "/api/v1/me", DENY_OTHERS | STAFF_ALL),
    Route("POST", "/api/v1/me/password", DENY_OTHERS | dict.fromkeys(STAFF_ALL, 204),
          body=lambda w: {"current_password": PASSWORD,
                          "new_password": "another long fictional passphrase"}),
    Route("POST", "/api/v1/me/mfa",
          {"anonymous": 401, "partner": 403, "enrolling": 201} | dict.fromkeys(STAFF_ALL, 201)),
    Route("POST", "/api/v1/me/mfa/confirm",
          {"anonymous": 401, "partner": 403, "enrolling": 409} | dict.fromkeys(STAFF_ALL, 409),
          body=lambda w: {"totp_code": "123456"}),
    Route("GET", "/api/v1/sessions", DENY_OTHERS | STAFF_ALL),
    Route("DELETE", "/api/v1/sessions/{session_id}", DENY_OTHERS | dict.fromkeys(STAFF_ALL, 204)),
    Route("DELETE", "/api/v1/sessions/{session_id}", DENY_OTHERS | dict.fromkeys(STAFF_ALL, 404),
          target="other_org"),
    Route("GET", "/api/v1/users", DENY_OTHERS | {"admin": 200, "supervisor": 200,
                                                 "advocate": 403, "auditor": 403}),
    Route("POST", "/api/v1/users", DENY_OTHERS | {"admin": 201, "supervisor": 403,
                                                  "advocate": 403, "auditor": 403},
          body=new_user_body),
    Route("GET", "/api/v1/users/{user_id}", DENY_OTHERS | {"admin": 200, "supervisor": 200,
                                                           "advocate": 403, "auditor": 403}),
    Route("GET", "/api/v1/users/{user_id}", DENY_OTHERS | {"admin": 404, "supervisor": 404,
                                                           "advocate": 403, "auditor": 403},
          target="other_org"),
    Route("PATCH", "/api/v1/users/{user_id}", DENY_OTHERS | {"admin": 200, "supervisor": 403,
                                                             "advocate": 403, "auditor": 403},
          body=lambda w: {"display_name": "Renamed Fictional"}),
    Route("PATCH", "/api/v1/users/{user_id}", DENY_OTHERS | {"admin": 404, "supervisor": 404,
                                                             "advocate": 403, "auditor": 403},
          body=lambda w: {"display_name": "Renamed Fictional"}, target="other_org"),
    Route("POST", "/api/v1/users/{user_id}/mfa-reset",
          DENY_OTHERS | {"admin": 200, "supervisor": 403, "advocate": 403, "auditor": 403},
          body=lambda w: {"password": PASSWORD}),
    Route("POST", "/api/v1/users/{user_id}/mfa-reset",
          DENY_OTHERS | {"admin": 404, "supervisor": 404, "advocate": 403, "auditor": 403},
          body=lambda w: {"password": PASSWORD}, target="other_org"),
    Route("GET", "/api/v1/audit-events", DENY_OTHERS | {"admin": 403, "supervisor": 200,
                                                        "advocate": 403, "auditor": 200}),
    Route("GET", "/.well-known/oauth-authorization-server", dict.fromkeys(CALLERS, 200)),
    Route("GET", "/oauth/jwks", dict.fromkeys(CALLERS, 200)),
    Route("POST", "/oauth/token", dict.fromkeys(CALLERS, 401),
          form={"grant_type": "client_credentials"}),
    Route("POST", "/oauth/revoke", dict.fromkeys(CALLERS, 401), form={"token": "x" * 40}),
    Route("GET", "/api/v1/partner-apps", admin_only(200)),
    Route("POST", "/api/v1/partner-apps", admin_only(201),
          body=lambda w: {"name": "Fictional Legal Aid App", "scopes": ["referrals:read"]}),
    Route("GET", "/api/v1/partner-apps/{app_id}", admin_only(200)),
    Route("GET", "/api/v1/partner-apps/{app_id}", admin_only(200, other_org=True),
          target="other_org"),
    Route("PATCH", "/api/v1/partner-apps/{app_id}", admin_only(200),
          body=lambda w: {"name": "Renamed Fictional App"}),
    Route("PATCH", "/api/v1/partner-apps/{app_id}", admin_only(200, other_org=True),
          body=lambda w: {"name": "Renamed Fictional App"}, target="other_org"),
    Route("POST", "/api/v1/partner-apps/{app_id}/secret", admin_only(200)),
    Route("POST", "/api/v1/partner-apps/{app_id}/secret", admin_only(200, other_org=True),
          target="other_org"),
    # Clients: admins read nothing without emergency access; auditors nothing at all.
    Route("GET", "/api/v1/clients", client_rights(200, 200, 200)),
    Route("POST", "/api/v1/clients/search", client_rights(200, 200, 200),
          body=lambda w: {"name": "Matrix Fictional"}),
    Route("POST", "/api/v1/clients", client_rights(403, 201, 201),
          body=lambda w: {"preferred_name": "New Fictional"}),
    Route("GET", "/api/v1/clients/{client_id}", client_rights(404, 200, 200)),
    Route("GET", "/api/v1/clients/{client_id}", client_rights(404, 200, 404),
          target="other_caseload"),
    Route("GET", "/api/v1/clients/{client_id}", client_rights(404, 404, 404),
          target="other_org"),
    Route("PATCH", "/api/v1/clients/{client_id}", client_rights(404, 200, 200),
          body=lambda w: {"notes": "Fictional update"}),
    Route("PATCH", "/api/v1/clients/{client_id}", client_rights(404, 200, 404),
          body=lambda w: {"notes": "Fictional update"}, target="other_caseload"),
    Route("PATCH", "/api/v1/clients/{client_id}", client_rights(404, 404, 404),
          body=lambda w: {"notes": "Fictional update"}, target="other_org"),
    Route("DELETE", "/api/v1/clients/{client_id}", client_rights(403, 204, 403)),
    Route("DELETE", "/api/v1/clients/{client_id}", client_rights(403, 404, 403),
          target="other_org"),
    Route("POST", "/api/v1/clients/{client_id}/break-glass", client_rights(201, 201, 201),
          body=lambda w: {"reason": "Fictional emergency on the hotline"},
          target="other_caseload"),
    Route("POST", "/api/v1/clients/{client_id}/break-glass", client_rights(404, 404, 404),
          body=lambda w: {"reason": "Fictional emergency on the hotline"}, target="other_org"),
    Route("GET", "/api/v1/clients/{client_id}/household", client_rights(404, 200, 200)),
    Route("GET", "/api/v1/clients/{client_id}/household", client_rights(404, 200, 404),
          target="other_caseload"),
    Route("GET", "/api/v1/clients/{client_id}/household", client_rights(404, 404, 404),
          target="other_org"),
    Route("PUT", "/api/v1/clients/{client_id}/household", client_rights(404, 200, 200),
          body=lambda w: {"children": [{"age": 4}], "pets": []}),
    Route("PUT", "/api/v1/clients/{client_id}/household", client_rights(404, 200, 404),
          body=lambda w: {"children": [], "pets": []}, target="other_caseload"),
    Route("PUT", "/api/v1/clients/{client_id}/household", client_rights(404, 404, 404),
          body=lambda w: {"children": [], "pets": []}, target="other_org"),
    Route("GET", "/api/v1/risk-instruments", DENY_OTHERS | STAFF_ALL),
    Route("GET", "/api/v1/risk-instruments/{instrument_id}", DENY_OTHERS | STAFF_ALL),
    Route("POST", "/api/v1/risk-instruments", client_rights(201, 201, 403),
          body=lambda w: {"definition": MATRIX_INSTRUMENT.replace("VERSION", uuid4().hex[:6])}),
    Route("GET", "/api/v1/clients/{client_id}/risk-assessments", client_rights(404, 200, 200)),
    Route("GET", "/api/v1/clients/{client_id}/risk-assessments", client_rights(404, 200, 404),
          target="other_caseload"),
    Route("GET", "/api/v1/clients/{client_id}/risk-assessments", client_rights(404, 404, 404),
          target="other_org"),
    Route("POST", "/api/v1/clients/{client_id}/risk-assessments", client_rights(404, 201, 201),
          body=lambda w: {"instrument_id": "matrix-screen-base", "answers": {"q1": True}}),
    Route("POST", "/api/v1/clients/{client_id}/risk-assessments", client_rights(404, 201, 404),
          body=lambda w: {"instrument_id": "matrix-screen-base", "answers": {"q1": True}},
          target="other_caseload"),
    Route("POST", "/api/v1/clients/{client_id}/risk-assessments", client_rights(404, 404, 404),
          body=lambda w: {"instrument_id": "matrix-screen-base", "answers": {"q1": True}},
          target="other_org"),
    Route("GET", "/api/v1/notifications", DENY_OTHERS | STAFF_ALL),
    Route("POST", "/api/v1/notifications/{notification_id}/read", DENY_OTHERS | STAFF_ALL),
    Route("POST", "/api/v1/notifications/{notification_id}/read",
          DENY_OTHERS | dict.fromkeys(STAFF_ALL, 404), target="other_org"),
    # Reminders: an advocate reaches their own and their caseload's, supervisors the
    # agency's; admins and auditors only reminders assigned to them (none here).
    Route("GET", "/api/v1/reminders", DENY_OTHERS | STAFF_ALL),
    *[Route("POST", "/api/v1/reminders", rights, body=_reminder_body(target), target=target)
      for target, rights in (("own", client_rights(403, 201, 201)),
                             ("other_caseload", client_rights(403, 201, 404)),
                             ("other_org", client_rights(403, 404, 404)))],
    *[Route(method, f"/api/v1/reminders/{{reminder_id}}{action}", rights, body=body,
            target=target)
      for method, action, body in (("GET", "", None),
                                   ("POST", "/snooze", lambda w: {"until": _soon()}),
                                   ("POST", "/complete", None),
                                   ("POST", "/reassign", lambda w: {
                                       "assignee_id": str(w.users["advocate"].id)}))
      for target, rights in (("own", client_rights(404, 200, 200, 404)),
                             ("other_caseload", client_rights(404, 200, 404, 404)),
                             ("other_org", client_rights(404, 404, 404, 404)))],
    Route("GET", "/api/v1/reminder-settings", client_rights(200, 200, 403)),
    Route("PUT", "/api/v1/reminder-settings", client_rights(200, 200, 403),
          body=lambda w: _default_reminder_rules()),
    Route("GET", "/api/v1/notification-preferences", DENY_OTHERS | STAFF_ALL),
    Route("PUT", "/api/v1/notification-preferences", DENY_OTHERS | STAFF_ALL,
          body=lambda w: {"quiet_start": "22:00", "quiet_end": "07:00"}),
    # Consents and the service log follow the client: readers list, writers record.
    Route("GET", "/api/v1/clients/{client_id}/consents", client_rights(404, 200, 200)),
    Route("GET", "/api/v1/clients/{client_id}/consents", client_rights(404, 200, 404),
          target="other_caseload"),
    Route("GET", "/api/v1/clients/{client_id}/consents", client_rights(404, 404, 404),
          target="other_org"),
    Route("POST", "/api/v1/clients/{client_id}/consents", client_rights(404, 201, 201),
          body=lambda w: release_body()),
    Route("POST", "/api/v1/clients/{client_id}/consents", client_rights(404, 201, 404),
          body=lambda w: release_body(), target="other_caseload"),
    Route("POST", "/api/v1/clients/{client_id}/consents", client_rights(404, 404, 404),
          body=lambda w: release_body(), target="other_org"),
    Route("POST", "/api/v1/clients/{client_id}/consents/{consent_id}/revoke",
          client_rights(404, 200, 200), body=lambda w: {"reason": "Fictional withdrawal"}),
    Route("POST", "/api/v1/clients/{client_id}/consents/{consent_id}/revoke",
          client_rights(404, 200, 404), body=lambda w: {"reason": "Fictional withdrawal"},
          target="other_caseload"),
    Route("POST", "/api/v1/clients/{client_id}/consents/{consent_id}/revoke",
          client_rights(404, 404, 404), body=lambda w: {"reason": "Fictional withdrawal"},
          target="other_org"),
    Route("GET", "/api/v1/clients/{client_id}/contacts", client_rights(404, 200, 200)),
    Route("GET", "/api/v1/clients/{client_id}/contacts", client_rights(404, 200, 404),
          target="other_caseload"),
    Route("GET", "/api/v1/clients/{client_id}/contacts", client_rights(404, 404, 404),
          target="other_org"),
    Route("POST", "/api/v1/clients/{client_id}/contacts", client_rights(404, 201, 201),
          body=lambda w: contact_body()),
    Route("POST", "/api/v1/clients/{client_id}/contacts", client_rights(404, 201, 404),
          body=lambda w: contact_body(), target="other_caseload"),
    Route("POST", "/api/v1/clients/{client_id}/contacts", client_rights(404, 404, 404),
          body=lambda w: contact_body(), target="other_org"),
    Route("GET", "/api/v1/clients/{client_id}/contacts/{contact_id}",
          client_rights(404, 200, 200)),
    Route("GET", "/api/v1/clients/{client_id}/contacts/{contact_id}",
          client_rights(404, 200, 404), target="other_caseload"),
    Route("GET", "/api/v1/clients/{client_id}/contacts/{contact_id}",
          client_rights(404, 404, 404), target="other_org"),
    # Safety plans follow the client: readers read every version, writers add one.
    Route("GET", "/api/v1/safety-plan-template", client_rights(200, 200, 200)),
    # The agency's own template: supervisors and admins replace it.
    Route("PUT", "/api/v1/safety-plan-template", client_rights(200, 200, 403),
          body=lambda w: safety_plan_template_body()),
    Route("GET", "/api/v1/clients/{client_id}/safety-plans", client_rights(404, 200, 200)),
    Route("GET", "/api/v1/clients/{client_id}/safety-plans", client_rights(404, 200, 404),
          target="other_caseload"),
    Route("GET", "/api/v1/clients/{client_id}/safety-plans", client_rights(404, 404, 404),
          target="other_org"),
    Route("POST", "/api/v1/clients/{client_id}/safety-plans", client_rights(404, 201, 201),
          body=lambda w: safety_plan_body()),
    Route("POST", "/api/v1/clients/{client_id}/safety-plans", client_rights(404, 201, 404),
          body=lambda w: safety_plan_body(), target="other_caseload"),
    Route("POST", "/api/v1/clients/{client_id}/safety-plans", client_rights(404, 404, 404),
          body=lambda w: safety_plan_body(), target="other_org"),
    *[Route("GET", f"/api/v1/clients/{{client_id}}/safety-plans/{leaf}", rights, target=target)
      for leaf in ("current", "diff", "{version}")
      for target, rights in (("own", client_rights(404, 200, 200)),
                             ("other_caseload", client_rights(404, 200, 404)),
                             ("other_org", client_rights(404, 404, 404)))],
    # The client's printable copy: the same reach as reading the plan.
    *[Route("GET", f"/api/v1/clients/{{client_id}}/safety-plans/{leaf}/print", rights,
            target=target)
      for leaf in ("current", "{version}")
      for target, rights in (("own", client_rights(404, 200, 200)),
                             ("other_caseload", client_rights(404, 200, 404)),
                             ("other_org", client_rights(404, 404, 404)))],
    # Incidents follow the client: readers read every revision, writers record, revise
    # and retract; partner apps and auditors never reach them.
    *[Route(method, path, rights(ok), body=body, target=target)
      for path, method, ok, body in (
          ("/api/v1/clients/{client_id}/incidents", "GET", 200, None),
          ("/api/v1/clients/{client_id}/incidents", "POST", 201,
           lambda w: matrix_incident_body()),
          ("/api/v1/incidents/{incident_id}", "GET", 200, None),
          ("/api/v1/incidents/{incident_id}/revisions", "GET", 200, None),
          ("/api/v1/incidents/{incident_id}/revisions", "POST", 201,
           lambda w: matrix_incident_body() | {"place": "Fictional corrected place",
                                               "reason": "Fictional correction",
                                               "based_on_revision": 1}),
          ("/api/v1/incidents/{incident_id}/retract", "POST", 200,
           lambda w: {"reason": "Fictional retraction"}))
      for target, rights in (("own", lambda ok: client_rights(404, ok, ok)),
                             ("other_caseload", lambda ok: client_rights(404, ok, 404)),
                             ("other_org", lambda ok: client_rights(404, 404, 404)))],
    # Protective orders, court dates and the timeline follow the client: readers read,
    # writers record and change; partner apps and auditors never reach them.
    *[Route(method, f"/api/v1/clients/{{client_id}}/{leaf}", rights(ok), body=body,
            target=target)
      for leaf, method, ok, body in (
          ("protective-orders", "GET", 200, None),
          ("protective-orders", "POST", 201, lambda w: protective_order_body()),
          ("protective-orders/{order_id}", "GET", 200, None),
          ("protective-orders/{order_id}", "PATCH", 200, lambda w: legal_note_body()),
          ("court-dates", "GET", 200, None),
          ("court-dates", "POST", 201, lambda w: court_date_body()),
          ("court-dates/{court_date_id}", "GET", 200, None),
          ("court-dates/{court_date_id}", "PATCH", 200, lambda w: legal_note_body()),
          ("timeline", "GET", 200, None))
      for target, rights in (("own", lambda ok: client_rights(404, ok, ok)),
                             ("other_caseload", lambda ok: client_rights(404, ok, 404)),
                             ("other_org", lambda ok: client_rights(404, 404, 404)))],
    # Evidence follows its incident's client: readers list, view and download, writers
    # upload; partner apps and auditors never reach it.
    *[Route(method, path, rights(ok), files=files, target=target)
      for path, method, ok, files in (
          ("/api/v1/incidents/{incident_id}/evidence", "POST", 201,
           lambda w: matrix_evidence_file()),
          ("/api/v1/incidents/{incident_id}/evidence", "GET", 200, None),
          ("/api/v1/evidence/{evidence_id}", "GET", 200, None),
          ("/api/v1/evidence/{evidence_id}/content", "GET", 200, None))
      for target, rights in (("own", lambda ok: client_rights(404, ok, ok)),
                             ("other_caseload", lambda ok: client_rights(404, ok, 404)),
                             ("other_org", lambda ok: client_rights(404, 404, 404)))],
    # The resource directory is shared: every reader reads every listing. Listings are
    # changed by the owning agency's supervisors and admins or by the partner app whose
    # listing it is; anyone else's listing is not found.
    Route("GET", "/api/v1/resources", DIRECTORY_READERS),
    Route("GET", "/api/v1/resources/export", DIRECTORY_READERS),
    Route("POST", "/api/v1/resources", directory_writers(201),
          body=lambda w: matrix_resource_body()),
    Route("POST", "/api/v1/resources/import", directory_writers(201),
          files=lambda w: matrix_resource_csv()),
    *[Route("GET", "/api/v1/resources/{resource_id}", DIRECTORY_READERS, target=target)
      for target in ("own", "other_org")],
    *[Route(method, path, directory_writers(ok if target == "own" else 404), body=body,
            target=target)
      for path, method, ok, body in (
          ("/api/v1/resources/{resource_id}", "PATCH", 200,
           lambda w: {"description": "Fictional matrix update"}),
          ("/api/v1/resources/{resource_id}/capacity", "PATCH", 200,
           lambda w: {"beds_available": 1}),
          ("/api/v1/resources/{resource_id}", "DELETE", 204, None))
      for target in ("own", "other_org")],
    # Webhook endpoints belong to a partner app (referrals:read): staff never manage them,
    # and another app's endpoint (here another agency's) is not found.
    Route("GET", "/api/v1/webhooks", webhook_rights(200)),
    Route("POST", "/api/v1/webhooks", webhook_rights(201),
          body=lambda w: {"url": MATRIX_WEBHOOK_URL, "event_types": ["referral.sent"]}),
    *[Route(method, f"/api/v1/webhooks/{{endpoint_id}}{leaf}",
            webhook_rights(ok if target == "own" else 404), body=body, target=target)
      for leaf, method, ok, body in (
          ("", "GET", 200, None),
          ("", "PATCH", 200, lambda w: {"is_active": False}),
          ("", "DELETE", 204, None),
          ("/rotate-secret", "POST", 200, None),
          ("/deliveries", "GET", 200, None),
          ("/deliveries/{delivery_id}/replay", "POST", 202, None))
      for target in ("own", "other_org")],
    # Referrals: staff reach them through the client; a partner app only those sent to its
    # own listings (one addressed elsewhere is not there). The sending agency sends,
    # withdraws and previews; the recipient answers and writes notes.
    Route("GET", "/api/v1/referrals", DENY_OTHERS | {"partner": 200, "admin": 200,
                                                     "supervisor": 200, "advocate": 200,
                                                     "auditor": 403}),
    *[Route("POST", "/api/v1/referrals", rights, target=target,
            body=lambda w, target=target: _referral_body(w, target))
      for target, rights in (("own", client_rights(404, 201, 201)),
                             ("other_caseload", client_rights(404, 201, 404)),
                             ("other_org", client_rights(404, 404, 404)))],
    *[Route(method, f"/api/v1/referrals/{{referral_id}}{leaf}",
            referral_rights(target, staff_ok, partner_ok), body=body, target=target)
      for leaf, method, staff_ok, partner_ok, body in (
          ("", "GET", 200, 200, None),
          ("/preview", "GET", 200, None, None),
          ("/send", "POST", 200, None, lambda w: {"reason": "Fictional matrix reason"}),
          ("/withdraw", "POST", 200, None, lambda w: {"reason": "Fictional matrix reason"}),
          ("/accept", "POST", 403, 200, lambda w: {"reason": "Fictional matrix reason"}),
          ("/decline", "POST", 403, 200, lambda w: {"reason": "Fictional matrix reason"}),
          ("/complete", "POST", 403, 200, lambda w: {"reason": "Fictional matrix reason"}),
          ("/close", "POST", 403, 200, lambda w: {"reason": "Fictional matrix reason"}),
          ("/notes", "POST", None, 201, lambda w: {"body": "Fictional matrix note"}))
      for target in REFERRAL_REACH],
    # Reports follow their client: those who may work on the client request one; those who
    # read it follow and download it (409 here: not built yet). Anyone on the agency's
    # client staff may check a file; the manifest keys are public.
    *[Route("POST", "/api/v1/reports", rights, target=target,
            body=lambda w, target=target: _report_body(w, target))
      for target, rights in (("own", client_rights(404, 202, 202)),
                             ("other_caseload", client_rights(404, 202, 404)),
                             ("other_org", client_rights(404, 404, 404)))],
    *[Route("GET", f"/api/v1/reports/{{report_id}}{leaf}", rights(ok), target=target)
      for leaf, ok in (("", 200), ("/download", 409))
      for target, rights in (("own", lambda ok: client_rights(404, ok, ok)),
                             ("other_caseload", lambda ok: client_rights(404, ok, 404)),
                             ("other_org", lambda ok: client_rights(404, 404, 404)))],
    # An agency's funder aggregate: its supervisors and admins ask for it and read it; an
    # advocate is refused (403), and finds none to read (404).
    Route("POST", "/api/v1/reports", client_rights(202, 202, 403), target="funder",
          body=lambda w: {"kind": "funder_aggregate", "period": {
              "start": (utcnow().date() - timedelta(days=30)).isoformat(),
              "end": utcnow().date().isoformat()}}),
    *[Route("GET", f"/api/v1/reports/{{report_id}}{leaf}", client_rights(ok, ok, 404),
            target="funder") for leaf, ok in (("", 200), ("/download", 409))],
    Route("POST", "/api/v1/reports/verify", client_rights(200, 200, 200),
          files=lambda w: {"file": ("fictional.txt", b"Fictional, not a report\n",
                                    "text/plain")}),
    *[Route("GET", "/api/v1/orgs/{org_id}/report-key", dict.fromkeys(CALLERS, 200),
            target=target) for target in ("own", "other_org")],
]

# Served by the framework, not by our routers.
FRAMEWORK_ROUTES = {("GET", "/openapi.json"), ("GET", "/docs"), ("HEAD", "/docs"),
                    ("GET", "/docs/oauth2-redirect"), ("HEAD", "/docs/oauth2-redirect"),
                    ("HEAD", "/openapi.json")}


def api_routes(app: Any) -> set[tuple[str, str]]:
    """Every (method, path) the app serves outside the dashboard, found by walking the
    router tree (included routers are nested objects, not flat APIRoutes)."""
    found: set[tuple[str, str]] = set()

    def walk(routes: Any, prefix: str = "") -> None:
        for route in routes:
            nested = getattr(route, "original_router", None) or getattr(route, "router", None)
            if isinstance(route, APIRoute):
                path = prefix + route.path
                if not path.startswith("/dashboard"):
                    found.update((method, path) for method in route.methods)
            elif nested is not None and nested is not app.router:
                walk(nested.routes, prefix + getattr(route, "prefix", ""))

    walk(app.routes)
    assert found, "found no routes at all: the walk is broken"
    return found


def test_every_route_has_a_row(app) -> None:
    covered = {(row.method, row.path) for row in MATRIX}
    missing = api_routes(app) - covered - FRAMEWORK_ROUTES
    assert not missing, f"routes without a row in the authorization matrix: {sorted(missing)}"
    for row in MATRIX:
        assert set(row.expected) == set(CALLERS), f"{row.method} {row.path}: a caller is missing"


def release_body() -> dict[str, Any]:
    return {"recipient_name": "Fictional Matrix Shelter", "purpose": "Fictional referral",
            "categories": ["contact_details"], "how_given": "written",
            "expires_at": (utcnow() + timedelta(days=30)).isoformat()}


def contact_body() -> dict[str, Any]:
    return {"kind": "hotline_call", "occurred_on": utcnow().date().isoformat(),
            "duration_minutes": 15}


def _client_record_id(w: World, target: str, kind: str) -> str:
    """A consent or service contact of the target's client, made for the row (the world
    has none): by its org's supervisor, or by the other org's advocate."""
    from sqlalchemy.orm import object_session

    from app.consents import service as consents
    from app.core.access import Actor
    from app.service_log import service as service_log

    db = object_session(w.users["supervisor"])
    assert db is not None
    user = w.other_org_user if target == "other_org" else w.users["supervisor"]
    actor = Actor(kind="user", id=user.id, org_id=user.org_id, role=user.role)
    client_id = UUID(w.clients[target])
    if kind == "consent":
        made = str(consents.record_release(
            db, actor, client_id, recipient_name="Fictional Placeholder Agency",
            purpose="Fictional", categories=["identity"], how_given="written",
            expires_at=utcnow() + timedelta(days=30)).release.id)
    else:
        made = str(service_log.record_contact(db, actor, client_id, kind="in_person",
                                              occurred_on=utcnow().date()).contact.id)
    db.commit()
    return made


def safety_plan_body() -> dict[str, Any]:
    return {"content": {"go_bag": [{"item": "Fictional passport", "ready": True}]},
            "review_date": (utcnow().date() + timedelta(days=30)).isoformat()}


def safety_plan_template_body() -> dict[str, Any]:
    return {"go_bag": ["Fictional documents"], "technology_safety": ["Fictional step"]}


def _safety_plan_version(w: World, target: str) -> str:
    """A safety plan of the target's client, made for the rows that read one."""
    from sqlalchemy.orm import object_session

    from app.core.access import Actor
    from app.safety_plans import service as safety_plans

    db = object_session(w.users["supervisor"])
    assert db is not None
    user = w.other_org_user if target == "other_org" else w.users["supervisor"]
    actor = Actor(kind="user", id=user.id, org_id=user.org_id, role=user.role)
    made = safety_plans.create_version(db, actor, UUID(w.clients[target]),
                                       content=safety_plan_body()["content"],
                                       review_date=utcnow().date())
    db.commit()
    return str(made.plan.version)


def matrix_incident_body() -> dict[str, Any]:
    return {"occurred": {"precision": "date", "start": utcnow().date().isoformat(),
                         "time_zone": "UTC"},
            "categories": ["emotional_verbal"], "place": "Fictional matrix place"}


def _incident(db: Session, client_id: str, author: StaffUser) -> str:
    """An incident of a world client, recorded by a colleague who may write it."""
    from app.core.access import Actor
    from app.incidents import schemas as incident_schemas
    from app.incidents import service as incidents

    actor = Actor(kind="user", id=author.id, org_id=author.org_id, role=author.role)
    body = incident_schemas.IncidentCreate.model_validate(matrix_incident_body())
    return str(incidents.record_incident(db, actor, UUID(client_id), body).incident.id)


def protective_order_body() -> dict[str, Any]:
    return {"order_type": "emergency", "court": "Fictional Matrix Court"}


def court_date_body() -> dict[str, Any]:
    return {"kind": "custody", "starts_at": (utcnow() + timedelta(days=7)).isoformat(),
            "time_zone": "UTC"}


def legal_note_body() -> dict[str, Any]:
    return {"notes": "Fictional matrix note"}


def _legal_record_id(w: World, target: str, kind: str) -> str:
    """A protective order or court date of the target's client, made for the row."""
    from sqlalchemy.orm import object_session

    from app.core.access import Actor
    from app.legal import service as legal

    db = object_session(w.users["supervisor"])
    assert db is not None
    user = w.other_org_user if target == "other_org" else w.users["supervisor"]
    actor = Actor(kind="user", id=user.id, org_id=user.org_id, role=user.role)
    client_id = UUID(w.clients[target])
    if kind == "order":
        made = str(legal.record_order(db, actor, client_id, order_type="temporary").order.id)
    else:
        made = str(legal.record_court_date(
            db, actor, client_id, kind="criminal", starts_at=utcnow() + timedelta(days=3),
            time_zone="UTC").hearing.id)
    db.commit()
    return made


MATRIX_EVIDENCE = b"Fictional matrix evidence: a saved text message.\n"


def matrix_evidence_file() -> dict[str, Any]:
    return {"file": ("matrix-note.txt", MATRIX_EVIDENCE, "text/plain")}


def _evidence_id(w: World, target: str) -> str:
    """Evidence of the target's incident, uploaded through the service for the row."""
    from sqlalchemy.orm import object_session

    from app.core.access import Actor
    from app.core.storage import get_storage
    from app.evidence import service as evidence

    db = object_session(w.users["supervisor"])
    assert db is not None
    user = w.other_org_user if target == "other_org" else w.users["supervisor"]
    actor = Actor(kind="user", id=user.id, org_id=user.org_id, role=user.role)
    upload = evidence.start_upload(db, actor, UUID(w.incidents[target]))
    body = (b'--matrix\r\nContent-Disposition: form-data; name="file"; filename="m.txt"\r\n'
            b"\r\n" + MATRIX_EVIDENCE + b"\r\n--matrix--\r\n")
    made = evidence.receive_upload(db, actor, upload, [body],
                                   content_type="multipart/form-data; boundary=matrix",
                                   purpose=None, storage=get_storage(), max_bytes=1024 * 1024)
    db.commit()
    return str(made.evidence.id)


def matrix_resource_body() -> dict[str, Any]:
    return {"name": "Fictional Matrix Hotline", "categories": ["hotline"]}


def matrix_resource_csv() -> dict[str, Any]:
    return {"file": ("matrix.csv", b"name,categories\r\nFictional Matrix Clinic,legal_aid\r\n",
                     "text/csv")}


def _resource_id(w: World, target: str) -> str:
    """A listing of the target's agency kept by its partner app, made for the row."""
    from sqlalchemy.orm import object_session

    from app.core.access import Actor
    from app.resources import service as resources
    from app.resources.schemas import ResourceCreate

    db = object_session(w.users["supervisor"])
    assert db is not None
    org_id = w.other_org_user.org_id if target == "other_org" else w.users["supervisor"].org_id
    app = Actor(kind="partner_app", id=UUID(w.partner_apps[target]), org_id=org_id,
                scopes=frozenset({"resources:write"}))
    made = resources.create_resource(db, app, ResourceCreate.model_validate(
        matrix_resource_body() | {"capacity": {"beds_total": 4, "beds_available": 2}}))
    db.commit()
    return str(made.id)


def _webhook_ids(w: World, target: str) -> tuple[str, str]:
    """An endpoint of the target's partner app and a delivery waiting for it, made for
    the row (rows, not emit(): nothing is sent to a broker)."""
    from sqlalchemy.orm import object_session

    from app.core.access import Actor
    from app.webhooks import service as webhooks
    from app.webhooks.models import WebhookDelivery, WebhookEvent

    db = object_session(w.users["supervisor"])
    assert db is not None
    org_id = w.other_org_user.org_id if target == "other_org" else w.users["supervisor"].org_id
    app = Actor(kind="partner_app", id=UUID(w.partner_apps[target]), org_id=org_id,
                scopes=frozenset({"referrals:read"}))
    endpoint, _ = webhooks.create_endpoint(db, app, url=MATRIX_WEBHOOK_URL,
                                           event_types=["referral.sent"])
    event = WebhookEvent(org_id=org_id, event_type="referral.sent", subject_id=uuid4())
    delivery = WebhookDelivery(org_id=org_id, endpoint_id=endpoint.id, event_id=event.id)
    db.add(event)
    db.flush()
    db.add(delivery)
    db.commit()
    return str(endpoint.id), str(delivery.id)


def _matrix_listing(w: World, db: Session, app: str) -> Any:
    """A directory listing kept by the world's partner app ("own") or the other org's."""
    from app.resources.models import Resource

    org_id = w.users["supervisor"].org_id if app == "own" else w.other_org_user.org_id
    listing = Resource(org_id=org_id, partner_app_id=UUID(w.partner_apps[app]),
                       name=f"Fictional Matrix Shelter {uuid4().hex[:6]}", categories=["shelter"])
    db.add(listing)
    db.flush()
    return listing


def _referral_body(w: World, target: str) -> dict[str, Any]:
    from sqlalchemy.orm import object_session

    db = object_session(w.users["supervisor"])
    assert db is not None
    listing = _matrix_listing(w, db, "own")
    db.commit()
    return {"client_id": w.clients[target], "resource_id": str(listing.id),
            "reason": "Fictional matrix referral"}


def _referral_id(w: World, target: str, path: str) -> str:
    """A referral of the target's client, in the state the row's action starts from:
    a draft to send, an accepted one to complete or close, a sent one otherwise."""
    from sqlalchemy.orm import object_session

    from app.core.access import Actor
    from app.referrals import service as referrals

    db = object_session(w.users["supervisor"])
    assert db is not None
    action = path.rsplit("/", 1)[-1]
    client = "own" if target == "other_partner" else target
    user = w.other_org_user if target == "other_org" else w.users["supervisor"]
    sender = Actor(kind="user", id=user.id, org_id=user.org_id, role=user.role)
    app = "own" if target in ("own", "other_caseload") else "other_org"
    listing = _matrix_listing(w, db, app)
    made = referrals.create_referral(db, sender, client_id=UUID(w.clients[client]),
                                     resource_id=listing.id, categories=["identity"],
                                     reason="Fictional matrix referral").referral
    if action != "send":
        referrals.send_referral(db, sender, made.id, reason="Fictional matrix reason")
    if action in ("complete", "close"):
        recipient = Actor(kind="partner_app", id=UUID(w.partner_apps[app]),
                          org_id=listing.org_id, scopes=frozenset({"referrals:write"}))
        referrals.answer_referral(db, recipient, made.id, "accept",
                                  reason="Fictional matrix reason")
    db.commit()
    return str(made.id)


def _report_body(w: World, target: str) -> dict[str, Any]:
    """A court summary of the target's client: its one incident, today's period."""
    today = utcnow().date()
    return {"kind": "court_summary", "client_id": w.clients[target],
            "period": {"start": (today - timedelta(days=2)).isoformat(),
                       "end": today.isoformat()},
            "incident_ids": [w.incidents[target]]}


def _report_id(w: World, target: str) -> str:
    """A queued report of the target's client, requested for the row."""
    from sqlalchemy.orm import object_session

    from app.core.access import Actor
    from app.reports import service as reports
    from app.reports.schemas import CourtSummaryCreate

    db = object_session(w.users["supervisor"])
    assert db is not None
    user = w.other_org_user if target == "other_org" else w.users["supervisor"]
    actor = Actor(kind="user", id=user.id, org_id=user.org_id, role=user.role)
    if target == "funder":
        from app.reports.schemas import FunderAggregateCreate

        today = utcnow().date()
        aggregate = reports.request_funder_aggregate(db, actor, FunderAggregateCreate(
            kind="funder_aggregate", period={"start": today - timedelta(days=30),
                                             "end": today}))
        db.commit()
        return str(aggregate.id)
    made = reports.request_court_summary(
        db, actor, CourtSummaryCreate.model_validate(_report_body(w, target)))
    db.commit()
    return str(made.id)


def _path(row: Route, w: World, caller: str) -> str:
    path = row.path
    if "{user_id}" in path:
        path = path.replace("{user_id}", user_id(w, row.target))
    if "{client_id}" in path:
        path = path.replace("{client_id}", w.clients[row.target])
    path = path.replace("{instrument_id}", "example-safety-screen")
    for placeholder, kind in (("{consent_id}", "consent"), ("{contact_id}", "contact")):
        if placeholder in path:
            path = path.replace(placeholder, _client_record_id(w, row.target, kind))
    for placeholder, kind in (("{order_id}", "order"), ("{court_date_id}", "court_date")):
        if placeholder in path:
            path = path.replace(placeholder, _legal_record_id(w, row.target, kind))
    if "/safety-plans/" in path:
        path = path.replace("{version}", _safety_plan_version(w, row.target))
    if "{incident_id}" in path:
        path = path.replace("{incident_id}", w.incidents[row.target])
    if "{evidence_id}" in path:
        path = path.replace("{evidence_id}", _evidence_id(w, row.target))
    if "{notification_id}" in path:
        key = "other_org" if row.target == "other_org" else caller
        path = path.replace("{notification_id}",
                            w.notifications.get(key, w.notifications["other_org"]))
    if "{resource_id}" in path:
        path = path.replace("{resource_id}", _resource_id(w, row.target))
    if "{endpoint_id}" in path:
        endpoint_id, delivery_id = _webhook_ids(w, row.target)
        path = path.replace("{endpoint_id}", endpoint_id).replace("{delivery_id}", delivery_id)
    if "{app_id}" in path:
        path = path.replace("{app_id}", w.partner_apps[row.target])
    if "{session_id}" in path:
        own = w.sessions.get(caller, w.sessions["advocate"])
        path = path.replace("{session_id}", w.other_session if row.target == "other_org" else own)
    if "{reminder_id}" in path:
        path = path.replace("{reminder_id}", _reminder_id(w, row.target))
    if "{referral_id}" in path:
        path = path.replace("{referral_id}", _referral_id(w, row.target, row.path))
    if "{report_id}" in path:
        path = path.replace("{report_id}", _report_id(w, row.target))
    if "{org_id}" in path:
        path = path.replace("{org_id}", str(w.other_org_user.org_id if row.target == "other_org"
                                            else w.users["supervisor"].org_id))
    return path


CASES = [pytest.param(row, caller, id=f"{row.method} {row.path} [{row.target}] as {caller}")
         for row in MATRIX for caller in CALLERS]


@pytest.mark.parametrize(("row", "caller"), CASES)
def test_matrix(client: TestClient, world: World, row: Route, caller: str) -> None:
    headers = bearer(world.tokens[caller]) if caller != "anonymous" else {}
    kwargs: dict[str, Any] = {"headers": headers}
    if row.body is not None:
        kwargs["json"] = row.body(world)
    if row.form is not None:
        kwargs["data"] = row.form
    if row.files is not None:
        kwargs["files"] = row.files(world)
    response = client.request(row.method, _path(row, world, caller), **kwargs)
    assert response.status_code == row.expected[caller], response.text
    if response.status_code >= 400:
        expected_type = ("application/json" if row.path in OAUTH_PATHS
                         else "application/problem+json")
        assert response.headers["content-type"].startswith(expected_type)
