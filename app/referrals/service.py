"""Referrals: a client referred to a resource, consent-gated, and the partner inbox.

State machine. ``draft → sent → accepted | declined``, ``accepted → completed | closed``,
and ``withdrawn`` by the sending agency from draft, sent or accepted. The sending agency
(staff who may write the client) creates, sends and withdraws; the recipient answers,
completes and closes — the partner app that keeps the resource's listing, or, when the
listing has none, the sending agency's staff recording the outside agency's answer. Each
change needs a reason (kept encrypted) and is an append-only :class:`ReferralTransition`;
anything else is an :class:`IllegalTransition` (409).

Consent gating. A referral asks for data categories; the recipient receives a category
only while :func:`app.consents.service.may_disclose` allows it, asked again at every
disclosure (each partner read, each preview) — never stored as a verdict. Categories not
covered are withheld, not refused: a referral with no release at all is a warm handoff
(code word, call window, note; no personal data), the common case. Personal data reaches
the recipient only while the referral is open (sent or accepted), and every disclosure
of it is an audit event naming the release used. A release names the recipient by its
partner app when the listing's app belongs to the sending agency, otherwise by the
agency's name as listed in the directory.

Reach. Staff reach a referral through its client (``clients.readable_clients``): an
advocate their caseload's, a supervisor the org's; a partner app reaches only referrals
sent to its own listings. Anything else is simply not found (404).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlmodel import Session

from app.clients import service as clients
from app.clients.models import Client
from app.consents import service as consents
from app.consents.models import ReleaseOfInformation
from app.core import audit, keys
from app.core.access import Actor, require
from app.core.errors import Conflict, Forbidden, Invalid, NotFound, ProblemResponse, problem
from app.core.pagination import PageParams, decode_cursor, encode_cursor
from app.db import utcnow
from app.identity.models import Org, PartnerApp, StaffUser
from app.notifications import service as notifications
from app.referrals.models import Referral, ReferralNote, ReferralTransition
from app.reminders import rules as reminder_rules
from app.resources import service as resources
from app.risk.models import RiskAssessment
from app.webhooks import service as webhooks

TABLE = "referral"
# What a referral can carry, in the order of consents.DATA_CATEGORIES. Safety plans,
# incidents, evidence and the service log do not travel in a referral.
CATEGORIES: tuple[str, ...] = tuple(
    c for c in consents.DATA_CATEGORIES
    if c in ("identity", "contact_details", "address", "household", "risk_assessment"))
SENDER, RECIPIENT = "sender", "recipient"
# Which states each state may become, and which side moves it there.
TRANSITIONS: dict[str, dict[str, str]] = {
    "draft": {"sent": SENDER, "withdrawn": SENDER},
    "sent": {"accepted": RECIPIENT, "declined": RECIPIENT, "withdrawn": SENDER},
    "accepted": {"completed": RECIPIENT, "closed": RECIPIENT, "withdrawn": SENDER},
    "declined": {}, "completed": {}, "closed": {}, "withdrawn": {},
}
# The state each action (a route) leads to.
ACTIONS: dict[str, str] = {"send": "sent", "withdraw": "withdrawn", "accept": "accepted",
                           "decline": "declined", "complete": "completed", "close": "closed"}
# Personal data and the handoff reach the recipient only while the referral is open: a
# declined, withdrawn or finished referral has no further need of them.
OPEN_STATUSES = frozenset({"sent", "accepted"})
MAX_CALL_WINDOW = timedelta(days=14)


class IllegalTransition(Conflict):
    """A change the state machine does not allow (409, naming both states)."""

    kind, title = "illegal-transition", "Illegal state transition"

    def __init__(self, current: str, attempted: str) -> None:
        super().__init__(
            f"This referral is {current}; it cannot become {attempted}.",
            errors=[{"field": "status", "location": "path",
                     "message": f"{current} to {attempted} is not allowed",
                     "type": "transition"}])
        self.current, self.attempted = current, attempted

    def to_response(self) -> ProblemResponse:
        return problem(self.status, kind=self.kind, title=self.title, detail=self.detail,
                       errors=self.errors, current_state=self.current,
                       attempted_state=self.attempted,
                       allowed=sorted(TRANSITIONS.get(self.current, {})))


# --- records ------------------------------------------------------------------------------


@dataclass
class Handoff:
    code_word: str
    call_window: dict[str, datetime] | None
    note: str | None


@dataclass
class Disclosure:
    """Per requested category: shared under a release (its id), or withheld and why."""

    shared: dict[str, UUID] = field(default_factory=dict)
    withheld: list[tuple[str, str]] = field(default_factory=list)

    def by_release(self) -> dict[UUID, list[str]]:
        grouped: dict[UUID, list[str]] = {}
        for category, consent_id in self.shared.items():
            grouped.setdefault(consent_id, []).append(category)
        return grouped


@dataclass
class ReferralRecord:
    """A referral as the sending agency's staff see it, encrypted fields opened."""

    referral: Referral
    handoff: Handoff | None
    disclosure: Disclosure
    history: list[tuple[ReferralTransition, str]]
    notes: list[tuple[ReferralNote, str]]


