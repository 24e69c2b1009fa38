"""Risk assessments of clients, and instruments an agency added itself."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.db import UTCDateTime, utcnow


class AgencyInstrument(SQLModel, table=True):
    """A licensed instrument an agency added (its definition text, validated on load)."""

    __tablename__ = "risk_instrument"
    __table_args__ = (sa.UniqueConstraint("org_id", "instrument_id", "version"),)

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    org_id: UUID = Field(foreign_key="org.id", index=True)
    instrument_id: str = Field(max_length=64)
    version: str = Field(max_length=32)
    definition: str = Field(sa_type=sa.Text)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    created_by: UUID | None = Field(default=None, foreign_key="staff_user.id")


class RiskAssessment(SQLModel, table=True):
    """One scored assessment: the instrument and version used, the answers (encrypted),
    the score and the level — kept so a referral can carry them and nobody re-types."""

    __tablename__ = "risk_assessment"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    client_id: UUID = Field(foreign_key="client.id", index=True)
    org_id: UUID = Field(foreign_key="org.id", index=True)
    instrument_id: str = Field(max_length=64)
    instrument_version: str = Field(max_length=32)
    answers: str = Field(sa_type=sa.Text)  # encrypted JSON
    score: str = Field(max_length=32)  # exact decimal as text
    max_score: str = Field(max_length=32)
    level: str = Field(max_length=64)
    is_highest_level: bool = Field(default=False)
    complete: bool = Field(default=True)
    assessed_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    assessed_by: UUID = Field(foreign_key="staff_user.id")
