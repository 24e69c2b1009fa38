"""Generated reminders follow their sources beyond a date edit: closing a client cancels
what its record generated (reopening brings back what is still ahead), purging cancels
everything about the client, an answered referral cancels its follow-up at once, and a
change of the org's rules reaches every reminder through a worker task."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from app.clients import service as clients
from app.db import committing, utcnow
from app.legal import service as legal
from app.referrals import service as referrals
from app.reminders import rules
from app.reminders import service as reminders
from app.reminders.models import Reminder
from app.reminders.schemas import ReminderCreate, ReminderRules
from app.risk.models import RiskAssessment
from app.safety_plans import service as plans
from app.service_log.models import ServiceContact
from tests.referrals.factories import make_directory, referral
from tests.reminders.conftest import Agency, actor_of, make_agency
from workers import tasks


def states(db: Session, client_id: UUID) -> dict[str, str]:
    """rule key (or 'manual') → state, for every reminder of a client."""
    return {row.rule_key or "manual": row.state for row in db.scalars(
        sa.select(Reminder).where(Reminder.client_id == client_id))}


def busy_client(db: Session, agency: Agency) -> dict[str, Any]:
    """A client with a hearing in 10 days, an order expiring in 60, a plan to review in 20
    and a reminder written by hand."""
    actor = actor_of(agency.advocate)
    hearing = legal.record_court_date(db, actor, agency.client_id, kind="custody",
                                      starts_at=utcnow() + timedelta(days=10),
                                      time_zone="Europe/London").hearing
    order = legal.record_order(db, actor, agency.client_id, order_type="final",
                               status="granted", issued_on=utcnow().date(),
                               expires_on=utcnow().date() + timedelta(days=60)).order
    plans.create_version(db, actor, agency.client_id, content={},
                         review_date=utcnow().date() + timedelta(days=20))
    reminders.create_reminder(db, actor, ReminderCreate(
        due_at=utcnow() + timedelta(days=2), note="Fictional: call the court clerk",
        client_id=agency.client_id))
    return {"hearing": hearing, "order": order}


GENERATED = {"court_date:7d", "court_date:1d", "order_expiry:30d", "order_expiry:7d",
             "plan_review"}


def test_closing_a_client_cancels_what_its_record_generated(db: Session,
                                                            agency: Agency) -> None:
    busy_client(db, agency)
    before = states(db, agency.client_id)
    assert set(before) == GENERATED | {"manual"}
    assert set(before.values()) == {"scheduled"}
    due_before = {row.rule_key: row.due_at for row in db.scalars(
        sa.select(Reminder).where(Reminder.client_id == agency.client_id))}

    clients.update_client(db, actor_of(agency.advocate), agency.client_id, personal={},
                          status="closed", closing_reason="Fictional: moved away")
    closed = states(db, agency.client_id)
    assert {key: closed[key] for key in GENERATED} == dict.fromkeys(GENERATED, "cancelled")
    assert closed["manual"] == "scheduled"  # the advocate's own reminder is theirs to end

    clients.update_client(db, actor_of(agency.advocate), agency.client_id, personal={},
                          status="active")
    reopened = states(db, agency.client_id)
    assert set(reopened.values()) == {"scheduled"}
    assert {row.rule_key: row.due_at for row in db.scalars(
        sa.select(Reminder).where(Reminder.client_id == agency.client_id))} == due_before


def test_an_edit_that_is_not_a_status_change_leaves_reminders_alone(db: Session,
                                                                    agency: Agency) -> None:
    busy_client(db, agency)
    clients.update_client(db, actor_of(agency.advocate), agency.client_id,
                          personal={"notes": "Fictional note"}, urgent=True)
    assert set(states(db, agency.client_id).values()) == {"scheduled"}


def test_purging_a_client_cancels_every_reminder_about_it(db: Session,
                                                          agency: Agency) -> None:
    busy_client(db, agency)
    clients.purge_client(db, actor_of(agency.supervisor), agency.client_id)
    assert set(states(db, agency.client_id).values()) == {"cancelled"}
    # A rule re-evaluated later finds nothing to bring back.
    for kind, source_id in rules.sources_of_client(db, agency.client_id):
        assert rules.sync_reminders_for(db, kind, source_id) == []


def test_a_new_court_date_of_a_closed_client_makes_no_reminder(db: Session,
                                                               agency: Agency) -> None:
    clients.update_client(db, actor_of(agency.advocate), agency.client_id, personal={},
                          status="closed", closing_reason="Fictional: case ended")
    legal.record_court_date(db, actor_of(agency.advocate), agency.client_id, kind="custody",
                            starts_at=utcnow() + timedelta(days=10), time_zone="UTC")
    assert states(db, agency.client_id) == {}


def test_a_sent_referral_gets_its_follow_up_and_an_answer_cancels_it(db: Session) -> None:
    d = make_directory(db)
    referral_id = referral(db, d, status="sent")
    wanted = rules.rules_for(db, d.org.id).referral_unanswered
    follow_up = db.scalars(sa.select(Reminder).where(Reminder.source_kind == "referral",
                                                     Reminder.source_id == referral_id)).one()
    sent_on = db.get(referrals.Referral, referral_id).sent_at.astimezone(
        rules.zone(rules.rules_for(db, d.org.id).time_zone)).date()
    assert follow_up.state == "scheduled" and follow_up.kind == "referral_unanswered"
    assert follow_up.local_date == sent_on + timedelta(days=wanted.days)
    assert follow_up.assignee_id == d.people["advocate"].id

    referrals.answer_referral(db, d.partner("shelter_app"), referral_id, "accept",
                              reason="Fictional: a bed is free")
    db.refresh(follow_up)
    assert follow_up.state == "cancelled"  # at once, not at the next hourly sweep


def test_a_withdrawn_referral_cancels_its_follow_up(db: Session) -> None:
    d = make_directory(db)
    referral_id = referral(db, d, status="sent")
    referrals.withdraw_referral(db, d.actor("advocate"), referral_id,
                                reason="Fictional: no longer needed")
    assert {row.state for row in db.scalars(sa.select(Reminder).where(
        Reminder.source_id == referral_id))} == {"cancelled"}


def test_high_risk_with_no_contact_since_is_due_and_a_contact_moves_it(
        db: Session, agency: Agency) -> None:
    actor = actor_of(agency.advocate)
    days = rules.rules_for(db, agency.org.id).high_risk_no_contact.days
    assessed = utcnow() - timedelta(days=days + 3)
    db.add(RiskAssessment(client_id=agency.client_id, org_id=agency.org.id,
                          instrument_id="example-safety-screen", instrument_version="1.0",
                          answers="", score="25", max_score="30", level="severe",
                          is_highest_level=True, assessed_by=actor.id, assessed_at=assessed))
    db.flush()
    [due] = rules.sync_reminders_for(db, "client", agency.client_id)
    assert due.kind == "high_risk_no_contact" and due.due_at <= utcnow()  # already overdue
    assert ("client", agency.client_id) in rules.sources_to_reevaluate(db)

    db.add(ServiceContact(client_id=agency.client_id, org_id=agency.org.id,
                          kind="hotline_call", occurred_on=utcnow().date(),
                          duration_minutes=10, staff_user_id=actor.id, recorded_by=actor.id))
    db.flush()
    [moved] = rules.sync_reminders_for(db, "client", agency.client_id)
    assert moved.id == due.id
    assert moved.local_date == utcnow().date() + timedelta(days=days)


# --- a change of rules, through the worker task ---------------------------------------------


def test_changing_the_rules_resyncs_every_reminder_of_the_org(db: Session, monkeypatch,
                                                              sent_tasks, bound_work) -> None:
    """The task runs here, its units of work inside the test's transaction (nothing is
    committed for real: other tests count rows)."""

    monkeypatch.setattr(tasks, "unit_of_work", bound_work)
    agency = make_agency(db)
    made = busy_client(db, agency)
    supervisor = actor_of(agency.supervisor)
    hearing_id = made["hearing"].id
    other = make_agency(db)  # another org: its reminders must not move
    other_hearing = legal.record_court_date(
        db, actor_of(other.advocate), other.client_id, kind="custody",
        starts_at=utcnow() + timedelta(days=10), time_zone="UTC").hearing.id

    current = reminders.read_rules(db, supervisor)
    changed = current.model_copy(deep=True)
    changed.court_date.lead_days = [3]
    changed.protective_order_expiry.enabled = False
    sent_tasks.clear()
    with committing(db):
        reminders.update_rules(db, supervisor,
                               ReminderRules.model_validate(changed.model_dump()))
    assert sent_tasks == [(reminders.RESYNC_TASK, [str(agency.org.id)])]

    # A rolled-back change sends nothing.
    sent_tasks.clear()
    with pytest.raises(RuntimeError), committing(db):
        reminders.update_rules(db, supervisor, current)
        raise RuntimeError("roll back")
    assert sent_tasks == []

    assert tasks.resync_org_reminders(str(agency.org.id)) > 0
    assert tasks.resync_org_reminders(str(agency.org.id)) > 0  # twice: no harm
    after = states(db, agency.client_id)
    hearing = {row.rule_key: row.state for row in db.scalars(sa.select(Reminder).where(
        Reminder.source_id == hearing_id))}
    untouched = {row.rule_key for row in db.scalars(sa.select(Reminder).where(
        Reminder.source_id == other_hearing, Reminder.state == "scheduled"))}
    assert hearing == {"court_date:7d": "cancelled", "court_date:1d": "cancelled",
                       "court_date:3d": "scheduled"}
    assert after["order_expiry:30d"] == after["order_expiry:7d"] == "cancelled"
    assert after["plan_review"] == after["manual"] == "scheduled"
    assert untouched == {"court_date:7d", "court_date:1d"}