@dataclass
class PartnerView:
    """A referral exactly as its recipient sees it: what consent allows, nothing else."""

    referral: Referral
    sender_name: str
    handoff: Handoff | None
    disclosure: Disclosure
    client: dict[str, Any]
    history: list[tuple[ReferralTransition, str | None]]
    notes: list[tuple[ReferralNote, str]]


# --- encryption ---------------------------------------------------------------------------


def _place(row: Referral | ReferralTransition | ReferralNote, column: str) -> dict[str, Any]:
    return {"org_id": row.org_id, "client_id": row.client_id, "table": row.__tablename__,
            "column": column, "row_id": str(row.id)}


def _seal(db: Session, row: Referral | ReferralTransition | ReferralNote, column: str,
          value: str | None) -> str | None:
    return keys.encrypt_field(db, plaintext=value or None, **_place(row, column))


def _open(db: Session, row: Referral | ReferralTransition | ReferralNote,
          column: str) -> str | None:
    try:
        return keys.decrypt_field(db, ciphertext=getattr(row, column), **_place(row, column))
    except keys.KeyDestroyed as exc:  # the client was erased
        raise NotFound("No such referral.") from exc


def _open_handoff(db: Session, referral: Referral) -> Handoff | None:
    code_word = _open(db, referral, "handoff_code_word")
    if code_word is None:
        return None
    stored = keys.decrypt_json(db, ciphertext=referral.handoff_call_window,
                               **_place(referral, "handoff_call_window"))
    window = ({k: datetime.fromisoformat(v) for k, v in stored.items()} if stored else None)
    return Handoff(code_word, window, _open(db, referral, "handoff_note"))


# --- helpers ------------------------------------------------------------------------------


def _error(field_name: str, message: str, kind: str = "value") -> list[dict[str, str]]:
    return [{"field": field_name, "location": "body", "message": message, "type": kind}]


def _reason(reason: str) -> str:
    text = (reason or "").strip()
    if len(text) < 3:
        raise Invalid("Give a reason of at least 3 characters.",
                      errors=_error("reason", "at least 3 characters", "length"))
    return text


def _categories(categories: list[str]) -> list[str]:
    unknown = [c for c in categories if c not in CATEGORIES]
    if unknown:
        raise Invalid("A referral can carry only these data categories: "
                      + ", ".join(CATEGORIES) + ".",
                      errors=_error("categories", "choose from " + ", ".join(CATEGORIES),
                                    "category"))
    return [c for c in CATEGORIES if c in categories]  # canonical order, no duplicates


def _names_app(org_id: UUID, recipient_app_id: UUID | None, recipient_org_id: UUID) -> bool:
    return recipient_app_id is not None and recipient_org_id == org_id


def release_names_app(referral: Referral) -> bool:
    """A release names a partner app only of the client's own agency; any other
    recipient is named by the agency's name (consents.record_release)."""
    return _names_app(referral.org_id, referral.recipient_app_id, referral.recipient_org_id)


