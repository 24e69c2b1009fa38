"""Safety plans: versions recorded, read, compared and printed; the agency's template.

A plan is never edited in place: every change is a new :class:`SafetyPlanVersion` with
the next version number (1, 2, 3 … per client), so every earlier version stays readable
exactly as it was. Plans are reached through the client (``clients.service.get_client``):
a client outside the caller's reach, and its plans, are simply not found (404). The plan
and the change note are encrypted under the client's key; every read and write is
audited. The audit trail names versions, never plan text. A version can be printed for
the client (``printing``: a discreet HTML page or PDF). Each agency may replace the
built-in starting checklist with its own template.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal, get_args
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from app.clients import service as clients
from app.clients.models import Client
from app.core import access, audit, keys
from app.core.access import Actor
from app.core.errors import Conflict, Invalid, NotFound
from app.db import utcnow
from app.reminders.service import sync_reminders_for
from app.safety_plans import printing
from app.safety_plans.models import SafetyPlanTemplate, SafetyPlanVersion
from app.safety_plans.schemas import PlanContent

TABLE = "safety_plan_version"
# A plan is looked at again at least once a year; usually far sooner.
MAX_REVIEW_DAYS = 365

# A starting point for a new plan: checklist items, none ticked. Staff add, remove and
# reword them with the client; nothing here is personal data.
DEFAULT_GO_BAG: tuple[str, ...] = (
    "Identity documents", "Birth certificates", "Passports", "Lease or housing papers",
    "Bank cards and account details", "Medication and prescriptions", "Phone and charger",
    "Cash", "Spare keys", "Protective order copy", "Children's documents and school records",
)
DEFAULT_TECHNOLOGY_SAFETY: tuple[str, ...] = (
    "Passwords changed", "Two-factor authentication on", "Shared accounts left",
    "Location sharing checked", "Stalkerware checked", "Cloud backups and linked devices checked",
)


PrintFormat = Literal["html", "pdf"]


@dataclass
class PlanRecord:
    """A version with its encrypted fields opened."""

    plan: SafetyPlanVersion
    content: dict[str, Any]
    change_note: str | None


@dataclass(frozen=True)
class Change:
    """One difference between two plans: ``path`` like ``go_bag[2].ready``; ``kind`` is
    "changed", "added" (``before`` is None) or "removed" (``after`` is None)."""

    path: str
    before: Any
    after: Any
    kind: str = "changed"


# --- comparing ----------------------------------------------------------------------------


def _same(a: Any, b: Any) -> bool:
    # True == 1 in Python; a ticked box is not the number one.
    return type(a) is type(b) and a == b


def _diff(a: Any, b: Any, path: str, out: list[Change]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            sub = f"{path}.{key}" if path else str(key)
            if key not in b:
                out.append(Change(sub, a[key], None, "removed"))
            elif key not in a:
                out.append(Change(sub, None, b[key], "added"))
            else:
                _diff(a[key], b[key], sub, out)
    elif isinstance(a, list) and isinstance(b, list):
        for i in range(max(len(a), len(b))):
            sub = f"{path}[{i}]"
            if i >= len(b):
                out.append(Change(sub, a[i], None, "removed"))
            elif i >= len(a):
                out.append(Change(sub, None, b[i], "added"))
            else:
                _diff(a[i], b[i], sub, out)
    elif not _same(a, b):
        out.append(Change(path, a, b, "changed"))


def diff_plans(a: dict[str, Any], b: dict[str, Any]) -> list[Change]:
    """What changed from plan ``a`` to plan ``b``, leaf by leaf, in document order.

    Objects are compared key by key, lists item by item by index (an item inserted in the
    middle shows as changes to the items after it, and one added at the end). An item or
    key present on one side only is one "added" or "removed" change carrying the whole
    value. Equal plans give an empty list."""
    out: list[Change] = []
    _diff(a, b, "", out)
    return out


# --- sealing ------------------------------------------------------------------------------


def _place(plan: SafetyPlanVersion, column: str) -> dict[str, Any]:
    return {"org_id": plan.org_id, "client_id": plan.client_id, "table": TABLE,
            "column": column, "row_id": str(plan.id)}


def open_plan(db: Session, plan: SafetyPlanVersion) -> PlanRecord:
    content = keys.decrypt_json(db, ciphertext=plan.content, **_place(plan, "content"))
    note = keys.decrypt_field(db, ciphertext=plan.change_note, **_place(plan, "change_note"))
    return PlanRecord(plan, content, note)


def _field_error(field: str, message: str, kind: str = "value") -> list[dict[str, str]]:
    return [{"field": field, "location": "body", "message": message, "type": kind}]


def check_review_date(review_date: date, today: date) -> None:
    if review_date < today:
        raise Invalid("The review date is in the past.",
                      errors=_field_error("review_date", "in the past", "date"))
    if review_date > today + timedelta(days=MAX_REVIEW_DAYS):
        raise Invalid(f"Review a plan within {MAX_REVIEW_DAYS} days.",
                      errors=_field_error("review_date",
                                          f"more than {MAX_REVIEW_DAYS} days ahead", "date"))


# --- reading ------------------------------------------------------------------------------


def _plans(client: Client) -> sa.Select[Any]:
    return sa.select(SafetyPlanVersion).where(SafetyPlanVersion.org_id == client.org_id,
                                              SafetyPlanVersion.client_id == client.id)


def list_versions(db: Session, actor: Actor, client_id: UUID) -> sa.Select[Any]:
    """The query of a client's plan versions (404 when the client is out of reach)."""
    return _plans(clients.get_client(db, actor, client_id))


