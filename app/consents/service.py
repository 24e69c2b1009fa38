"""Releases of information (consents) and :func:`may_disclose`, the one disclosure check.

Rules of the field (VAWA/VOCA/FVPSA): nothing personal leaves the agency without the
client's informed, written, reasonably time-limited consent — one release per receiving
agency — and that holds for encoded, encrypted or hashed data too. A release is never a
condition of service: nothing here is checked when a client is opened or served, only
when data would leave the agency.

Releases are read through the client (``clients.service.get_client``), so a client
outside the caller's reach and its releases are simply not found (404). Recipient name,
purpose and revocation reason are encrypted under the client's key; every read and
write is audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlmodel import Session

from app.clients import service as clients
from app.clients.models import Client
from app.consents.models import ReleaseOfInformation
from app.core import audit, keys
from app.core.access import Actor
from app.core.errors import Conflict, Invalid, NotFound
from app.db import utcnow
from app.identity.models import PartnerApp

# What a release can cover. Other modules (referrals, exports, partner APIs) import this
# list and name the category of everything they disclose.
DATA_CATEGORIES: tuple[str, ...] = (
    "contact_details",   # phone numbers, e-mail, safe-contact preferences
    "identity",          # names, aliases, date of birth
    "address",
    "safety_plan",
    "risk_assessment",
    "incidents",
    "evidence",
    "household",         # children, pets, other household members
    "service_history",   # the service log: contacts, services given
)
HOW_GIVEN: tuple[str, ...] = ("written", "electronic_signature", "verbal_documented")
# "Reasonably time-limited": a release may run at most a year from when it takes effect.
# A longer need is met by a new release, which the client is asked for again, informed
# again. One year is the longest term commonly used by DV programmes' release forms.
MAX_RELEASE_DAYS = 365
# A release recorded from paper may have been signed a little while ago, not long ago.
MAX_GIVEN_AGE_DAYS = 30
TABLE = "release_of_information"
ENCRYPTED_FIELDS = ("recipient_name", "purpose", "revocation_reason")
INDEX_KIND = "roi-recipient"


@dataclass
class ReleaseRecord:
    """A release with its encrypted fields opened, for the API and the dashboard."""

    release: ReleaseOfInformation
    recipient_name: str | None
    purpose: str
    revocation_reason: str | None
    status: str  # "active" | "pending" | "expired" | "revoked"


@dataclass(frozen=True)
class Decision:
    """The answer of :func:`may_disclose`: whether, under which release, and why not."""

    allowed: bool
    consent_id: UUID | None
    reason: str


# --- state --------------------------------------------------------------------------------


def release_status(release: ReleaseOfInformation, at: datetime | None = None) -> str:
    """Where a release stands at ``at`` (default now)."""
    at = at or utcnow()
    if release.revoked_at is not None and release.revoked_at <= at:
        return "revoked"
    if release.expires_at <= at:
        return "expired"
    if release.effective_from > at:
        return "pending"
    return "active"


def _place(release: ReleaseOfInformation, column: str) -> dict[str, Any]:
    return {"org_id": release.org_id, "client_id": release.client_id, "table": TABLE,
            "column": column, "row_id": str(release.id)}


def _seal(db: Session, release: ReleaseOfInformation, column: str, value: str | None) -> None:
    setattr(release, column, keys.encrypt_field(db, plaintext=value or None,
                                                **_place(release, column)))


def decrypt_release(db: Session, release: ReleaseOfInformation) -> ReleaseRecord:
    opened = {column: keys.decrypt_field(db, ciphertext=getattr(release, column),
                                         **_place(release, column))
              for column in ENCRYPTED_FIELDS}
    return ReleaseRecord(release, opened["recipient_name"], opened["purpose"] or "",
                         opened["revocation_reason"], release_status(release))


def _recipient_index(db: Session, org_id: UUID, name: str) -> str:
    return keys.blind_index(db, org_id=org_id, kind=INDEX_KIND, value=name)


def _field_error(field: str, message: str, kind: str = "value") -> list[dict[str, str]]:
    return [{"field": field, "location": "body", "message": message, "type": kind}]


# --- reading ------------------------------------------------------------------------------


def list_releases(db: Session, actor: Actor, client_id: UUID) -> sa.Select[Any]:
    """The query of a client's releases (404 when the client is out of reach)."""
    client = clients.get_client(db, actor, client_id)
    return sa.select(ReleaseOfInformation).where(
        ReleaseOfInformation.org_id == client.org_id,
        ReleaseOfInformation.client_id == client.id)