def _recipient_kwargs(referral: Referral) -> dict[str, Any]:
    if release_names_app(referral):
        return {"recipient_app_id": referral.recipient_app_id}
    return {"recipient_name": referral.recipient_name}


@dataclass
class ConsentOptions:
    """Before a referral is drafted: per category a referral can carry, what
    ``consents.may_disclose`` answers now for the recipient the referral would name."""

    resource: Any
    release_names_app: bool
    decisions: dict[str, consents.Decision]

    @property
    def covered(self) -> dict[str, UUID]:
        return {c: d.consent_id for c, d in self.decisions.items()
                if d.allowed and d.consent_id is not None}


def consent_options(db: Session, actor: Actor, *, client_id: UUID,
                    resource_id: UUID) -> ConsentOptions:
    """Which data categories a release in force would let through, now, to the recipient
    of a referral of this client to this listing (the same recipient and the same check
    as every later disclosure), so staff choose only among those. Staff who may write
    the client; a listing whose partner app is disabled is refused as at drafting."""
    client = clients.get_client(db, actor, client_id, for_write=True)
    resource = resources.get_resource(db, actor, resource_id)
    app_id, recipient_org = _recipient_of(db, resource)
    names_app = _names_app(client.org_id, app_id, recipient_org)
    recipient = ({"recipient_app_id": app_id} if names_app
                 else {"recipient_name": resource.name})
    return ConsentOptions(resource, names_app, {
        category: consents.may_disclose(db, client_id=client.id, category=category,
                                        **recipient)
        for category in CATEGORIES})


def _touch(referral: Referral) -> None:
    referral.updated_at = utcnow()


# --- reach --------------------------------------------------------------------------------


def readable_referrals(actor: Actor) -> sa.Select[Any]:
    """Referrals staff can reach: those of clients within their reach, in their org."""
    reachable = clients.readable_clients(actor).with_only_columns(Client.id)
    return sa.select(Referral).where(Referral.org_id == actor.org_id,
                                     Referral.client_id.in_(reachable))


def partner_inbox(actor: Actor) -> sa.Select[Any]:
    """Referrals sent to the partner app's own listings (never a draft, never a client
    since erased); any other referral is not found."""
    return (sa.select(Referral).join(Client, Client.id == Referral.client_id)
            .where(Referral.recipient_app_id == actor.id,
                   Referral.recipient_org_id == actor.org_id,
                   Referral.sent_at.is_not(None), Client.purged_at.is_(None)))


def _find(db: Session, actor: Actor, referral_id: UUID, *, lock: bool = False) -> Referral:
    query = (partner_inbox(actor) if actor.is_partner else readable_referrals(actor))
    query = query.where(Referral.id == referral_id)
    if lock:
        query = query.with_for_update(of=Referral).execution_options(populate_existing=True)
    referral = db.scalar(query)
    if referral is None:
        raise NotFound("No such referral.")
    return referral


def _client_for_write(db: Session, actor: Actor, referral: Referral) -> Client:
    return clients.get_client(db, actor, referral.client_id, for_write=True)


# --- the disclosure check -----------------------------------------------------------------


def disclosure(db: Session, referral: Referral, *, as_sent: bool = False) -> Disclosure:
    """What of the requested categories the recipient receives now, each category asked
    of ``consents.may_disclose`` afresh. ``as_sent`` treats a draft as if sent (the
    preview); a referral that is not open discloses nothing."""
    result = Disclosure()
    status = "sent" if as_sent and referral.status == "draft" else referral.status
    if status not in OPEN_STATUSES:
        why = f"the referral is {referral.status}"
        result.withheld = [(c, why) for c in referral.categories]
        return result
    recipient = _recipient_kwargs(referral)
    for category in referral.categories:
        decision = consents.may_disclose(db, client_id=referral.client_id, category=category,
                                         **recipient)
        if decision.allowed and decision.consent_id is not None:
            result.shared[category] = decision.consent_id
        else:
            result.withheld.append((category, decision.reason))
    return result


def _safe_contact_without_code_words(safe_contact: dict[str, Any]) -> dict[str, Any]:
    channels = [{k: v for k, v in channel.items() if k != "code_word"}
                for channel in safe_contact.get("channels") or []]
    return {"time_zone": safe_contact.get("time_zone") or "UTC", "channels": channels}