def audit_listing(db: Session, actor: Actor, client_id: UUID,
                  plans: list[SafetyPlanVersion]) -> None:
    """Metadata only was shown (no plan text), still worth a trace."""
    audit.record(db, actor, "safety_plan.listed", object_type="client", object_id=client_id,
                 details={"count": len(plans)})


def _one(db: Session, client: Client, version: int | None) -> SafetyPlanVersion:
    query = _plans(client)
    if version is None:
        query = query.order_by(SafetyPlanVersion.version.desc()).limit(1)
    else:
        query = query.where(SafetyPlanVersion.version == version)
    plan = db.scalar(query)
    if plan is None:
        raise NotFound("No safety plan yet for this client." if version is None
                       else "No such version of this client's safety plan.")
    return plan


def read_plan(db: Session, actor: Actor, client_id: UUID,
              version: int | None = None) -> PlanRecord:
    """One version (default: the current one, the latest), opened; the read is audited."""
    client = clients.get_client(db, actor, client_id)
    plan = _one(db, client, version)
    audit.record(db, actor, "safety_plan.read", plan,
                 details={"client_id": str(client.id), "version": plan.version})
    return open_plan(db, plan)


def diff_versions(db: Session, actor: Actor, client_id: UUID, from_version: int | None,
                  to_version: int | None) -> tuple[int, int, list[Change]]:
    """The changes from one version to another (default: the latest, and the version
    before ``to``); the read is audited."""
    client = clients.get_client(db, actor, client_id)
    after = _one(db, client, to_version)
    before_version = from_version if from_version is not None else max(after.version - 1, 1)
    before = after if before_version == after.version else _one(db, client, before_version)
    changes = diff_plans(open_plan(db, before).content, open_plan(db, after).content)
    audit.record(db, actor, "safety_plan.diff_read", object_type="client",
                 object_id=client.id, details={"from_version": before.version,
                                               "to_version": after.version,
                                               "changes": len(changes)})
    return before.version, after.version, changes


# --- writing ------------------------------------------------------------------------------


def _next_version(db: Session, client: Client) -> int:
    latest = db.scalar(sa.select(sa.func.max(SafetyPlanVersion.version)).where(
        SafetyPlanVersion.client_id == client.id))
    return (latest or 0) + 1


def _insert(db: Session, actor: Actor, client: Client, content: dict[str, Any],
            review_date: date, change_note: str | None) -> SafetyPlanVersion:
    plan = SafetyPlanVersion(org_id=client.org_id, client_id=client.id,
                             version=_next_version(db, client), content="",
                             review_date=review_date, created_by=actor.id)
    # Sealed before the row is added: encrypting may flush, and the row must be whole then.
    plan.content = keys.encrypt_json(db, value=content, **_place(plan, "content")) or ""
    plan.change_note = keys.encrypt_field(db, plaintext=change_note,
                                          **_place(plan, "change_note"))
    with db.begin_nested():
        db.add(plan)
        db.flush()
    return plan


