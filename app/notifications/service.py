"""Creating and reading staff notifications."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlmodel import Session

from app.core.access import Actor, require_user
from app.core.errors import NotFound
from app.db import utcnow
from app.notifications.models import Notification

# What each kind says; composed at read time from ids (no client details are stored).
MESSAGES = {
    "break_glass": "A colleague opened a client outside their caseload (emergency access).",
    # Reminders (app.reminders): what is due, and why a message to a client was held.
    "reminder_due": "A reminder is due.",
    "reminder_needs_person": "A message to a client needs a person: SMS and phone calls "
                             "are not sent automatically. Contact the client if it is safe.",
    "reminder_held_never_contact": "A message to a client was held: the client has not "
                                   "agreed to be contacted.",
    "reminder_held_channel_not_safe": "A message to a client was held: that channel is not "
                                      "safe by the client's preferences.",
    "reminder_held_outside_window": "A message to a client was held: it is not a safe time "
                                    "to contact them by that channel.",
    "reminder_held_no_address": "A message to a client was held: no email address is "
                                "recorded for them.",
    "reminder_held_email_unavailable": "A message to a client was held: email is not "
                                       "configured.",
    "reminder_held_client_closed": "A message to a client was held: the case is closed.",
    # Referrals (app.referrals): the recipient answered a referral you sent, or wrote.
    "referral_accepted": "A referral you sent was accepted by the receiving service.",
    "referral_declined": "A referral you sent was declined by the receiving service.",
    "referral_completed": "A referral you sent was completed by the receiving service.",
    "referral_closed": "A referral you sent was closed by the receiving service without "
                       "being completed.",
    "referral_note": "The receiving service added a note to a referral you sent.",
    # Evidence (app.evidence): the daily hash check found a file changed or unreadable.
    "evidence_integrity_failed": "A piece of evidence failed its integrity check: the stored "
                                 "file no longer matches its SHA-256 or cannot be read.",
}


def notify(db: Session, *, org_id: UUID, user_ids: list[UUID], kind: str,
           object_type: str | None = None, object_id: UUID | None = None,
           actor_id: UUID | None = None) -> list[Notification]:
    """Tell each of ``user_ids`` about ``kind`` concerning an object (by id)."""
    rows = [Notification(org_id=org_id, user_id=user_id, kind=kind, object_type=object_type,
                         object_id=object_id, actor_id=actor_id) for user_id in user_ids]
    db.add_all(rows)
    db.flush()
    return rows


_INSERT = Notification.__table__.insert()


def record_notification(db: Session, *, org_id: UUID, user_id: UUID, kind: str,
                        object_type: str | None = None, object_id: UUID | None = None) -> None:
    """:func:`notify` for one user in one INSERT, without loading an object: for paths that
    write many (a storm of due reminders), where the ORM's flush costs more than the row."""
    db.connection().execute(_INSERT, {
        "id": uuid4(), "org_id": org_id, "user_id": user_id, "kind": kind,
        "object_type": object_type, "object_id": object_id, "actor_id": None,
        "created_at": utcnow(), "read_at": None})


def readable_notifications(actor: Actor) -> sa.Select[Any]:
    """The caller's own notifications."""
    require_user(actor)
    return sa.select(Notification).where(Notification.user_id == actor.id,
                                         Notification.org_id == actor.org_id)


def mark_read(db: Session, actor: Actor, notification_id: UUID) -> Notification:
    notification = db.scalar(readable_notifications(actor)
                             .where(Notification.id == notification_id))
    if notification is None:
        raise NotFound("No such notification.")
    if notification.read_at is None:
        notification.read_at = utcnow()
        db.flush()
    return notification


def unread_count(db: Session, actor: Actor) -> int:
    """How many of the caller's notifications are unread (one COUNT)."""
    require_user(actor)
    return int(db.scalar(sa.select(sa.func.count()).select_from(Notification).where(
        Notification.user_id == actor.id, Notification.org_id == actor.org_id,
        Notification.read_at.is_(None))) or 0)


def mark_all_read(db: Session, actor: Actor, *, up_to: datetime) -> int:
    """Mark the caller's unread notifications created up to ``up_to`` (when the list was
    shown) read, so one that arrived since is not marked unseen; how many were."""
    require_user(actor)
    result = db.execute(sa.update(Notification).where(
        Notification.user_id == actor.id, Notification.org_id == actor.org_id,
        Notification.read_at.is_(None), Notification.created_at <= up_to)
        .values(read_at=utcnow()).execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)


def message_for(notification: Notification) -> str:
    return MESSAGES.get(notification.kind, notification.kind.replace("_", " "))