def _latest_risk(db: Session, client_id: UUID) -> dict[str, Any] | None:
    row = db.scalar(sa.select(RiskAssessment).where(RiskAssessment.client_id == client_id)
                    .order_by(RiskAssessment.assessed_at.desc(), RiskAssessment.id.desc())
                    .limit(1))
    if row is None:
        return None
    return {"instrument_id": row.instrument_id, "instrument_version": row.instrument_version,
            "level": row.level, "score": row.score, "max_score": row.max_score,
            "complete": row.complete, "assessed_at": row.assessed_at}


def _disclosed_client(db: Session, actor: Actor, referral: Referral,
                      shared: dict[str, UUID]) -> dict[str, Any]:
    """The client's data of the shared categories only; nothing is opened for others."""
    view: dict[str, Any] = {}
    if not shared:
        return view
    record_categories = {"identity", "contact_details", "address", "household"}
    fields: dict[str, Any] = {}
    if record_categories & set(shared):
        client = db.get(Client, referral.client_id)
        if client is None or client.purged_at is not None:
            raise NotFound("No such referral.")
        fields = clients.decrypt_record(db, actor, client).fields
    if "identity" in shared:
        view["identity"] = {"preferred_name": fields["preferred_name"],
                            "legal_name": fields["legal_name"],
                            "aliases": fields["aliases"] or [],
                            "date_of_birth": fields["date_of_birth"]}
    if "contact_details" in shared:
        view["contact_details"] = {
            "contact_details": fields["contact_details"] or [],
            "safe_contact": _safe_contact_without_code_words(fields["safe_contact"] or {})}
    if "address" in shared:
        view["address"] = {"address": fields["address"]}
    if "household" in shared:
        view["household"] = fields["household"] or {"children": [], "pets": []}
    if "risk_assessment" in shared:
        view["risk_assessment"] = _latest_risk(db, referral.client_id)
    return view


def _audit_disclosure(db: Session, actor: Actor, referral: Referral,
                      result: Disclosure) -> None:
    """One event per release used, naming it and the categories it let through, in the
    sending agency's chain (the client's record-access report reads it there)."""
    for consent_id, categories in result.by_release().items():
        audit.record(db, actor, "referral.disclosed", referral, org_id=referral.org_id,
                     details={"consent_id": str(consent_id), "client_id": str(referral.client_id),
                              "categories": ",".join(categories)})


# --- reading ------------------------------------------------------------------------------


def _history(db: Session, referral: Referral) -> list[ReferralTransition]:
    return list(db.scalars(sa.select(ReferralTransition)
                           .where(ReferralTransition.referral_id == referral.id)
                           .order_by(ReferralTransition.at, ReferralTransition.id)))


def _notes(db: Session, referral: Referral) -> list[ReferralNote]:
    return list(db.scalars(sa.select(ReferralNote)
                           .where(ReferralNote.referral_id == referral.id)
                           .order_by(ReferralNote.created_at, ReferralNote.id)))


def staff_record(db: Session, referral: Referral) -> ReferralRecord:
    """The referral with its handoff, full history and notes opened (staff only)."""
    return ReferralRecord(
        referral, _open_handoff(db, referral), disclosure(db, referral, as_sent=True),
        [(t, _open(db, t, "reason") or "") for t in _history(db, referral)],
        [(n, _open(db, n, "body") or "") for n in _notes(db, referral)])


def read_referral(db: Session, actor: Actor, referral_id: UUID) -> ReferralRecord:
    """One referral of a client within reach (the read is audited)."""
    referral = _find(db, actor, referral_id)
    record = staff_record(db, referral)
    audit.record(db, actor, "referral.read", referral,
                 details={"client_id": str(referral.client_id)})
    return record


def audit_listing(db: Session, actor: Actor, referrals: list[Referral]) -> None:
    """Record which referrals a listing showed (one event per referral)."""
    audit.append_many(db, action="referral.listed", org_id=actor.org_id,
                      actor_type=actor.kind, actor_id=str(actor.id), object_type=TABLE,
                      object_ids=[r.id for r in referrals])


