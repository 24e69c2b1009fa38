"""Incidents: recorded, read, revised, retracted — never overwritten.

An :class:`Incident` head row is written once; everything it says is in numbered
:class:`IncidentRevision` rows. An edit or a retraction adds the next revision (with a
required reason), so every earlier revision stays readable exactly as it was. Incidents
are reached through their client (``clients.service.readable_clients``): an incident of
a client outside the caller's reach is simply not found (404), and partner apps never
find one. Personal content is encrypted under the client's key; every read and write is
audited by incident id and revision number, never by content.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.orm import aliased
from sqlmodel import Session

from app.clients import service as clients
from app.clients.models import Client
from app.core import audit
from app.core.access import Actor, require
from app.core.errors import NotFound
from app.incidents.models import (
    CATEGORIES,
    Incident,
    IncidentRevision,
    IncidentRevisionCategory,
)

TABLE = "incident_revision"


# --- reach --------------------------------------------------------------------------------


def readable_incidents(actor: Actor) -> sa.Select[Any]:
    """Incidents of the clients the actor may read (nothing for partner apps)."""
    reachable = clients.readable_clients(actor).with_only_columns(Client.id)
    query = sa.select(Incident).where(Incident.org_id == actor.org_id,
                                      Incident.client_id.in_(reachable))
    if not actor.is_user:
        query = query.where(sa.false())
    return query


def get_incident(db: Session, actor: Actor, incident_id: UUID, *,
                 for_write: bool = False) -> Incident:
    """The incident if its client is within reach (404 otherwise, and always for partner
    apps); writing also needs ``clients:write`` (403)."""
    if not actor.is_user:
        raise NotFound("No such incident.")
    incident = db.scalar(readable_incidents(actor).where(Incident.id == incident_id))
    if incident is None:
        raise NotFound("No such incident.")
    if for_write:
        require(actor, "clients:write")
    return incident


def _is_current() -> sa.ColumnElement[bool]:
    later = aliased(IncidentRevision)
    return ~sa.exists().where(later.incident_id == IncidentRevision.incident_id,
                              later.revision > IncidentRevision.revision)


def current_revisions(client: Client) -> sa.Select[Any]:
    """The latest revision of each of a client's incidents."""
    return sa.select(IncidentRevision).where(IncidentRevision.org_id == client.org_id,
                                             IncidentRevision.client_id == client.id,
                                             _is_current())


def current_revision(db: Session, incident: Incident) -> IncidentRevision:
    """The incident's latest revision (what it says now, or that it was retracted)."""
    revision = db.scalar(sa.select(IncidentRevision)
                         .where(IncidentRevision.incident_id == incident.id)
                         .order_by(IncidentRevision.revision.desc()).limit(1))
    if revision is None:  # a head is always written with its first revision
        raise NotFound("No such incident.")
    return revision


def categories_of(db: Session, revision_ids: list[UUID]) -> dict[UUID, list[str]]:
    """Each revision's categories, in the fixed order of ``CATEGORIES``."""
    found: dict[UUID, list[str]] = {rid: [] for rid in revision_ids}
    if not revision_ids:
        return found
    rows = db.execute(sa.select(IncidentRevisionCategory.revision_id,
                                IncidentRevisionCategory.category)
                      .where(IncidentRevisionCategory.revision_id.in_(revision_ids)))
    for revision_id, category in rows:
        found[revision_id].append(category)
    for values in found.values():
        values.sort(key=CATEGORIES.index)
    return found


def _overlapping(query: sa.Select[Any], start: datetime | None,
                 end: datetime | None) -> sa.Select[Any]:
    # An incident belongs to a period when its occurrence window overlaps it.
    if start is not None:
        query = query.where(sa.func.coalesce(IncidentRevision.occurred_end,
                                             IncidentRevision.occurred_start) >= start)
    if end is not None:
        query = query.where(IncidentRevision.occurred_start < end)
    return query


# --- for other modules ----------------------------------------------------------------------


def timeline_entries(db: Session, actor: Actor, client: Client, *, start: datetime | None,
                     end: datetime | None) -> list[dict[str, Any]]:
    """A client's incidents (current revision each, retracted ones included and marked) whose
    occurrence overlaps [start, end), oldest first, as timeline entries without any
    encrypted content. The client must be within the actor's reach (404 otherwise); which
    incidents were shown is audited."""
    client = clients.get_client(db, actor, client.id)
    query = _overlapping(current_revisions(client), start, end).order_by(
        IncidentRevision.occurred_start, IncidentRevision.incident_id)
    revisions = list(db.scalars(query))
    categories = categories_of(db, [r.id for r in revisions])
    audit.append_many(db, action="incident.listed", org_id=actor.org_id,
                      actor_type=actor.kind, actor_id=str(actor.id), object_type="incident",
                      object_ids=[r.incident_id for r in revisions])
    return [{"kind": "incident", "id": r.incident_id, "at": r.occurred_start,
             "precision": r.occurred_precision, "categories": categories[r.id],
             "retracted": r.retracted, "revision": r.revision} for r in revisions]
