"""A report opens many incidents' histories at once: the same entries and the same audit
events as opening each alone, a fixed number of statements whatever their number, and
nothing at all when one of them is out of reach."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from app.core.access import Actor
from app.core.audit import AuditEvent
from app.core.errors import NotFound
from app.incidents import service
from app.incidents.models import IncidentRevision
from app.incidents.schemas import IncidentCreate
from tests.consents.factories import make_client
from tests.incidents.conftest import days_ago, incident_body
from tests.support.costs import counting


def actor_of(user: Any) -> Actor:
    return Actor(kind="user", id=user.id, org_id=user.org_id, role=user.role)


def recorded(db: Session, user: Any, client_id: str, count: int, *, revised: int = 0
             ) -> list[UUID]:
    actor, made = actor_of(user), []
    for n in range(count):
        body = incident_body(occurred={"precision": "exact", "start": days_ago(n + 1),
                                       "time_zone": "America/Chicago"})
        incident = service.record_incident(db, actor, UUID(client_id),
                                           IncidentCreate.model_validate(body)).incident
        if n < revised:
            service.revise_incident(db, actor, incident.id, IncidentCreate.model_validate(
                body | {"place": f"Fictional corrected place {n}"}),
                reason="Fictional correction", based_on_revision=1)
        made.append(incident.id)
    db.commit()
    return made


def one_by_one(db: Session, actor: Actor, incident_id: UUID) -> list[service.HistoryEntry]:
    rows = list(db.scalars(service.list_revisions(db, actor, incident_id)
                           .order_by(IncidentRevision.revision)))
    return service.open_history(db, actor, incident_id, rows)


def shape(entries: list[service.HistoryEntry]) -> list[tuple[Any, ...]]:
    return [(e.record.revision.id, e.record.state(), e.record.reason,
             [(c.path, c.kind, c.before, c.after) for c in e.changes]) for e in entries]


def reads(db: Session) -> list[tuple[str, dict[str, Any]]]:
    return [(str(e.object_id), e.details) for e in db.scalars(
        sa.select(AuditEvent).where(AuditEvent.action == "incident.revisions_read")
        .order_by(AuditEvent.seq))]


def test_the_same_entries_and_audit_events_as_one_by_one(agency, client_id,
                                                         db: Session) -> None:
    _, people, _ = agency
    made = recorded(db, people["advocate"], client_id, 4, revised=2)
    actor = actor_of(people["supervisor"])
    expected = [shape(one_by_one(db, actor, i)) for i in reversed(made)]
    events_one_by_one = reads(db)
    together = service.open_histories(db, actor, list(reversed(made)))
    assert [incident.id for incident, _ in together] == list(reversed(made))
    assert [shape(entries) for _, entries in together] == expected
    assert reads(db)[len(events_one_by_one):] == events_one_by_one
    assert [len(entries) for _, entries in together] == [1, 1, 2, 2]


def test_a_fixed_number_of_statements(agency, client_id, db: Session, engine,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    _, people, _ = agency
    made = recorded(db, people["advocate"], client_id, 12, revised=3)
    actor = actor_of(people["advocate"])
    costs = []
    for count in (3, 12):
        with counting(engine, db, monkeypatch) as cost:
            service.open_histories(db, actor, made[:count])
        costs.append(len(cost.texts))
    assert costs[0] == costs[1], costs


def test_one_incident_out_of_reach_opens_none(agency, client_id, db: Session) -> None:
    org, people, _ = agency
    mine = recorded(db, people["advocate"], client_id, 2)
    elsewhere = make_client(db, org, people["colleague"])  # not in the advocate's caseload
    theirs = recorded(db, people["colleague"], elsewhere, 1)
    before = reads(db)
    for asked in ([*mine, *theirs], [*mine, uuid4()]):
        with pytest.raises(NotFound):
            service.open_histories(db, actor_of(people["advocate"]), asked)
    with pytest.raises(NotFound):
        service.open_histories(db, actor_of(people["stranger"]), mine)
    assert reads(db) == before  # nothing was read, so nothing audited