def _partner_view(db: Session, actor: Actor, referral: Referral, *,
                  as_sent: bool = False) -> PartnerView:
    result = disclosure(db, referral, as_sent=as_sent)
    is_open = referral.status in OPEN_STATUSES or (as_sent and referral.status == "draft")
    sender = db.scalar(sa.select(Org.name).where(Org.id == referral.org_id)) or ""
    history = [(t, _open(db, t, "reason") if t.actor_type == "partner_app" else None)
               for t in _history(db, referral) if t.from_status is not None
               and not (t.from_status == "draft" and t.to_status == "withdrawn")]
    notes = [(n, _open(db, n, "body") or "") for n in _notes(db, referral)
             if n.author_type == "partner_app" and n.author_id == referral.recipient_app_id]
    return PartnerView(referral, sender, _open_handoff(db, referral) if is_open else None,
                       result, _disclosed_client(db, actor, referral, result.shared),
                       history, notes)


def read_as_partner(db: Session, actor: Actor, referral_id: UUID) -> PartnerView:
    """A referral sent to the partner app's listing, as consent allows it right now. The
    read is audited, and each release that let data through is named in the audit."""
    require(actor, "referrals:read")
    referral = _find(db, actor, referral_id)
    view = _partner_view(db, actor, referral)
    audit.record(db, actor, "referral.read", referral, org_id=referral.org_id,
                 details={"client_id": str(referral.client_id),
                          "shared": len(view.disclosure.shared)})
    _audit_disclosure(db, actor, referral, view.disclosure)
    return view


def preview(db: Session, actor: Actor, referral_id: UUID) -> PartnerView:
    """Exactly what the recipient sees now (a draft: once sent), for the sending staff."""
    referral = _find(db, actor, referral_id)
    view = _partner_view(db, actor, referral, as_sent=True)
    audit.record(db, actor, "referral.previewed", referral,
                 details={"client_id": str(referral.client_id),
                          "shared": len(view.disclosure.shared)})
    return view


def list_query(actor: Actor, *, status: str | None = None, client_id: UUID | None = None,
               updated_since: datetime | None = None) -> sa.Select[Any]:
    """Staff: referrals of clients within reach, filtered by status, client and last
    change at or after ``updated_since``."""
    query = readable_referrals(actor)
    if status is not None:
        query = query.where(Referral.status == status)
    if client_id is not None:
        query = query.where(Referral.client_id == client_id)
    if updated_since is not None:
        query = query.where(Referral.updated_at >= updated_since)
    return query


# What an inbox listing shows: ids, state and times, no client data.
_INBOX_COLUMNS = (Referral.id, Referral.resource_id, Referral.status, Referral.sent_at,
                  Referral.updated_at)


def inbox_page(db: Session, actor: Actor, params: PageParams, *, status: str | None = None,
               client_id: UUID | None = None, updated_since: datetime | None = None,
               ) -> tuple[list[sa.Row[Any]], str | None]:
    """One page of a partner app's inbox, oldest change first (``updated_at``, id), so a
    partner syncing with ``updated_since`` pages to the end and misses nothing. Plain
    rows of the listed columns: this is what partners poll, so it stays lean."""
    require(actor, "referrals:read")
    if client_id is not None:
        raise Invalid("Partner apps cannot filter by client.",
                      errors=[{"field": "client_id", "location": "query",
                               "message": "not a filter for partner apps", "type": "filter"}])
    listing = f"referrals:inbox:{actor.id}"
    query = partner_inbox(actor).with_only_columns(*_INBOX_COLUMNS)
    if status is not None:
        query = query.where(Referral.status == status)
    if updated_since is not None:
        query = query.where(Referral.updated_at >= updated_since)
    if params.cursor:
        after_at, after_id = decode_cursor(listing, params.cursor, 2)
        query = query.where(sa.or_(Referral.updated_at > after_at,
                                   sa.and_(Referral.updated_at == after_at,
                                           Referral.id > after_id)))
    rows = list(db.execute(query.order_by(Referral.updated_at, Referral.id)
                           .limit(params.limit + 1)))
    next_cursor = None
    if len(rows) > params.limit:
        rows = rows[:params.limit]
        next_cursor = encode_cursor(listing, (rows[-1].updated_at, rows[-1].id))
    return rows, next_cursor