def audit_listing(db: Session, actor: Actor, client_id: UUID,
                  releases: list[ReleaseOfInformation]) -> None:
    """Record that a client's releases were read (one event per release shown)."""
    audit.record(db, actor, "consent.listed", object_type="client", object_id=client_id,
                 details={"count": len(releases)})
    audit.append_many(db, action="consent.read", org_id=actor.org_id, actor_type=actor.kind,
                      actor_id=str(actor.id), object_type=TABLE,
                      object_ids=[release.id for release in releases])


# --- writing ------------------------------------------------------------------------------


def _check_recipient(db: Session, client: Client, recipient_app_id: UUID | None,
                     recipient_name: str | None) -> str | None:
    """The normalised recipient name, after checking exactly one recipient is named and a
    partner app is an active app of the client's own agency."""
    name = (recipient_name or "").strip() or None
    if (recipient_app_id is None) == (name is None):
        raise Invalid("Name one recipient: a partner app or an outside agency, not both.",
                      errors=_field_error("recipient_app_id",
                                          "give recipient_app_id or recipient_name",
                                          "recipient"))
    if recipient_app_id is not None:
        app = db.scalar(sa.select(PartnerApp).where(PartnerApp.id == recipient_app_id,
                                                    PartnerApp.org_id == client.org_id,
                                                    PartnerApp.is_active.is_(True)))
        if app is None:
            raise Invalid("No such active partner app in this agency.",
                          errors=_field_error("recipient_app_id",
                                              "not an active partner app of this agency",
                                              "recipient"))
    return name


def _check_dates(given_at: datetime, effective_from: datetime, expires_at: datetime,
                 now: datetime) -> None:
    for field, value in (("given_at", given_at), ("effective_from", effective_from),
                         ("expires_at", expires_at)):
        if value.tzinfo is None:
            raise Invalid("Times need a UTC offset.",
                          errors=_field_error(field, "timestamp without offset", "datetime"))
    if given_at > now + timedelta(minutes=5):
        raise Invalid("Consent cannot be recorded before it is given.",
                      errors=_field_error("given_at", "in the future", "datetime"))
    if given_at < now - timedelta(days=MAX_GIVEN_AGE_DAYS):
        raise Invalid(f"Record a release within {MAX_GIVEN_AGE_DAYS} days of its signature; "
                      "ask the client again otherwise.",
                      errors=_field_error("given_at", "too long ago", "datetime"))
    if effective_from < given_at:
        raise Invalid("A release cannot take effect before it was given.",
                      errors=_field_error("effective_from", "before given_at", "datetime"))
    if expires_at <= effective_from:
        raise Invalid("A release must expire after it takes effect.",
                      errors=_field_error("expires_at", "not after effective_from",
                                          "datetime"))
    if expires_at <= now:
        raise Invalid("This release has already expired.",
                      errors=_field_error("expires_at", "in the past", "datetime"))
    if expires_at - effective_from > timedelta(days=MAX_RELEASE_DAYS):
        raise Invalid(f"A release may run for at most {MAX_RELEASE_DAYS} days.",
                      errors=_field_error("expires_at",
                                          f"more than {MAX_RELEASE_DAYS} days after "
                                          "effective_from", "datetime"))


