"""The tests' stand-in for a unit of work reads rows as they are now, as a new session
would, even while the test still holds an object an earlier unit loaded."""

from __future__ import annotations

import gc
import uuid

import sqlalchemy as sa
from sqlmodel import Session

from app.identity.models import Org


def test_a_later_unit_sees_a_plain_update_although_the_old_object_is_still_held(
        db: Session, bound_work) -> None:
    with bound_work() as work:
        held = Org(slug=f"fictional-{uuid.uuid4().hex[:8]}", name="Fictional Agency A")
        work.add(held)
    # The control: in the bare shared session, the object still held is handed back as it
    # was loaded, blind to a plain UPDATE of its row (what a report build's progress is).
    gc.disable()  # no collection may decide the outcome
    try:
        db.execute(sa.update(Org.__table__).where(Org.__table__.c.id == held.id)
                   .values(name="Fictional Agency B"))
        assert db.get(Org, held.id).name == "Fictional Agency A"
        with bound_work() as work:
            seen = work.get(Org, held.id)
            assert seen is held and seen.name == "Fictional Agency B"
    finally:
        gc.enable()


def test_what_the_test_left_pending_is_kept_when_a_unit_starts(db: Session,
                                                                 bound_work) -> None:
    org = Org(slug=f"fictional-{uuid.uuid4().hex[:8]}", name="Fictional Agency C")
    db.add(org)
    with bound_work() as work:
        work.flush()
    org.name = "Fictional Agency D"  # changed by the test, not yet flushed
    with bound_work() as work:
        assert work.get(Org, org.id).name == "Fictional Agency D"
    assert db.scalar(sa.select(Org.__table__.c.name).where(
        Org.__table__.c.id == org.id)) == "Fictional Agency D"