# --- writing ------------------------------------------------------------------------------


def _client_code_words(db: Session, actor: Actor, client: Client) -> set[str]:
    safe_contact = clients.decrypt_record(db, actor, client).fields.get("safe_contact") or {}
    return {keys.normalise_for_index(channel["code_word"])
            for channel in safe_contact.get("channels") or [] if channel.get("code_word")}


def _check_handoff(db: Session, actor: Actor, client: Client,
                   handoff: dict[str, Any]) -> dict[str, Any]:
    code_word = (handoff.get("code_word") or "").strip()
    if len(code_word) < 3:
        raise Invalid("A warm handoff needs a code word of at least 3 characters.",
                      errors=_error("handoff.code_word", "at least 3 characters", "length"))
    if keys.normalise_for_index(code_word) in _client_code_words(db, actor, client):
        raise Invalid("Choose a new code word for the handoff: the client's own safe-contact "
                      "code word never leaves the agency.",
                      errors=_error("handoff.code_word", "is a safe-contact code word of the "
                                    "client", "code_word"))
    window = handoff.get("call_window")
    if window is not None:
        starts, ends = window["starts_at"], window["ends_at"]
        if starts.tzinfo is None or ends.tzinfo is None:
            raise Invalid("Times need a UTC offset.",
                          errors=_error("handoff.call_window", "timestamp without offset",
                                        "datetime"))
        if ends <= starts:
            raise Invalid("The call window must end after it starts.",
                          errors=_error("handoff.call_window.ends_at", "not after starts_at",
                                        "datetime"))
        if ends <= utcnow():
            raise Invalid("The call window is already over.",
                          errors=_error("handoff.call_window.ends_at", "in the past",
                                        "datetime"))
        if ends - starts > MAX_CALL_WINDOW:
            raise Invalid("A call window may last at most 14 days.",
                          errors=_error("handoff.call_window.ends_at",
                                        "more than 14 days after starts_at", "datetime"))
        window = {"starts_at": starts.isoformat(), "ends_at": ends.isoformat()}
    note = (handoff.get("note") or "").strip() or None
    return {"code_word": code_word, "call_window": window, "note": note}


def _recipient_of(db: Session, resource: Any) -> tuple[UUID | None, UUID]:
    """The listing's partner app (its inbox) if it is active, and the org owning it."""
    if resource.partner_app_id is None:
        return None, resource.org_id
    app = db.scalar(sa.select(PartnerApp).where(PartnerApp.id == resource.partner_app_id))
    if app is None or not app.is_active:
        raise Invalid("This listing's partner app is disabled: it cannot receive referrals.",
                      errors=_error("resource_id", "the listing's partner app is disabled",
                                    "recipient"))
    return app.id, app.org_id


def _record_transition(db: Session, actor: Actor, referral: Referral, from_status: str | None,
                       to_status: str, reason: str) -> ReferralTransition:
    row = ReferralTransition(org_id=referral.org_id, client_id=referral.client_id,
                             referral_id=referral.id, from_status=from_status,
                             to_status=to_status, actor_type=actor.kind, actor_id=actor.id,
                             reason="")
    # Sealed before the row is added: encrypting may flush, and the row must be whole then.
    row.reason = _seal(db, row, "reason", reason) or ""
    db.add(row)
    return row


