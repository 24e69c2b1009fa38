"""Releases of information: a client's consent to share named data with one recipient."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.db import UTCDateTime, utcnow


class ReleaseOfInformation(SQLModel, table=True):
    """One client's written, informed, time-limited consent to share some categories of
    data with one receiving agency: a partner app of the agency or a named outside agency.

    Personal text (recipient name, purpose, revocation reason) is a ciphertext under the
    client's key; ``recipient_index`` is a keyed blind index of the recipient name so the
    same agency is recognised however it is spelled in case or spacing."""

    __tablename__ = "release_of_information"
    __table_args__ = (
        sa.CheckConstraint("(recipient_app_id IS NULL) <> (recipient_name IS NULL)",
                           name="one_recipient"),
        sa.CheckConstraint("expires_at > effective_from", name="expires_after_effective"),
    )

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    org_id: UUID = Field(foreign_key="org.id", index=True)
    client_id: UUID = Field(foreign_key="client.id", index=True)
    recipient_app_id: UUID | None = Field(default=None, foreign_key="partner_app.id", index=True)
    recipient_name: str | None = Field(default=None, sa_type=sa.Text)  # encrypted
    recipient_index: str | None = Field(default=None, max_length=64, index=True)
    purpose: str = Field(sa_type=sa.Text)  # encrypted
    categories: list[Any] = Field(sa_type=sa.JSON)  # names from DATA_CATEGORIES, not data
    how_given: str = Field(max_length=24)
    given_at: datetime = Field(sa_type=UTCDateTime)
    effective_from: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    recorded_by: UUID = Field(foreign_key="staff_user.id")
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_by: UUID | None = Field(default=None, foreign_key="staff_user.id")
    revocation_reason: str | None = Field(default=None, sa_type=sa.Text)  # encrypted
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