def _check_categories(categories: list[str]) -> list[str]:
    unknown = [c for c in categories if c not in DATA_CATEGORIES]
    if not categories or unknown:
        raise Invalid("Name at least one known data category.",
                      errors=_field_error("categories",
                                          f"choose from {', '.join(DATA_CATEGORIES)}",
                                          "category"))
    return [c for c in DATA_CATEGORIES if c in categories]  # canonical order, no duplicates


def _recipient_filter(recipient_app_id: UUID | None,
                      recipient_index: str | None) -> sa.ColumnElement[bool]:
    if recipient_app_id is not None:
        return ReleaseOfInformation.recipient_app_id == recipient_app_id
    return ReleaseOfInformation.recipient_index == recipient_index


def record_release(db: Session, actor: Actor, client_id: UUID, *,
                   recipient_app_id: UUID | None = None, recipient_name: str | None = None,
                   purpose: str, categories: list[str], how_given: str,
                   given_at: datetime | None = None, effective_from: datetime | None = None,
                   expires_at: datetime) -> ReleaseRecord:
    """Record a client's release of information to one recipient (staff who may write the
    client). A second unrevoked, unexpired release for the same recipient is a conflict."""
    client = clients.get_client(db, actor, client_id, for_write=True)
    now = utcnow()
    given_at = given_at or now
    effective_from = effective_from or given_at
    name = _check_recipient(db, client, recipient_app_id, recipient_name)
    _check_dates(given_at, effective_from, expires_at, now)
    chosen = _check_categories(list(categories))
    if how_given not in HOW_GIVEN:
        raise Invalid("Say how the consent was given.",
                      errors=_field_error("how_given", f"choose from {', '.join(HOW_GIVEN)}"))
    purpose = purpose.strip()
    if not purpose:
        raise Invalid("Say what the release is for.", errors=_field_error("purpose", "required"))
    # Serialise releases of one client, so two requests cannot both pass the check below.
    db.execute(sa.select(Client.id).where(Client.id == client.id).with_for_update())
    index = _recipient_index(db, client.org_id, name) if name else None
    current = db.scalar(sa.select(ReleaseOfInformation.id).where(
        ReleaseOfInformation.client_id == client.id,
        _recipient_filter(recipient_app_id, index),
        ReleaseOfInformation.revoked_at.is_(None),
        ReleaseOfInformation.expires_at > now).limit(1))
    if current is not None:
        raise Conflict("This client already has a release for this recipient that has not "
                       "expired. Revoke it first to record a new one.",
                       errors=[{"field": "recipient_app_id" if recipient_app_id else
                                "recipient_name", "location": "body",
                                "message": "an unexpired release exists",
                                "type": "conflict", "consent_id": str(current)}])
    release = ReleaseOfInformation(
        org_id=client.org_id, client_id=client.id, recipient_app_id=recipient_app_id,
        recipient_index=index, purpose="", categories=chosen, how_given=how_given,
        given_at=given_at, effective_from=effective_from, expires_at=expires_at,
        recorded_by=actor.id)
    # Sealed before the row is added: encrypting may flush, and the row must be whole then.
    _seal(db, release, "purpose", purpose)
    _seal(db, release, "recipient_name", name)
    db.add(release)
    db.flush()
    audit.record(db, actor, "consent.recorded", release,
                 details={"client_id": str(client.id), "categories": len(chosen),
                          "recipient": "partner_app" if recipient_app_id else "named"})
    return decrypt_release(db, release)


