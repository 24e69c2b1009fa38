"""Referrals as the API answers them: the staff shape, the partner shape and the preview,
built in one place so that the dashboard shows exactly what the API sends (the preview
page renders the very payload of ``GET /api/v1/referrals/{id}/preview``)."""

from __future__ import annotations

from app.referrals import schemas, service
from app.referrals.models import Referral


def handoff(given: service.Handoff | None) -> schemas.HandoffOut | None:
    if given is None:
        return None
    window = (schemas.CallWindowOut(**given.call_window) if given.call_window else None)
    return schemas.HandoffOut(code_word=given.code_word, call_window=window, note=given.note)


def recipient(referral: Referral) -> schemas.RecipientOut:
    return schemas.RecipientOut(
        resource_id=referral.resource_id, name=referral.recipient_name,
        org_id=referral.recipient_org_id, partner_app_id=referral.recipient_app_id,
        release_names="partner_app" if service.release_names_app(referral)
        else "agency_name")


def withheld(disclosure: service.Disclosure) -> list[schemas.WithheldOut]:
    return [schemas.WithheldOut(category=c, reason=r) for c, r in disclosure.withheld]


def summary(referral: Referral) -> schemas.ReferralSummary:
    return schemas.ReferralSummary(
        id=referral.id, client_id=referral.client_id, resource_id=referral.resource_id,
        recipient_app_id=referral.recipient_app_id, status=referral.status,
        categories=list(referral.categories), created_at=referral.created_at,
        sent_at=referral.sent_at, updated_at=referral.updated_at)


def staff_out(record: service.ReferralRecord) -> schemas.ReferralOut:
    """The whole referral as the sending agency's staff see it."""
    r = record.referral
    return schemas.ReferralOut(
        **summary(r).model_dump(), recipient=recipient(r), handoff=handoff(record.handoff),
        created_by=r.created_by, sent_by=r.sent_by,
        disclosure=schemas.DisclosureOut(shared=list(record.disclosure.shared),
                                         withheld=withheld(record.disclosure)),
        history=[schemas.TransitionOut(from_status=t.from_status, to_status=t.to_status,
                                       actor_type=t.actor_type, actor_id=t.actor_id, at=t.at,
                                       reason=reason) for t, reason in record.history],
        notes=[schemas.NoteOut(id=n.id, author_type=n.author_type, author_id=n.author_id,
                               body=body, created_at=n.created_at)
               for n, body in record.notes])


def partner_summary(referral: Referral) -> schemas.PartnerReferralSummary:
    return schemas.PartnerReferralSummary(
        id=referral.id, resource_id=referral.resource_id, status=referral.status,
        sent_at=referral.sent_at, updated_at=referral.updated_at)


def partner_out(view: service.PartnerView) -> schemas.PartnerReferralOut:
    """The referral as its recipient sees it: what consent allows, nothing else."""
    r = view.referral
    return schemas.PartnerReferralOut(
        **partner_summary(r).model_dump(),
        sender=schemas.SenderOut(org_id=r.org_id, name=view.sender_name),
        handoff=handoff(view.handoff), shared_categories=list(view.disclosure.shared),
        client=schemas.DisclosedClient.model_validate(view.client),
        history=[schemas.PartnerTransitionOut(
            from_status=t.from_status, to_status=t.to_status,
            by="recipient" if t.actor_type == "partner_app" else "agency", at=t.at,
            reason=reason) for t, reason in view.history],
        notes=[schemas.PartnerNoteOut(id=n.id, body=body, created_at=n.created_at)
               for n, body in view.notes])


def preview(view: service.PartnerView) -> schemas.ReferralPreview:
    """Exactly what the recipient sees (a draft: once sent), and what is withheld, why."""
    return schemas.ReferralPreview(recipient=recipient(view.referral),
                                   as_recipient_sees=partner_out(view),
                                   withheld=withheld(view.disclosure))
