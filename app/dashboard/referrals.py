"""Dashboard pages for referrals: referring a client to a service of the directory (with a
preview of exactly what the recipient will see), a client's referrals and each one's
history, the agency's referrals by status, and for admins a partner app's webhook
deliveries.

Thin adapters over ``app.referrals.service`` (and ``app.webhooks.service``), making the
same calls as the API: reach (a client out of one's caseload, a referral of another
client or agency: 404), consent gating and the state machine are the services'. Bodies
are checked with the API's own schemas first. The preview page renders the payload of
``GET /api/v1/referrals/{id}/preview`` itself (``app.referrals.shapes.preview``), so
it cannot show more or less than the recipient gets.

The categories a referral may carry are chosen among those a release in force covers
for that very recipient (``referrals.consent_options``, the check every disclosure
makes); with none, the referral still goes, as a warm handoff without personal data.
No personal data travels in a URL: forms are POSTed, redirects carry fixed ``done``
codes; the directory search on the way is not personal data and is a GET. Page titles
name a case number, never a person.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode
from uuid import UUID
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Form, Query, Request, Response
from pydantic import ValidationError
from sqlmodel import Session
from starlette.responses import RedirectResponse

from app.clients import service as clients
from app.clients.models import Client
from app.consents import service as consents
from app.consents.models import ReleaseOfInformation
from app.core.errors import DomainError, Invalid, NotFound
from app.core.pagination import PageParams, SortKey, paginate
from app.core.timezones import iana_zone
from app.dashboard import directory
from app.dashboard.auth import CsrfChecked, DashboardRoute, Signed, refuse, request_db
from app.dashboard.client_forms import FormProblem, FormReader, invalid_form
from app.dashboard.clients import CATEGORY_LABELS as DATA_CATEGORY_LABELS
from app.dashboard.clients import ClientStaff, Cursor, Done, PostedForm
from app.dashboard.clients import _staff_names as staff_names
from app.dashboard.views import PartnerAppsAdmin
from app.dashboard.web import render
from app.db import SessionDep
from app.referrals import schemas, shapes
from app.referrals import service as referrals
from app.referrals.models import STATUSES, Referral
from app.resources import service as resources
from app.webhooks import service as webhooks
from app.webhooks.models import DeliveryState

router = APIRouter(prefix="/dashboard", route_class=DashboardRoute, include_in_schema=False,
                   dependencies=[Depends(request_db)])

LISTING_SIZE = 50
DELIVERIES_SHOWN = 20

DONE_NOTES = {
    "draft-saved": "The referral is saved as a draft. Check what the recipient will see, "
                   "then send it.",
    "referral-sent": "The referral is sent.",
    "referral-withdrawn": "The referral is withdrawn.",
    "answer-recorded": "The receiving agency's answer is recorded.",
    "delivery-replayed": "The delivery will be sent again in a moment.",
}
STATUS_LABELS = {"draft": "Draft", "sent": "Sent", "accepted": "Accepted",
                 "declined": "Declined", "completed": "Completed", "closed": "Closed",
                 "withdrawn": "Withdrawn"}
# What staff may record for a listing without a partner app, from each state.
ANSWER_LABELS = {"accept": "Accepted", "decline": "Declined", "complete": "Completed",
                 "close": "Closed without completing"}
DELIVERY_STATE_LABELS = {DeliveryState.pending: "Waiting", DeliveryState.sending: "Sending",
                         DeliveryState.succeeded: "Delivered", DeliveryState.failed: "Failed"}
WITHDRAWABLE = frozenset(s for s, moves in referrals.TRANSITIONS.items()
                         if "withdrawn" in moves)

LABELS = {
    "status_label": STATUS_LABELS, "statuses": list(STATUS_LABELS.items()),
    "category_label": DATA_CATEGORY_LABELS, "answer_label": ANSWER_LABELS,
    "resource_category_label": directory.CATEGORY_LABELS,
    "resource_categories": directory.LABELS["categories"],
    "delivery_state_label": DELIVERY_STATE_LABELS,
}


class _FormInvalid(Exception):
    """A form refused before any service was called (nothing to roll back)."""

    def __init__(self, problem: FormProblem) -> None:
        super().__init__(problem.detail)
        self.problem = problem


def _redirect(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def _page(request: Request, template: str, *, title: str, **context: Any) -> Response:
    return render(request, template, title=title, labels=LABELS, **context)


def _referral_path(client_id: UUID, referral_id: UUID, rest: str = "",
                   done: str | None = None) -> str:
    return (f"/dashboard/clients/{client_id}/referrals/{referral_id}{rest}"
            + (f"?done={done}" if done else ""))


def _reason_problem(field: str) -> FormProblem:
    return invalid_form([{"field": field, "message": "give the reason (at least 3 "
                                                     "characters)"}])


def _checked_reason(field: str, typed: str) -> str:
    try:
        return schemas.TransitionIn.model_validate({"reason": typed.strip()}).reason
    except ValidationError:
        raise _FormInvalid(_reason_problem(field)) from None


# --- reach -------------------------------------------------------------------------------


def _record_of(db: Session, signed: Signed, client_id: UUID,
               referral_id: UUID) -> tuple[Client, referrals.ReferralRecord]:
    """The client and its referral (404 when either is out of reach or they differ)."""
    client = clients.get_client(db, signed.actor, client_id)
    record = referrals.read_referral(db, signed.actor, referral_id)
    if record.referral.client_id != client.id:
        raise NotFound("No such referral for this client.")
    return client, record


# --- the agency's referrals, a client's referrals ----------------------------------------


@dataclass
class ReferralRow:
    referral: Referral
    case_number: str | None


def _listed(db: Session, signed: Signed, query: sa.Select[Any], listing: str,
            cursor: str | None) -> tuple[list[Referral], str | None]:
    rows, next_cursor = paginate(
        db, query, listing=listing,
        keys=[SortKey(Referral.created_at, descending=True),
              SortKey(Referral.id, descending=True)],
        params=PageParams(limit=LISTING_SIZE, cursor=cursor or None))
    referrals.audit_listing(db, signed.actor, rows)
    return rows, next_cursor


@router.get("/referrals")
def agency_referrals(request: Request, db: SessionDep, signed: ClientStaff,
                     status: Annotated[str, Query(max_length=16)] = "",
                     cursor: Cursor = None) -> Response:
    """Referrals of the clients within your reach (supervisors: the agency's), newest first,
    by status: answers from the receiving services show up here."""
    problem, status_code = None, 200
    rows: list[ReferralRow] = []
    next_href = None
    if status and status not in STATUSES:
        problem, status_code = invalid_form([{"field": "status",
                                              "message": "choose from the list"}]), 422
    else:
        query = referrals.list_query(signed.actor, status=status or None)
        try:
            found, next_cursor = _listed(db, signed, query,
                                         f"dashboard-referrals:{status}", cursor)
        except DomainError as exc:  # a cursor of another listing
            refuse(request, exc)
            problem, status_code, found, next_cursor = exc, exc.status, [], None
        ids = {r.client_id for r in found}
        numbers = {row.id: row.case_number for row in db.execute(
            clients.readable_clients(signed.actor).where(Client.id.in_(ids))
            .with_only_columns(Client.id, Client.case_number))} if ids else {}
        rows = [ReferralRow(r, numbers.get(r.client_id)) for r in found]
        if next_cursor:
            next_href = "/dashboard/referrals?" + urlencode(
                ([("status", status)] if status else []) + [("cursor", next_cursor)])
    return _page(request, "referrals.html", title="Referrals", rows=rows, status=status,
                 next_href=next_href, problem=problem, status_code=status_code)


@router.get("/clients/{client_id}/referrals")
def client_referrals(request: Request, client_id: UUID, db: SessionDep, signed: ClientStaff,
                     cursor: Cursor = None, done: Done = None) -> Response:
    """A client's referrals, newest first."""
    client = clients.get_client(db, signed.actor, client_id)
    found, next_cursor = _listed(db, signed,
                                 referrals.list_query(signed.actor, client_id=client.id),
                                 f"dashboard-referrals:client:{client.id}", cursor)
    next_href = (f"/dashboard/clients/{client_id}/referrals?"
                 + urlencode({"cursor": next_cursor})) if next_cursor else None
    return _page(request, "client_referrals.html",
                 title=f"Referrals for {client.case_number}", client=client, rows=found,
                 next_href=next_href, note=DONE_NOTES.get(done or ""))


# --- referring a client --------------------------------------------------------------------


@dataclass
class CategoryChoice:
    category: str
    release: consents.ReleaseRecord | None
    reason: str  # why it cannot be chosen (when there is no release)


def _choices(db: Session, signed: Signed, client_id: UUID,
             options: referrals.ConsentOptions) -> list[CategoryChoice]:
    """Each category a referral can carry, with the release that covers it for this
    recipient now (the releases shown are audited as read)."""
    covered = options.covered
    found: dict[UUID, consents.ReleaseRecord] = {}
    if covered:
        rows = list(db.scalars(consents.list_releases(db, signed.actor, client_id)
                               .where(ReleaseOfInformation.id.in_(set(covered.values())))))
        consents.audit_listing(db, signed.actor, client_id, rows)
        found = {row.id: consents.decrypt_release(db, row) for row in rows}
    return [CategoryChoice(category, found.get(covered[category]) if category in covered
                           else None, decision.reason)
            for category, decision in options.decisions.items()]


def _new_referral_page(request: Request, db: Session, signed: Signed, client: Client, *,
                       resource_id: UUID | None, search: dict[str, Any],
                       cursor: str | None = None, reader: FormReader | None = None,
                       status_code: int = 200, problem: Any = None) -> Response:
    context: dict[str, Any] = {"client": client, "search": search, "rows": [],
                               "next_href": None, "listing": None, "choices": [],
                               "names_app": False, "v": (reader or FormReader()).values}
    if resource_id is not None:
        try:
            options = referrals.consent_options(db, signed.actor, client_id=client.id,
                                                resource_id=resource_id)
        except Invalid as exc:  # the listing's partner app is disabled
            refuse(request, exc)
            problem, status_code, resource_id = exc, exc.status, None
        else:
            context.update(listing=resources.present(options.resource, signed.actor),
                           choices=_choices(db, signed, client.id, options),
                           names_app=options.release_names_app)
    if resource_id is None:
        filters, errors = directory.search_filters(
            q=search["q"], category=search["category"], language="", pets="",
            open_now=False)
        if errors and problem is None:
            problem, status_code = invalid_form(errors), 422
        elif not errors:
            try:
                context["rows"], next_cursor = directory.search_page(db, signed, filters,
                                                                     cursor)
            except DomainError as exc:
                refuse(request, exc)
                problem, status_code, next_cursor = exc, exc.status, None
            if next_cursor:
                query = ([("q", search["q"])] if search["q"] else []) + [
                    ("category", c) for c in filters.categories] + [("cursor", next_cursor)]
                context["next_href"] = (f"/dashboard/clients/{client.id}/referrals/new?"
                                        + urlencode(query))
    return _page(request, "referral_new.html",
                 title=f"Refer client {client.case_number} to a service", problem=problem,
                 status_code=status_code, **context)


@router.get("/clients/{client_id}/referrals/new")
def new_referral(request: Request, client_id: UUID, db: SessionDep, signed: ClientStaff,
                 q: Annotated[str, Query(max_length=200)] = "",
                 category: Annotated[list[str] | None, Query(max_length=40)] = None,
                 resource: Annotated[UUID | None, Query()] = None,
                 cursor: Cursor = None) -> Response:
    """Refer a client: find the service in the directory, then choose what to share (only
    what a release in force covers for that recipient), write the handoff, and preview."""
    client = clients.get_client(db, signed.actor, client_id, for_write=True)
    search = {"q": q, "category": list(category or [])[:20]}
    return _new_referral_page(request, db, signed, client, resource_id=resource,
                              search=search, cursor=cursor)


def _call_moment(reader: FormReader, name: str, zone: ZoneInfo | None,
                 errors: list[dict[str, str]]) -> datetime | None:
    """A datetime-local input read in ``zone`` (a local time the clocks skip is refused)."""
    typed = reader.text(name)
    if not typed:
        errors.append({"field": name, "message": "give the date and time"})
        return None
    try:
        naive = datetime.fromisoformat(typed)
    except ValueError:
        errors.append({"field": name, "message": "not a date and time"})
        return None
    if zone is None or naive.tzinfo is not None:
        return None
    local = naive.replace(tzinfo=zone)
    if local.astimezone(ZoneInfo("UTC")).astimezone(zone).replace(tzinfo=None) != naive:
        errors.append({"field": name, "message": "this local time does not exist in the "
                                                 "time zone (the clocks changed)"})
        return None
    return local


def read_referral_form(reader: FormReader, client_id: UUID
                       ) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The posted referral form as the API's ReferralCreate body, and the errors found
    composing it (the call window's times are read in the zone typed with them)."""
    errors: list[dict[str, str]] = []
    body: dict[str, Any] = {"client_id": str(client_id),
                            "resource_id": reader.text("resource_id") or None,
                            "categories": reader.choices("categories"),
                            "reason": reader.text("reason")}
    code_word = reader.text("handoff.code_word")
    note = reader.text("handoff.note")
    window = None
    if reader.flag("handoff.with_window"):
        zone_name = reader.text("handoff.call_window.time_zone")
        zone = None
        try:
            zone = iana_zone(zone_name)
        except ValueError:
            errors.append({"field": "handoff.call_window.time_zone",
                           "message": "not an IANA time zone name"})
        window = {"starts_at": _call_moment(reader, "handoff.call_window.starts_at", zone,
                                            errors),
                  "ends_at": _call_moment(reader, "handoff.call_window.ends_at", zone,
                                          errors)}
    if code_word or note or window:
        body["handoff"] = {"code_word": code_word, "note": note or None,
                           "call_window": window}
    return body, errors


@router.post("/clients/{client_id}/referrals/new")
def create_referral(request: Request, client_id: UUID, db: SessionDep, signed: ClientStaff,
                    _csrf: CsrfChecked, form: PostedForm) -> Response:
    """Save the referral as a draft, then show what the recipient will see."""
    client = clients.get_client(db, signed.actor, client_id, for_write=True)
    reader = FormReader(form)
    body, errors = read_referral_form(reader, client.id)
    search = {"q": "", "category": []}
    try:
        resource_id = UUID(str(body["resource_id"]))
    except ValueError:
        return _new_referral_page(request, db, signed, client, resource_id=None, search=search,
                                  status_code=422, problem=invalid_form(
                                      [{"field": "q", "message": "choose a service first"}]))
    try:
        if errors:
            raise _FormInvalid(invalid_form(errors))
        try:
            data = schemas.ReferralCreate.model_validate(body)
        except ValidationError as exc:
            raise _FormInvalid(invalid_form(reader.schema_errors(exc))) from None
        options = referrals.consent_options(db, signed.actor, client_id=client.id,
                                            resource_id=data.resource_id)
        uncovered = [c for c in data.categories if c not in options.covered]
        if uncovered:
            raise _FormInvalid(invalid_form([{
                "field": "categories", "message": "no release in force covers "
                + ", ".join(DATA_CATEGORY_LABELS.get(c, c).lower() for c in uncovered)
                + " for this service now"}]))
        record = referrals.create_referral(
            db, signed.actor, client_id=client.id, resource_id=data.resource_id,
            categories=list(data.categories), reason=data.reason,
            handoff=data.handoff.model_dump() if data.handoff else None)
    except _FormInvalid as exc:
        return _new_referral_page(request, db, signed, client, resource_id=resource_id,
                                  search=search, reader=reader, status_code=422,
                                  problem=exc.problem)
    except DomainError as exc:
        if isinstance(exc, NotFound):
            raise
        refuse(request, exc)
        return _new_referral_page(request, db, signed, client, resource_id=resource_id,
                                  search=search, reader=reader, status_code=exc.status,
                                  problem=reader.relabel(exc))
    return _redirect(_referral_path(client.id, record.referral.id, "/preview", "draft-saved"))


# --- one referral ------------------------------------------------------------------------


def _referral_page(request: Request, db: Session, signed: Signed, client_id: UUID,
                   referral_id: UUID, *, note: str | None = None, status_code: int = 200,
                   problem: Any = None) -> Response:
    client, record = _record_of(db, signed, client_id, referral_id)
    shown = shapes.staff_out(record)
    staff = staff_names(db, signed, {t.actor_id for t in shown.history
                                     if t.actor_type == "user"})
    answers: list[tuple[str, str]] = []
    if shown.recipient.partner_app_id is None:
        answers = [(action, ANSWER_LABELS[action]) for action, to in referrals.ACTIONS.items()
                   if referrals.TRANSITIONS[shown.status].get(to) == referrals.RECIPIENT]
    return _page(request, "referral.html",
                 title=f"Referral for {client.case_number}", client=client, referral=shown,
                 staff=staff, answers=answers, withdrawable=shown.status in WITHDRAWABLE,
                 note=note, problem=problem, status_code=status_code)


@router.get("/clients/{client_id}/referrals/{referral_id}")
def referral_page(request: Request, client_id: UUID, referral_id: UUID, db: SessionDep,
                  signed: ClientStaff, done: Done = None) -> Response:
    """One referral: where it stands, every change of state (who, when, why), what the
    recipient receives now, the handoff and the receiving service's notes."""
    return _referral_page(request, db, signed, client_id, referral_id,
                          note=DONE_NOTES.get(done or ""))


def _preview_page(request: Request, db: Session, signed: Signed, client_id: UUID,
                  referral_id: UUID, *, note: str | None = None, status_code: int = 200,
                  problem: Any = None, send_reason: str | None = None) -> Response:
    client, record = _record_of(db, signed, client_id, referral_id)
    preview = shapes.preview(referrals.preview(db, signed.actor, referral_id))
    return _page(request, "referral_preview.html",
                 title=f"What the recipient sees: referral for {client.case_number}",
                 client=client, referral=record.referral, preview=preview,
                 seen=preview.as_recipient_sees,
                 payload=preview.as_recipient_sees.model_dump_json(indent=2),
                 send_reason=("Sent after checking what the recipient will see."
                              if send_reason is None else send_reason),
                 note=note, problem=problem, status_code=status_code)


@router.get("/clients/{client_id}/referrals/{referral_id}/preview")
def referral_preview(request: Request, client_id: UUID, referral_id: UUID, db: SessionDep,
                     signed: ClientStaff, done: Done = None) -> Response:
    """Exactly what the recipient sees (a draft: once sent), the API's preview rendered,
    and what is withheld and why."""
    return _preview_page(request, db, signed, client_id, referral_id,
                         note=DONE_NOTES.get(done or ""))


@router.post("/clients/{client_id}/referrals/{referral_id}/send")
def send_referral(request: Request, client_id: UUID, referral_id: UUID, db: SessionDep,
                  signed: ClientStaff, _csrf: CsrfChecked,
                  reason: Annotated[str, Form(max_length=2000)] = "") -> Response:
    _record_of(db, signed, client_id, referral_id)
    try:
        why = _checked_reason("send.reason", reason)
        referrals.send_referral(db, signed.actor, referral_id, reason=why)
    except _FormInvalid as exc:
        return _preview_page(request, db, signed, client_id, referral_id, status_code=422,
                             problem=exc.problem, send_reason=reason)
    except DomainError as exc:
        if isinstance(exc, NotFound):
            raise
        refuse(request, exc)
        return _preview_page(request, db, signed, client_id, referral_id,
                             status_code=exc.status, send_reason=reason,
                             problem=FormReader().relabel(exc, rename={
                                 "reason": "send.reason", "status": ""}))
    return _redirect(_referral_path(client_id, referral_id, done="referral-sent"))


@router.post("/clients/{client_id}/referrals/{referral_id}/withdraw")
def withdraw_referral(request: Request, client_id: UUID, referral_id: UUID, db: SessionDep,
                      signed: ClientStaff, _csrf: CsrfChecked,
                      reason: Annotated[str, Form(max_length=2000)] = "") -> Response:
    """Withdraw a draft, sent or accepted referral, with the reason (kept encrypted)."""
    def move() -> None:
        why = _checked_reason("withdraw.reason", reason)
        referrals.withdraw_referral(db, signed.actor, referral_id, reason=why)

    return _moved(request, db, signed, client_id, referral_id, move, form="withdraw",
                  done="referral-withdrawn")


@router.post("/clients/{client_id}/referrals/{referral_id}/answer")
def record_answer(request: Request, client_id: UUID, referral_id: UUID, db: SessionDep,
                  signed: ClientStaff, _csrf: CsrfChecked,
                  action: Annotated[str, Form(max_length=20)] = "",
                  reason: Annotated[str, Form(max_length=2000)] = "") -> Response:
    """Record the answer of a receiving agency that has no partner app (it answered by
    phone or letter); a partner app answers for itself."""
    def move() -> None:
        if action not in ANSWER_LABELS:
            raise _FormInvalid(invalid_form([{"field": "answer.action",
                                              "message": "choose the answer"}]))
        why = _checked_reason("answer.reason", reason)
        referrals.answer_referral(db, signed.actor, referral_id, action, reason=why)

    return _moved(request, db, signed, client_id, referral_id, move, form="answer",
                  done="answer-recorded")


def _moved(request: Request, db: Session, signed: Signed, client_id: UUID, referral_id: UUID,
           move: Callable[[], None], *, form: str, done: str) -> Response:
    """Make a move on a referral within reach from its page's ``form``: the referral's
    page again with the errors (named by that form's fields) when refused, else back to
    it with ``done``."""
    _record_of(db, signed, client_id, referral_id)
    try:
        move()
    except _FormInvalid as exc:
        return _referral_page(request, db, signed, client_id, referral_id, status_code=422,
                              problem=exc.problem)
    except DomainError as exc:
        if isinstance(exc, NotFound):
            raise
        refuse(request, exc)
        return _referral_page(request, db, signed, client_id, referral_id,
                              status_code=exc.status, problem=FormReader().relabel(
                                  exc, rename={"reason": f"{form}.reason", "status": ""}))
    return _redirect(_referral_path(client_id, referral_id, done=done))


# --- admins: a partner app's webhook deliveries ------------------------------------------


def _webhooks_page(request: Request, db: Session, signed: Signed, app_id: UUID, *,
                   note: str | None = None, status_code: int = 200,
                   problem: Any = None) -> Response:
    app, endpoints = webhooks.app_webhooks(db, signed.actor, app_id,
                                           per_endpoint=DELIVERIES_SHOWN)
    return _page(request, "partner_app_webhooks.html", title=f"Webhooks of {app.name}",
                 app=app, endpoints=endpoints, shown=DELIVERIES_SHOWN, note=note,
                 problem=problem, status_code=status_code)


@router.get("/partner-apps/{app_id}/webhooks")
def partner_app_webhooks(request: Request, app_id: UUID, db: SessionDep,
                         signed: PartnerAppsAdmin, done: Done = None) -> Response:
    """A partner app's webhook endpoints and their newest deliveries: event, state,
    attempts, the last answer and when (ids only, nothing about a client)."""
    return _webhooks_page(request, db, signed, app_id, note=DONE_NOTES.get(done or ""))


@router.post("/partner-apps/{app_id}/webhooks/{endpoint_id}/deliveries/{delivery_id}/replay")
def replay_delivery(request: Request, app_id: UUID, endpoint_id: UUID, delivery_id: UUID,
                    db: SessionDep, signed: PartnerAppsAdmin, _csrf: CsrfChecked) -> Response:
    """Send a delivery again (a new attempt with the same webhook-id)."""
    try:
        webhooks.replay_for_app(db, signed.actor, app_id, endpoint_id, delivery_id)
    except DomainError as exc:
        if isinstance(exc, NotFound):
            raise
        refuse(request, exc)
        return _webhooks_page(request, db, signed, app_id, status_code=exc.status,
                              problem=exc)
    return _redirect(f"/dashboard/partner-apps/{app_id}/webhooks?done=delivery-replayed")