def revoke_release(db: Session, actor: Actor, client_id: UUID, consent_id: UUID, *,
                   reason: str) -> ReleaseRecord:
    """Revoke a release from now on (the client may do so at any time); the reason is kept
    encrypted. A release already revoked is a conflict."""
    client = clients.get_client(db, actor, client_id, for_write=True)
    release = db.scalar(sa.select(ReleaseOfInformation).where(
        ReleaseOfInformation.id == consent_id, ReleaseOfInformation.client_id == client.id,
        ReleaseOfInformation.org_id == client.org_id).with_for_update())
    if release is None:
        raise NotFound("No such release for this client.")
    reason = reason.strip()
    if not reason:
        raise Invalid("Say why the release is revoked.", errors=_field_error("reason",
                                                                               "required"))
    if release.revoked_at is not None:
        raise Conflict("This release is already revoked.")
    release.revoked_at = utcnow()
    release.revoked_by = actor.id
    _seal(db, release, "revocation_reason", reason)
    db.flush()
    audit.record(db, actor, "consent.revoked", release, details={"client_id": str(client.id)})
    from app.referrals import service as referrals  # referrals build on consents
    referrals.on_consent_revoked(db, release)
    return decrypt_release(db, release)


# --- the disclosure check -----------------------------------------------------------------

_REFUSALS = {
    "revoked": "release revoked",
    "expired": "release expired",
    "pending": "not yet effective",
}


def may_disclose(db: Session, *, client_id: UUID, recipient_app_id: UUID | None = None,
                 recipient_name: str | None = None, category: str,
                 at: datetime | None = None) -> Decision:
    """May data of ``category`` about the client go to this recipient at ``at`` (now)?

    THE only path for any disclosure outside the agency: referrals call it at send
    time and again at every later disclosure, as does any export or partner API that
    hands client data (even encoded, encrypted or hashed) to another agency. Name the
    recipient by exactly one of ``recipient_app_id`` (a partner app) or
    ``recipient_name`` (an outside agency, matched however it is spelled in case or
    spacing). Allowed only under one release that names this recipient, covers the
    category, has taken effect, has not expired and was not revoked by ``at``;
    otherwise refused, with no ``consent_id``, for the reason of the recipient's newest
    release ("release revoked", "release expired", "not yet effective", "category not
    covered") or "no release for this recipient". It decides nothing about reach
    (callers have already loaded the client through ``get_client``) and writes nothing:
    the caller audits the disclosure with the ``consent_id``. Never call it to open or
    serve a client: a release is never a condition of service.
    """
    if category not in DATA_CATEGORIES:
        raise ValueError(f"unknown data category {category!r}")
    name = (recipient_name or "").strip() or None
    if (recipient_app_id is None) == (name is None):
        raise ValueError("name exactly one recipient: recipient_app_id or recipient_name")
    if at is not None and at.tzinfo is None:
        raise ValueError("at must carry an offset")
    at = at or utcnow()
    client = db.scalar(sa.select(Client).where(Client.id == client_id))
    if client is None or client.purged_at is not None:
        return Decision(False, None, "no such client")
    if recipient_app_id is not None:
        app_org = db.scalar(sa.select(PartnerApp.org_id).where(
            PartnerApp.id == recipient_app_id, PartnerApp.is_active.is_(True)))
        if app_org != client.org_id:
            return Decision(False, None, "recipient is not an active partner app of the agency")
        index = None
    else:
        index = _recipient_index(db, client.org_id, name or "")
    releases = list(db.scalars(sa.select(ReleaseOfInformation).where(
        ReleaseOfInformation.client_id == client.id,
        ReleaseOfInformation.org_id == client.org_id,
        _recipient_filter(recipient_app_id, index),
    ).order_by(ReleaseOfInformation.created_at.desc(), ReleaseOfInformation.id.desc())))
    if not releases:
        return Decision(False, None, "no release for this recipient")
    for release in releases:
        if release_status(release, at) == "active" and category in release.categories:
            return Decision(True, release.id, "covered by release")
    # Refusals carry no consent id, so no caller can mistake one for permission.
    state = release_status(releases[0], at)
    return Decision(False, None, _REFUSALS.get(state, "category not covered"))


def forget_client(db: Session, client_id: UUID) -> None:
    """On erasure: drop the last readable link between a client and its recipients (the
    keyed index of the recipient's name); the rest of each release is already unreadable."""
    db.execute(sa.update(ReleaseOfInformation).where(ReleaseOfInformation.client_id == client_id)
               .values(recipient_index=None))
