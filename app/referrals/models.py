"""Referrals of a client to a resource, every change of their state, and partner notes.

A :class:`Referral` names the client, the resource and who receives it: the partner app
that keeps the resource's listing (its inbox), the org owning the listing, and the
agency's name as a release of information would name it. What stays in clear, and why:
status and times (inbox listings, filters, reminders), the requested data categories
(names only, never data) and the recipient (routing). The warm-handoff code word, call
window and note are ciphertexts under the client's key.

:class:`ReferralTransition` and :class:`ReferralNote` are append-only: no code path
updates or deletes them, and database triggers refuse it. Their reasons and bodies are
ciphertexts under the client's key, so erasing the client (crypto-shredding) leaves
nothing readable behind.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.db import UTCDateTime, utcnow

STATUSES: tuple[str, ...] = ("draft", "sent", "accepted", "declined", "completed", "closed",
                             "withdrawn")
ACTOR_TYPES: tuple[str, ...] = ("user", "partner_app")


def _known(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


class Referral(SQLModel, table=True):
    """One referral of one client to one resource."""

    __tablename__ = "referral"
    __table_args__ = (
        sa.CheckConstraint(_known("status", STATUSES), name="status_known"),
        sa.CheckConstraint("(status = 'draft') = (sent_at IS NULL) OR "
                           "(status = 'withdrawn')", name="sent_at_after_draft"),
        # The partner inbox: an app's referrals in order of their last change.
        sa.Index("ix_referral_inbox", "recipient_app_id", "updated_at", "id"),
        # Staff listings: an org's referrals, newest first.
        sa.Index("ix_referral_org_created", "org_id", "created_at", "id"),
    )

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    org_id: UUID = Field(foreign_key="org.id")  # the sending agency (the client's)
    client_id: UUID = Field(foreign_key="client.id", index=True)
    resource_id: UUID = Field(foreign_key="resource.id", index=True)
    # Whose inbox it lands in (the listing's partner app), if any; the listing's owner.
    recipient_app_id: UUID | None = Field(default=None, foreign_key="partner_app.id")
    recipient_org_id: UUID = Field(foreign_key="org.id")
    # The receiving agency as a release of information names it (the listing's name when
    # the referral was made), used when no partner app of the sending agency receives it.
    recipient_name: str = Field(max_length=200)
    status: str = Field(default="draft", max_length=16)
    categories: list[Any] = Field(sa_type=sa.JSON)  # requested data categories (names)
    handoff_code_word: str | None = Field(default=None, sa_type=sa.Text)  # encrypted
    handoff_call_window: str | None = Field(default=None, sa_type=sa.Text)  # encrypted JSON
    handoff_note: str | None = Field(default=None, sa_type=sa.Text)  # encrypted
    created_by: UUID = Field(foreign_key="staff_user.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    sent_by: UUID | None = Field(default=None, foreign_key="staff_user.id")
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ReferralTransition(SQLModel, table=True):
    """One change of a referral's state: from, to, who (staff or partner app), when and
    why (the reason is a ciphertext under the client's key). The first row of a referral
    (``from_status`` NULL) records its creation as a draft."""

    __tablename__ = "referral_transition"
    __table_args__ = (
        sa.CheckConstraint(_known("to_status", STATUSES), name="to_status_known"),
        sa.CheckConstraint("from_status IS NULL OR " + _known("from_status", STATUSES),
                           name="from_status_known"),
        sa.CheckConstraint(_known("actor_type", ACTOR_TYPES), name="actor_type_known"),
        sa.Index("ix_referral_transition_referral_at", "referral_id", "at", "id"),
    )

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    org_id: UUID = Field(foreign_key="org.id", index=True)
    client_id: UUID = Field(foreign_key="client.id")
    referral_id: UUID = Field(foreign_key="referral.id")
    from_status: str | None = Field(default=None, max_length=16)
    to_status: str = Field(max_length=16)
    actor_type: str = Field(max_length=20)
    actor_id: UUID  # a staff user or a partner app, as actor_type says
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    reason: str = Field(sa_type=sa.Text)  # encrypted


class ReferralNote(SQLModel, table=True):
    """A note the receiving partner added to a referral (the body is a ciphertext under the
    client's key: partners write about the person they are helping)."""

    __tablename__ = "referral_note"
    __table_args__ = (
        sa.CheckConstraint(_known("author_type", ACTOR_TYPES), name="author_type_known"),
        sa.Index("ix_referral_note_referral_created", "referral_id", "created_at", "id"),
    )

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    org_id: UUID = Field(foreign_key="org.id", index=True)
    client_id: UUID = Field(foreign_key="client.id")
    referral_id: UUID = Field(foreign_key="referral.id")
    author_type: str = Field(max_length=20)
    author_id: UUID
    body: str = Field(sa_type=sa.Text)  # encrypted
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
