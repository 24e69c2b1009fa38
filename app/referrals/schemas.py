"""Request and response shapes for referrals and the partner inbox (unknown fields are
refused). Staff shapes (``Referral…``) and partner shapes (``Partner…``) are separate
classes: a partner response cannot grow a field by accident."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, Field

from app.clients.schemas import ContactDetail, ContactWindow, Household, Strict

Status = Literal["draft", "sent", "accepted", "declined", "completed", "closed", "withdrawn"]
# The data categories (app.consents.service.DATA_CATEGORIES) a referral can carry.
ReferralCategory = Literal["identity", "contact_details", "address", "household",
                           "risk_assessment"]
Reason = Field(min_length=3, max_length=2000,
               description="Why (kept encrypted; the recipient sees the reasons it gave "
                           "itself, never the agency's)")


# --- requests -----------------------------------------------------------------------------


class CallWindow(Strict):
    """When the client (or the advocate with the client) will call the recipient."""

    starts_at: AwareDatetime
    ends_at: AwareDatetime = Field(description="After starts_at, at most 14 days later")


class WarmHandoff(Strict):
    """A handoff without personal data: the recipient expects a call in the window and
    knows the caller by the code word (never the client's own safe-contact code word)."""

    code_word: str = Field(min_length=3, max_length=100)
    call_window: CallWindow | None = None
    note: str | None = Field(default=None, max_length=2000,
                             description="For the recipient; put no personal data here")


class ReferralCreate(Strict):
    client_id: UUID
    resource_id: UUID
    categories: list[ReferralCategory] = Field(
        default_factory=list, max_length=5,
        description="Data categories to share where a release allows it (others are "
                    "withheld, never refused)")
    reason: str = Reason
    handoff: WarmHandoff | None = None


class TransitionIn(Strict):
    reason: str = Reason


class NoteIn(Strict):
    body: str = Field(min_length=1, max_length=4000)


# --- staff responses ----------------------------------------------------------------------


class CallWindowOut(BaseModel):
    starts_at: datetime
    ends_at: datetime


class HandoffOut(BaseModel):
    code_word: str
    call_window: CallWindowOut | None
    note: str | None


class RecipientOut(BaseModel):
    resource_id: UUID
    name: str
    org_id: UUID
    partner_app_id: UUID | None
    release_names: Literal["partner_app", "agency_name"] = Field(
        description="How a release of information must name this recipient to cover it")


class WithheldOut(BaseModel):
    category: str
    reason: str


class DisclosureOut(BaseModel):
    """Which requested categories the recipient receives now, and which are withheld."""

    shared: list[str]
    withheld: list[WithheldOut]


class TransitionOut(BaseModel):
    from_status: Status | None
    to_status: Status
    actor_type: Literal["user", "partner_app"]
    actor_id: UUID
    at: datetime
    reason: str


class NoteOut(BaseModel):
    id: UUID
    author_type: Literal["user", "partner_app"]
    author_id: UUID
    body: str
    created_at: datetime


class ReferralSummary(BaseModel):
    id: UUID
    client_id: UUID
    resource_id: UUID
    recipient_app_id: UUID | None
    status: Status
    categories: list[str]
    created_at: datetime
    sent_at: datetime | None
    updated_at: datetime


class ReferralOut(ReferralSummary):
    recipient: RecipientOut
    handoff: HandoffOut | None
    created_by: UUID
    sent_by: UUID | None
    disclosure: DisclosureOut
    history: list[TransitionOut]
    notes: list[NoteOut]


# --- partner responses --------------------------------------------------------------------


class DisclosedIdentity(BaseModel):
    preferred_name: str | None
    legal_name: str | None
    aliases: list[str]
    date_of_birth: str | None


class DisclosedSafeChannel(BaseModel):
    """A safe-contact channel without its code word (that never leaves the agency)."""

    channel: str
    safe: bool
    windows: list[ContactWindow]
    leave_message: bool


class DisclosedSafeContact(BaseModel):
    time_zone: str
    channels: list[DisclosedSafeChannel]


class DisclosedContact(BaseModel):
    """Contact details always travel with the client's safe-contact preferences."""

    contact_details: list[ContactDetail]
    safe_contact: DisclosedSafeContact


class DisclosedAddress(BaseModel):
    address: str | None


class DisclosedRisk(BaseModel):
    instrument_id: str
    instrument_version: str
    level: str
    score: str
    max_score: str
    complete: bool
    assessed_at: datetime


class DisclosedClient(BaseModel):
    """The client as the recipient may see them: a field is null unless a release in
    force covers its category for this recipient."""

    identity: DisclosedIdentity | None = None
    contact_details: DisclosedContact | None = None
    address: DisclosedAddress | None = None
    household: Household | None = None
    risk_assessment: DisclosedRisk | None = None


class PartnerTransitionOut(BaseModel):
    from_status: Status | None
    to_status: Status
    by: Literal["agency", "recipient"]
    at: datetime
    reason: str | None = Field(description="Only the reasons the recipient gave itself")


class PartnerNoteOut(BaseModel):
    id: UUID
    body: str
    created_at: datetime


class SenderOut(BaseModel):
    org_id: UUID
    name: str


class PartnerReferralSummary(BaseModel):
    id: UUID
    resource_id: UUID
    status: Status
    sent_at: datetime | None = Field(description="Null only in a preview of a draft")
    updated_at: datetime


class PartnerReferralOut(PartnerReferralSummary):
    sender: SenderOut
    handoff: HandoffOut | None
    shared_categories: list[str]
    client: DisclosedClient
    history: list[PartnerTransitionOut]
    notes: list[PartnerNoteOut]


class ReferralPreview(BaseModel):
    """Exactly what the recipient sees (for a draft: would see once sent), and what is
    withheld from it and why."""

    recipient: RecipientOut
    as_recipient_sees: PartnerReferralOut
    withheld: list[WithheldOut]
