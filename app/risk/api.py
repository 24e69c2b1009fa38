"""Risk instruments and a client's risk assessments."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from app.core.pagination import Page, PageParamsDep, SortKey, paginate
from app.db import SessionDep, UnitOfWorkRoute
from app.identity.deps import CurrentActor
from app.risk import instruments as engine
from app.risk import service
from app.risk.models import RiskAssessment

router = APIRouter(prefix="/api/v1", tags=["risk"], route_class=UnitOfWorkRoute)
PROBLEM = {"content": {"application/problem+json": {}}}


class InstrumentSummary(BaseModel):
    id: str
    version: str
    name: str
    licence: str
    language: str
    items: int
    levels: list[str]
    highest_level: str


class InstrumentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    definition: str = Field(min_length=1, max_length=256_000,
                            description="The instrument as YAML or JSON text")


class AssessmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    instrument_id: str = Field(max_length=64)
    instrument_version: str | None = Field(default=None, max_length=32,
                                           description="Default: the latest version")
    answers: dict[str, Any]
    partial: bool = Field(default=False, description="Score what is answered so far")


class AssessmentOut(BaseModel):
    id: UUID
    client_id: UUID
    instrument_id: str
    instrument_version: str
    score: str
    max_score: str
    level: str
    is_highest_level: bool
    complete: bool
    assessed_at: datetime
    assessed_by: UUID
    answers: dict[str, Any] | None = None


def _summary(instrument: engine.Instrument) -> InstrumentSummary:
    return InstrumentSummary(
        id=instrument.id, version=instrument.version, name=instrument.name,
        licence=instrument.licence, language=instrument.language,
        items=len(instrument.items), levels=[level.name for level in instrument.levels],
        highest_level=instrument.highest_level.name)


def _out(row: RiskAssessment, answers: dict[str, Any] | None = None) -> AssessmentOut:
    return AssessmentOut(**row.model_dump(exclude={"answers", "org_id"}), answers=answers)


@router.get("/risk-instruments", response_model=list[InstrumentSummary])
def risk_instruments(actor: CurrentActor, db: SessionDep) -> list[InstrumentSummary]:
    """Instruments available to your agency: the built-in example and your own."""
    return [_summary(i) for i in service.list_instruments(db, actor)]


@router.post("/risk-instruments", response_model=InstrumentSummary, status_code=201,
             responses={409: PROBLEM, 422: PROBLEM})
def add_risk_instrument(body: InstrumentIn, actor: CurrentActor,
                        db: SessionDep) -> InstrumentSummary:
    """Add a licensed instrument (admins and supervisors); rejected with a message per
    problem when the definition is malformed."""
    return _summary(service.add_instrument(db, actor, body.definition))


@router.get("/risk-instruments/{instrument_id}", responses={404: PROBLEM})
def risk_instrument(instrument_id: str, actor: CurrentActor, db: SessionDep,
                    version: str | None = None) -> dict[str, Any]:
    """One instrument's full definition (items, options, levels), to build a form."""
    instrument = service.get_instrument(db, actor, instrument_id, version)
    return instrument.model_dump(mode="json")


@router.post("/clients/{client_id}/risk-assessments", response_model=AssessmentOut,
             status_code=201, responses={404: PROBLEM, 422: PROBLEM})
def record_assessment(client_id: UUID, body: AssessmentIn, actor: CurrentActor,
                      db: SessionDep) -> AssessmentOut:
    """Score and keep an assessment; the instrument's highest level marks the client urgent."""
    row, answers = service.record_assessment(
        db, actor, client_id, instrument_id=body.instrument_id,
        version=body.instrument_version, answers=body.answers, partial=body.partial)
    return _out(row, answers)


@router.get("/clients/{client_id}/risk-assessments", response_model=Page[AssessmentOut],
            responses={404: PROBLEM})
def assessment_history(client_id: UUID, actor: CurrentActor, db: SessionDep,
                       page: PageParamsDep) -> dict[str, Any]:
    """A client's assessments, newest first, with their answers."""
    rows, next_cursor = paginate(
        db, service.assessment_history(db, actor, client_id), listing="risk-assessments",
        keys=[SortKey(RiskAssessment.assessed_at, descending=True), SortKey(RiskAssessment.id)],
        params=page)
    return {"items": [_out(row, service.read_answers(db, row)) for row in rows],
            "next_cursor": next_cursor}
