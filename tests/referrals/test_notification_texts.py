"""Every kind of notification the referrals and evidence services send reads as a sentence
in the dashboard and the API (``message_for``), never as the kind's own name."""

from __future__ import annotations

from uuid import uuid4

import pytest

from app.evidence.service import INTEGRITY_ALERT
from app.notifications import service as notifications
from app.notifications.models import Notification
from app.referrals.service import RECIPIENT, TRANSITIONS

# The moves a recipient makes (each notifies the sending advocate) and the partner's note.
REFERRAL_KINDS = sorted({f"referral_{to}" for moves in TRANSITIONS.values()
                         for to, side in moves.items() if side == RECIPIENT} | {"referral_note"})


def test_the_referral_kinds_are_the_recipients_moves() -> None:
    assert REFERRAL_KINDS == ["referral_accepted", "referral_closed", "referral_completed",
                              "referral_declined", "referral_note"]


@pytest.mark.parametrize("kind", [*REFERRAL_KINDS, INTEGRITY_ALERT])
def test_each_kind_has_a_human_text(kind: str) -> None:
    text = notifications.message_for(Notification(org_id=uuid4(), user_id=uuid4(), kind=kind))
    assert text == notifications.MESSAGES[kind]
    assert text.endswith(".") and "_" not in text and len(text.split()) >= 6
