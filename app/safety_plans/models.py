"""Safety-plan versions (append-only, one row per edit, the plan encrypted as a whole) and
each agency's starting template."""

from __future__ import annotations

from datetime import date, datetime
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.db import UTCDateTime, utcnow


class SafetyPlanVersion(SQLModel, table=True):
    """One version of a client's safety plan. A change is a new row with the next version
    number; no row is ever updated or deleted, so every earlier plan stays readable.

    ``content`` (the whole plan, JSON) and ``change_note`` are ciphertexts under the
    client's key, bound to this table, column, row and client. Only what reminders need
    (``review_date``) and who/when are plain."""

    __tablename__ = "safety_plan_version"
    __table_args__ = (
        sa.UniqueConstraint("client_id", "version", name="uq_safety_plan_version_client_version"),
        sa.CheckConstraint("version >= 1", name="version_positive"),
    )

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    org_id: UUID = Field(foreign_key="org.id", index=True)
    client_id: UUID = Field(foreign_key="client.id", index=True)
    version: int
    content: str = Field(sa_type=sa.Text)  # encrypted JSON
    review_date: date = Field(index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    created_by: UUID = Field(foreign_key="staff_user.id")
    change_note: str | None = Field(default=None, sa_type=sa.Text)  # encrypted


class SafetyPlanTemplate(SQLModel, table=True):
    """An agency's own starting checklist for new plans, one row per org. Without a row
    the built-in defaults apply. Item names are generic checklist wording, not personal
    data, so they are stored in clear."""

    __tablename__ = "safety_plan_template"

    org_id: UUID = Field(foreign_key="org.id", primary_key=True)
    go_bag: list[str] = Field(sa_type=sa.JSON)
    technology_safety: list[str] = Field(sa_type=sa.JSON)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_by: UUID = Field(foreign_key="staff_user.id")