def create_version(db: Session, actor: Actor, client_id: UUID, *, content: dict[str, Any],
                   review_date: date, change_note: str | None = None) -> PlanRecord:
    """Record the next version of a client's plan (staff who may write the client).

    Versions of one client are serialised by locking the client row; where the database
    cannot lock (SQLite), the unique (client_id, version) constraint catches a race, and
    the insert is tried once more with a fresh number before answering 409."""
    client = clients.get_client(db, actor, client_id, for_write=True)
    check_review_date(review_date, utcnow().date())
    note = (change_note or "").strip() or None
    db.execute(sa.select(Client.id).where(Client.id == client.id).with_for_update())
    for attempt in (1, 2):
        try:
            plan = _insert(db, actor, client, content, review_date, note)
            break
        except IntegrityError:
            if attempt == 2:
                raise Conflict("Another version of this plan was saved at the same moment. "
                               "Reload the plan and make the change again.") from None
    sync_reminders_for(db, "safety_plan", client.id)
    audit.record(db, actor, "safety_plan.created", plan,
                 details={"client_id": str(client.id), "version": plan.version})
    return PlanRecord(plan, content, note)


# --- printing -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PrintedPlan:
    """A printable copy: the bytes, their media type, and a file name that says nothing
    about whose plan it is."""

    body: bytes
    media_type: str
    filename: str


def print_plan(db: Session, actor: Actor, client_id: UUID, version: int | None = None, *,
               fmt: PrintFormat = "html") -> PrintedPlan:
    """The client's own copy of one version (default: the current one) as an HTML page or a
    PDF, without agency branding; the same reach as reading the plan, audited as a read."""
    if fmt not in get_args(PrintFormat):
        raise Invalid("Choose html or pdf.", errors=[{"field": "format", "location": "query",
                                                      "message": "html or pdf",
                                                      "type": "literal_error"}])
    client = clients.get_client(db, actor, client_id)
    plan = _one(db, client, version)
    record = open_plan(db, plan)
    audit.record(db, actor, "safety_plan.printed", plan,
                 details={"client_id": str(client.id), "version": plan.version, "format": fmt})
    html = printing.render_html(PlanContent.model_validate(record.content),
                                version=plan.version, review_date=plan.review_date)
    if fmt == "pdf":
        return PrintedPlan(printing.render_pdf(html), "application/pdf", "plan.pdf")
    return PrintedPlan(html.encode(), "text/html; charset=utf-8", "plan.html")


# --- the agency's template ----------------------------------------------------------------


@dataclass(frozen=True)
class TemplateRecord:
    """The starting checklist in force for an org; ``updated_at``/``updated_by`` are None
    while the built-in defaults apply."""

    go_bag: list[str]
    technology_safety: list[str]
    updated_at: datetime | None = None
    updated_by: UUID | None = None


def _template_of(db: Session, org_id: UUID) -> TemplateRecord:
    row = db.scalar(sa.select(SafetyPlanTemplate).where(SafetyPlanTemplate.org_id == org_id)
                    .execution_options(populate_existing=True))
    if row is None:
        return TemplateRecord(list(DEFAULT_GO_BAG), list(DEFAULT_TECHNOLOGY_SAFETY))
    return TemplateRecord(list(row.go_bag), list(row.technology_safety), row.updated_at,
                          row.updated_by)


def get_template(db: Session, actor: Actor) -> TemplateRecord:
    """The actor's agency template for new plans (the built-in one until the agency
    saves its own). Staff who work with clients may read it."""
    access.require_client_staff(actor)
    return _template_of(db, actor.org_id)


def update_template(db: Session, actor: Actor, *, go_bag: list[str],
                    technology_safety: list[str]) -> TemplateRecord:
    """Replace the agency's template (supervisors and admins); items come validated
    (``schemas.TemplateUpdate``). Audited with item counts, not item text."""
    access.require_user(actor)
    access.require(actor, "plan_template:manage")
    table = SafetyPlanTemplate.__table__
    if db.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    values = {"go_bag": list(go_bag), "technology_safety": list(technology_safety),
              "updated_at": utcnow(), "updated_by": actor.id}
    # One statement whether or not the org has a row yet: two first saves at the same
    # moment cannot both insert; the later one simply wins.
    db.execute(insert(table).values(org_id=actor.org_id, **values)
               .on_conflict_do_update(index_elements=["org_id"], set_=values))
    audit.record(db, actor, "safety_plan_template.updated", object_type="safety_plan_template",
                 object_id=actor.org_id, details={"go_bag_items": len(go_bag),
                                                  "technology_safety_items":
                                                      len(technology_safety)})
    return _template_of(db, actor.org_id)
