"""Referrals for staff (draft, send, withdraw, preview) and the partner inbox (list, read,
accept, decline, complete, close, notes) — one set of paths, each caller its own view."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Response
from pydantic import AwareDatetime, BaseModel

from app.core import access
from app.core.pagination import Page, PageParamsDep, SortKey, paginate
from app.db import SessionDep, UnitOfWorkRoute
from app.identity.deps import CurrentActor
from app.referrals import schemas, service, shapes
from app.referrals.models import Referral
from app.referrals.shapes import partner_out, partner_summary, staff_out, summary

router = APIRouter(prefix="/api/v1", tags=["referrals"], route_class=UnitOfWorkRoute)
PROBLEM = {"content": {"application/problem+json": {}}}
READ = {403: PROBLEM, 404: PROBLEM}
WRITE = {403: PROBLEM, 404: PROBLEM, 409: PROBLEM, 422: PROBLEM}


# --- shapes -------------------------------------------------------------------------------


def _json(model: BaseModel) -> Response:
    """A route that answers staff and partners with different shapes serialises the one
    it built itself: the response model (a union, for the documentation) never gets to
    choose between them."""
    return Response(content=model.model_dump_json(), media_type="application/json")


# --- routes -------------------------------------------------------------------------------


@router.post("/referrals", response_model=schemas.ReferralOut, status_code=201,
             responses={403: PROBLEM, 404: PROBLEM, 422: PROBLEM})
def create_referral(body: schemas.ReferralCreate, actor: CurrentActor,
                    db: SessionDep) -> schemas.ReferralOut:
    """Draft a referral of a client to a listing of the directory. Requested categories are
    shared only where a release of information allows it, checked at every disclosure;
    without one the referral is a warm handoff carrying no personal data."""
    access.require_client_staff(actor)
    return staff_out(service.create_referral(
        db, actor, client_id=body.client_id, resource_id=body.resource_id,
        categories=list(body.categories), reason=body.reason,
        handoff=body.handoff.model_dump() if body.handoff else None))


@router.get("/referrals",
            response_model=Page[schemas.ReferralSummary] | Page[schemas.PartnerReferralSummary],
            responses={403: PROBLEM, 422: PROBLEM})
def list_referrals(actor: CurrentActor, db: SessionDep, page: PageParamsDep,
                   status: Annotated[schemas.Status | None, Query()] = None,
                   client_id: Annotated[UUID | None, Query(
                       description="Staff only")] = None,
                   updated_since: Annotated[AwareDatetime | None, Query(
                       description="RFC 3339; changed at or after")] = None,
                   ) -> Any:
    """Staff: referrals of clients within reach (an advocate's caseload, a supervisor's
    org), newest first. A partner app (referrals:read): its inbox — referrals sent to its
    listings, oldest change first, so syncing with ``updated_since`` misses nothing.
    Listings carry no client data."""
    if actor.is_partner:
        # Not audited: the inbox shows ids, states and times, no client data, and stays a
        # read (no write lock per poll). Each read of a referral is audited.
        found, cursor = service.inbox_page(db, actor, page, status=status,
                                           client_id=client_id, updated_since=updated_since)
        return _json(Page[schemas.PartnerReferralSummary](
            items=[schemas.PartnerReferralSummary(
                id=r.id, resource_id=r.resource_id, status=r.status, sent_at=r.sent_at,
                updated_at=r.updated_at) for r in found], next_cursor=cursor))
    access.require_client_staff(actor)
    query = service.list_query(actor, status=status, client_id=client_id,
                               updated_since=updated_since)
    rows, next_cursor = paginate(db, query, listing=f"referrals:staff:{actor.id}",
                                 keys=[SortKey(Referral.created_at, descending=True),
                                       SortKey(Referral.id, descending=True)], params=page)
    service.audit_listing(db, actor, rows)
    return _json(Page[schemas.ReferralSummary](items=[summary(r) for r in rows],
                                               next_cursor=next_cursor))


@router.get("/referrals/{referral_id}",
            response_model=schemas.ReferralOut | schemas.PartnerReferralOut, responses=READ)
def get_referral(referral_id: UUID, actor: CurrentActor, db: SessionDep) -> Any:
    """Staff: the whole referral (handoff, history with reasons, notes, what the recipient
    receives now). A partner app: the referral as consent allows it at this moment — each
    read asks again, and each release that lets data through is named in the audit."""
    if actor.is_partner:
        return _json(partner_out(service.read_as_partner(db, actor, referral_id)))
    access.require_client_staff(actor)
    return _json(staff_out(service.read_referral(db, actor, referral_id)))


@router.get("/referrals/{referral_id}/preview", response_model=schemas.ReferralPreview,
            responses=READ)
def preview_referral(referral_id: UUID, actor: CurrentActor,
                     db: SessionDep) -> schemas.ReferralPreview:
    """Exactly what the recipient sees now (a draft: would see once sent), and each
    requested category withheld with the reason."""
    access.require_client_staff(actor)
    return shapes.preview(service.preview(db, actor, referral_id))


@router.post("/referrals/{referral_id}/send", response_model=schemas.ReferralOut,
             responses=WRITE)
def send_referral(referral_id: UUID, body: schemas.TransitionIn, actor: CurrentActor,
                  db: SessionDep) -> schemas.ReferralOut:
    """Send a draft. ``disclosure`` says which requested categories the recipient receives
    now and which are withheld (no release, expired, revoked, not covered)."""
    access.require_client_staff(actor)
    return staff_out(service.send_referral(db, actor, referral_id, reason=body.reason))


@router.post("/referrals/{referral_id}/withdraw", response_model=schemas.ReferralOut,
             responses=WRITE)
def withdraw_referral(referral_id: UUID, body: schemas.TransitionIn, actor: CurrentActor,
                      db: SessionDep) -> schemas.ReferralOut:
    """Withdraw a draft, sent or accepted referral (the sending agency)."""
    access.require_client_staff(actor)
    return staff_out(service.withdraw_referral(db, actor, referral_id, reason=body.reason))


def _answer(action: str, referral_id: UUID, body: schemas.TransitionIn, actor: Any,
            db: Any) -> Any:
    if not actor.is_partner:
        access.require_client_staff(actor)
    referral = service.answer_referral(db, actor, referral_id, action, reason=body.reason)
    if actor.is_partner:
        return _json(partner_summary(referral))
    return _json(staff_out(service.staff_record(db, referral)))


ANSWER_MODEL = schemas.ReferralOut | schemas.PartnerReferralSummary
ANSWER_DOC = (" The receiving partner app (referrals:write) answers; when the listing has "
              "no partner app, the sending agency's staff record the outside agency's "
              "answer. The sending advocate is notified.")


@router.post("/referrals/{referral_id}/accept", response_model=ANSWER_MODEL, responses=WRITE,
             description="Accept a sent referral." + ANSWER_DOC)
def accept_referral(referral_id: UUID, body: schemas.TransitionIn, actor: CurrentActor,
                    db: SessionDep) -> Any:
    return _answer("accept", referral_id, body, actor, db)


@router.post("/referrals/{referral_id}/decline", response_model=ANSWER_MODEL,
             responses=WRITE, description="Decline a sent referral." + ANSWER_DOC)
def decline_referral(referral_id: UUID, body: schemas.TransitionIn, actor: CurrentActor,
                     db: SessionDep) -> Any:
    return _answer("decline", referral_id, body, actor, db)


@router.post("/referrals/{referral_id}/complete", response_model=ANSWER_MODEL,
             responses=WRITE, description="Complete an accepted referral." + ANSWER_DOC)
def complete_referral(referral_id: UUID, body: schemas.TransitionIn, actor: CurrentActor,
                      db: SessionDep) -> Any:
    return _answer("complete", referral_id, body, actor, db)


@router.post("/referrals/{referral_id}/close", response_model=ANSWER_MODEL, responses=WRITE,
             description="Close an accepted referral without completing it." + ANSWER_DOC)
def close_referral(referral_id: UUID, body: schemas.TransitionIn, actor: CurrentActor,
                   db: SessionDep) -> Any:
    return _answer("close", referral_id, body, actor, db)


@router.post("/referrals/{referral_id}/notes", response_model=schemas.PartnerNoteOut,
             status_code=201, responses=WRITE)
def add_note(referral_id: UUID, body: schemas.NoteIn, actor: CurrentActor,
             db: SessionDep) -> schemas.PartnerNoteOut:
    """The receiving partner app (referrals:write) adds a note, kept encrypted; the
    sending advocate is notified. Staff read notes on the referral."""
    note = service.add_note(db, actor, referral_id, body=body.body)
    return schemas.PartnerNoteOut(id=note.id, body=body.body.strip(), created_at=note.created_at)
