"""Risk assessments: scoring a client's answers with a data-defined instrument.

The instruments are data (``app.risk.instruments``): the built-in example and any the
agency added. An assessment keeps instrument id and version, the answers (encrypted),
score and level; reaching an instrument's highest level marks the client urgent.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlmodel import Session

from app.clients.service import get_client
from app.core import audit, keys
from app.core.access import Actor, require, require_client_staff, require_user
from app.core.errors import Conflict, NotFound
from app.risk import instruments as engine
from app.risk.models import AgencyInstrument, RiskAssessment


def registry(db: Session, org_id: UUID) -> engine.InstrumentRegistry:
    """Built-in instruments plus the agency's own."""
    found = engine.builtin_registry()
    for row in db.scalars(sa.select(AgencyInstrument).where(AgencyInstrument.org_id == org_id)):
        found.add(engine.load_instrument(row.definition))
    return found


def list_instruments(db: Session, actor: Actor) -> list[engine.Instrument]:
    require_user(actor)
    return sorted(registry(db, actor.org_id), key=lambda i: (i.id, i.version))


def get_instrument(db: Session, actor: Actor, instrument_id: str,
                   version: str | None = None) -> engine.Instrument:
    require_user(actor)
    try:
        return registry(db, actor.org_id).get(instrument_id, version)
    except NotFound as exc:
        raise NotFound("No such instrument.") from exc


def add_instrument(db: Session, actor: Actor, definition: str) -> engine.Instrument:
    """An agency adds a licensed instrument (validated; a clear message per problem)."""
    require(actor, "instruments:manage")
    try:
        instrument = engine.load_instrument(definition)
    except engine.InstrumentError as exc:
        raise exc.to_invalid() from exc
    if instrument.key in registry(db, actor.org_id):
        raise Conflict("That instrument and version exist already; give it a new version.")
    row = AgencyInstrument(org_id=actor.org_id, instrument_id=instrument.id,
                           version=instrument.version, definition=definition,
                           created_by=actor.id)
    db.add(row)
    db.flush()
    audit.record(db, actor, "risk_instrument.added", row,
                 details={"instrument": instrument.id, "version": instrument.version})
    return instrument


def _answers_place(row: RiskAssessment) -> dict[str, Any]:
    return {"org_id": row.org_id, "client_id": row.client_id, "table": "risk_assessment",
            "column": "answers", "row_id": str(row.id)}


def record_assessment(db: Session, actor: Actor, client_id: UUID, *, instrument_id: str,
                      version: str | None, answers: dict[str, Any],
                      partial: bool = False) -> tuple[RiskAssessment, dict[str, Any]]:
    """Score and keep an assessment; the highest level marks the client urgent."""
    require_client_staff(actor)
    client = get_client(db, actor, client_id, for_write=True)
    instrument = get_instrument(db, actor, instrument_id, version)
    try:
        result = engine.score(instrument, answers, partial=partial)
    except engine.InstrumentError as exc:
        raise exc.to_invalid(root_field="answers") from exc
    row = RiskAssessment(client_id=client.id, org_id=client.org_id,
                         instrument_id=instrument.id, instrument_version=instrument.version,
                         answers="", score=str(result.score), max_score=str(result.max_score),
                         level=result.level, is_highest_level=result.is_highest_level,
                         complete=result.complete, assessed_by=actor.id)
    db.add(row)
    db.flush()
    stored = engine_answers(result)
    row.answers = keys.encrypt_json(db, value=stored, **_answers_place(row)) or ""
    if result.is_highest_level and not client.urgent:
        client.urgent = True
    db.flush()
    audit.record(db, actor, "risk_assessment.recorded", row,
                 details={"level": result.level, "urgent": result.is_highest_level})
    return row, stored


def engine_answers(result: engine.Assessment) -> dict[str, Any]:
    """Answers as plain JSON values (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in result.answers.items()}




def assessment_history(db: Session, actor: Actor, client_id: UUID) -> sa.Select[Any]:
    require_client_staff(actor)
    client = get_client(db, actor, client_id)
    audit.record(db, actor, "risk_assessment.history_read", client)
    return sa.select(RiskAssessment).where(RiskAssessment.client_id == client.id)


def read_answers(db: Session, row: RiskAssessment) -> dict[str, Any]:
    try:
        return keys.decrypt_json(db, ciphertext=row.answers, **_answers_place(row)) or {}
    except keys.KeyDestroyed as exc:
        raise NotFound("No such client.") from exc