def create_referral(db: Session, actor: Actor, *, client_id: UUID, resource_id: UUID,
                    categories: list[str], reason: str,
                    handoff: dict[str, Any] | None = None) -> ReferralRecord:
    """Draft a referral of a client within reach to a listing of the directory, asking for
    data categories (shared later only where a release allows) and, optionally, a warm
    handoff. Staff who may write the client."""
    client = clients.get_client(db, actor, client_id, for_write=True)
    resource = resources.get_resource(db, actor, resource_id)
    chosen = _categories(list(categories))
    why = _reason(reason)
    checked = _check_handoff(db, actor, client, handoff) if handoff is not None else None
    app_id, recipient_org = _recipient_of(db, resource)
    referral = Referral(org_id=client.org_id, client_id=client.id, resource_id=resource.id,
                        recipient_app_id=app_id, recipient_org_id=recipient_org,
                        recipient_name=resource.name, status="draft", categories=chosen,
                        created_by=actor.id)
    if checked is not None:
        referral.handoff_code_word = _seal(db, referral, "handoff_code_word",
                                           checked["code_word"])
        window = checked["call_window"]
        referral.handoff_call_window = (
            keys.encrypt_json(db, value=window, **_place(referral, "handoff_call_window"))
            if window else None)
        referral.handoff_note = _seal(db, referral, "handoff_note", checked["note"])
    db.add(referral)
    db.flush()
    _record_transition(db, actor, referral, None, "draft", why)
    db.flush()
    audit.record(db, actor, "referral.created", referral,
                 details={"client_id": str(client.id), "resource_id": str(resource.id),
                          "categories": ",".join(chosen), "handoff": checked is not None})
    return staff_record(db, referral)


def _check_move(referral: Referral, to_status: str) -> str:
    """The side (sender or recipient) that may make this move, or IllegalTransition."""
    side = TRANSITIONS[referral.status].get(to_status)
    if side is None:
        raise IllegalTransition(referral.status, to_status)
    return side


def _notify_sender(db: Session, actor: Actor, referral: Referral, kind: str) -> None:
    """Tell the advocate who sent the referral (if still active) that the recipient moved."""
    sender = referral.sent_by or referral.created_by
    active = db.scalar(sa.select(StaffUser.id).where(
        StaffUser.id == sender, StaffUser.org_id == referral.org_id,
        StaffUser.is_active.is_(True)))
    if active is not None:
        notifications.notify(db, org_id=referral.org_id, user_ids=[active], kind=kind,
                             object_type=TABLE, object_id=referral.id,
                             actor_id=actor.id if actor.is_user else None)


def _emit(db: Session, referral: Referral, event_type: str) -> None:
    """A webhook event (type and id only) for the recipient's partner app, if any: its
    endpoints alone, not those of the recipient agency's other apps."""
    if referral.recipient_app_id is not None:
        webhooks.emit(db, org_id=referral.recipient_org_id, app_id=referral.recipient_app_id,
                      event_type=event_type, subject_id=referral.id)


def _move(db: Session, actor: Actor, referral: Referral, to_status: str,
          reason: str) -> ReferralTransition:
    from_status = referral.status
    referral.status = to_status
    _touch(referral)
    row = _record_transition(db, actor, referral, from_status, to_status, reason)
    db.flush()
    # An answer (or a withdrawal) ends the wait: the follow-up reminder goes at once.
    reminder_rules.sync_reminders_for(db, "referral", referral.id)
    return row


def send_referral(db: Session, actor: Actor, referral_id: UUID, *,
                  reason: str) -> ReferralRecord:
    """Send a draft: the recipient sees it (with what consent allows at each read); the
    answer says which requested categories are shared now and which are withheld."""
    why = _reason(reason)
    referral = _find(db, actor, referral_id, lock=True)
    _client_for_write(db, actor, referral)
    _check_move(referral, "sent")
    referral.sent_at, referral.sent_by = utcnow(), actor.id
    _move(db, actor, referral, "sent", why)
    record = staff_record(db, referral)
    audit.record(db, actor, "referral.sent", referral,
                 details={"client_id": str(referral.client_id),
                          "shared": len(record.disclosure.shared),
                          "withheld": len(record.disclosure.withheld)})
    _emit(db, referral, "referral.sent")
    return record


def withdraw_referral(db: Session, actor: Actor, referral_id: UUID, *,
                      reason: str) -> ReferralRecord:
    """The sending agency withdraws a draft, sent or accepted referral."""
    why = _reason(reason)
    referral = _find(db, actor, referral_id, lock=True)
    _client_for_write(db, actor, referral)
    was_sent = referral.sent_at is not None
    _check_move(referral, "withdrawn")
    _move(db, actor, referral, "withdrawn", why)
    audit.record(db, actor, "referral.withdrawn", referral,
                 details={"client_id": str(referral.client_id)})
    if was_sent:
        _emit(db, referral, "referral.updated")
    return staff_record(db, referral)


