"""Request and response shapes for reports (unknown fields are refused everywhere)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, Field, model_validator

from app.clients.schemas import Strict

Redaction = Literal[
    "client_address", "shelter_locations", "client_contact_details", "witness_contacts",
    "witness_names", "children_names", "respondent_identifiers",
]
RedactionProfile = Literal["none", "safe_location", "standard", "strict"]
PartySource = Literal["client_legal_name", "client_preferred_name", "other_party"]
Status = Literal["queued", "building", "done", "failed", "expired"]
MAX_CHOSEN = 1000


class Party(Strict):
    """A party named on the cover page: typed (``name``) or taken from the client's record
    (``from_record``), never both."""

    role: str = Field(min_length=1, max_length=100, description="e.g. Petitioner, Respondent")
    name: str | None = Field(default=None, min_length=1, max_length=200)
    from_record: PartySource | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Party:
        if (self.name is None) == (self.from_record is None):
            raise ValueError("give either name or from_record")
        return self


class Cover(Strict):
    """The cover page: the court, its case number, the parties, who prepared the report."""

    court: str = Field(default="", max_length=300)
    case_number: str = Field(default="", max_length=100)
    parties: list[Party] = Field(default_factory=list, max_length=10)
    prepared_by: str | None = Field(default=None, min_length=1, max_length=200, description=(
        "Default: the requesting staff member's name"))


class Period(Strict):
    """Dates, both included. An incident belongs to the period its occurrence overlaps."""

    start: date
    end: date

    @model_validator(mode="after")
    def _ordered(self) -> Period:
        if self.end < self.start:
            raise ValueError("the period ends before it starts")
        return self


class CourtSummaryCreate(Strict):
    """A court-ready incident summary of one client: the chosen incidents of the period,
    the chosen evidence of those incidents as exhibits, and what to hide."""

    kind: Literal["court_summary"]
    client_id: UUID
    period: Period
    incident_ids: list[UUID] = Field(min_length=1, max_length=MAX_CHOSEN)
    evidence_ids: list[UUID] = Field(default_factory=list, max_length=MAX_CHOSEN)
    redaction_profile: RedactionProfile = "standard"
    also_hide: list[Redaction] = Field(default_factory=list, max_length=10)
    cover: Cover = Field(default_factory=Cover)
    include_original_files: bool = Field(default=True, description=(
        "Put the original evidence files in the bundle (as uploaded, metadata included)"))

    @model_validator(mode="after")
    def _no_repeats(self) -> CourtSummaryCreate:
        for name in ("incident_ids", "evidence_ids"):
            values = getattr(self, name)
            if len(set(values)) != len(values):
                raise ValueError(f"{name}: an id is listed twice")
        return self


class FunderAggregateCreate(Strict):
    """De-identified counts of the requester's agency over a period, for funders
    (supervisors and admins only); small counts are suppressed."""

    kind: Literal["funder_aggregate"]
    period: Period
    grouping: Literal["none", "month", "quarter"] = Field(default="none", description=(
        "Rows of the report: the whole period, or each month or quarter in it"))

    @model_validator(mode="after")
    def _not_too_long(self) -> FunderAggregateCreate:
        if (self.period.end - self.period.start).days > 366 * 10:
            raise ValueError("the period is at most ten years")
        return self


ReportCreate = Annotated[CourtSummaryCreate | FunderAggregateCreate,
                         Field(discriminator="kind")]


class ReportOut(BaseModel):
    """A report's progress, and once done, what was made and until when it can be had."""

    id: UUID
    kind: str
    client_id: UUID | None
    status: Status
    percent: int
    step: str
    failure_code: str | None = Field(description="Why it failed (a machine code)")
    failure_reason: str | None = Field(description="Why it failed, for people; no personal "
                                                   "data")
    attempts: int
    requested_at: datetime
    requested_by: UUID
    started_at: datetime | None
    finished_at: datetime | None
    expires_at: datetime | None
    pdf_sha256: str | None
    bundle_sha256: str | None
    manifest_sha256: str | None
    downloads: dict[str, str] = Field(default_factory=dict, description=(
        "Where each part can be downloaded, while the report is done"))


class ReportKey(BaseModel):
    key_id: UUID
    algorithm: Literal["Ed25519"]
    public_key_pem: str
    created_at: datetime
    current: bool


class ReportKeys(BaseModel):
    """An agency's public keys for report manifests, current first."""

    org_id: UUID
    keys: list[ReportKey]


class Check(BaseModel):
    check: str
    ok: bool
    detail: str


class ExhibitCheck(BaseModel):
    number: int
    evidence_id: UUID
    sha256: str
    in_file: Literal["match", "mismatch", "missing", "not_included"] = Field(description=(
        "The copy in the uploaded bundle: match, mismatch, missing, or not_included (the "
        "upload carries no exhibit files)"))
    stored: Literal["intact", "mismatch", "unreadable", "missing", "not_checked"] = Field(
        description="The evidence advocase keeps: does it still hash to the manifest's value")


class Verification(BaseModel):
    """Is the file exactly what advocase produced, and does each exhibit still match."""

    file_kind: Literal["pdf", "manifest", "bundle", "unknown"]
    ok: bool = Field(description="Authentic, and no exhibit fails")
    authentic: bool = Field(description="Exactly what advocase produced, signature valid")
    exhibits_match: bool | None = Field(description="Every exhibit matches (null when "
                                                    "there is none)")
    report_id: UUID | None
    generated_at: datetime | None
    checks: list[Check]
    exhibits: list[ExhibitCheck]