def answer_referral(db: Session, actor: Actor, referral_id: UUID, action: str, *,
                    reason: str) -> Referral:
    """The recipient accepts, declines, completes or closes a referral: its partner app,
    or the sending agency's staff recording an outside agency's answer when the listing
    has no partner app. The sending advocate is notified."""
    to_status = ACTIONS[action]
    if actor.is_partner:
        require(actor, "referrals:write")
    why = _reason(reason)
    referral = _find(db, actor, referral_id, lock=True)
    if actor.is_user:
        _client_for_write(db, actor, referral)
        if referral.recipient_app_id is not None:
            raise Forbidden("The receiving partner app answers this referral itself.",
                            audit={"action": f"referrals:{action}", "object_type": TABLE,
                                   "object_id": str(referral.id)})
    side = _check_move(referral, to_status)
    if side != RECIPIENT:
        raise IllegalTransition(referral.status, to_status)
    _move(db, actor, referral, to_status, why)
    audit.record(db, actor, f"referral.{to_status}", referral, org_id=referral.org_id,
                 details={"client_id": str(referral.client_id)})
    if actor.is_partner:
        _notify_sender(db, actor, referral, f"referral_{to_status}")
    _emit(db, referral, "referral.updated")
    return referral


def add_note(db: Session, actor: Actor, referral_id: UUID, *, body: str) -> ReferralNote:
    """The receiving partner app adds a note (kept encrypted); the sending advocate is
    notified. Staff do not write here: nothing the agency writes reaches the partner
    outside consent."""
    if not actor.is_partner:
        raise Forbidden("Only the receiving partner app adds notes to a referral.",
                        audit={"action": "referrals:notes"})
    require(actor, "referrals:write")
    text = (body or "").strip()
    if not text:
        raise Invalid("Write something in the note.", errors=_error("body", "required"))
    referral = _find(db, actor, referral_id, lock=True)
    note = ReferralNote(org_id=referral.org_id, client_id=referral.client_id,
                        referral_id=referral.id, author_type=actor.kind, author_id=actor.id,
                        body="")
    note.body = _seal(db, note, "body", text) or ""
    db.add(note)
    _touch(referral)
    db.flush()
    audit.record(db, actor, "referral.note_added", note, org_id=referral.org_id,
                 details={"referral_id": str(referral.id),
                          "client_id": str(referral.client_id)})
    _notify_sender(db, actor, referral, "referral_note")
    return note


# --- consent revoked ----------------------------------------------------------------------


def on_consent_revoked(db: Session, release: ReleaseOfInformation) -> None:
    """A release was just revoked: every referral it was letting data through to is told
    (``referral.consent_revoked`` to the recipient's partner apps) and marked changed, so
    partners syncing by ``updated_since`` fetch it again — and find the data gone, as
    every read asks ``may_disclose`` afresh."""
    if release.revoked_at is None:
        return
    just_before = release.revoked_at - timedelta(microseconds=1)
    candidates = db.scalars(sa.select(Referral).where(
        Referral.client_id == release.client_id, Referral.org_id == release.org_id,
        Referral.sent_at.is_not(None)))
    for referral in candidates:
        recipient = _recipient_kwargs(referral)
        covered = [c for c in referral.categories
                   if consents.may_disclose(db, client_id=referral.client_id, category=c,
                                            at=just_before, **recipient).consent_id
                   == release.id]
        if not covered:
            continue
        _touch(referral)
        db.flush()
        audit.append(db, action="referral.consent_revoked", org_id=referral.org_id,
                     actor_type="user", actor_id=str(release.revoked_by),
                     object_type=TABLE, object_id=referral.id,
                     details={"consent_id": str(release.id),
                              "categories": ",".join(covered)})
        _emit(db, referral, "referral.consent_revoked")
