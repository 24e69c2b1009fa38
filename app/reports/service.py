"""Reports: requesting one, its progress, downloading it, and the life of a build.

Reach: a report of a client is readable by exactly the staff who can read that client
(``clients.service.readable_clients``); an agency's funder aggregate (no client) by its
supervisors and admins; anyone else finds nothing (404). Requests and
downloads are audited (ids only); polling the status is not, so a progress bar does not
fill the audit log.

A build is driven by state in the database, never by the broker alone. A worker claims a
report (``queued``, or ``building`` with a lease that ran out) with a conditional UPDATE —
after ``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL — taking a claim token and a lease
it renews while it works; every progress write and the final ``done`` carry that token, so
a worker that lost its claim changes nothing. A worker killed mid-build leaves the report
``building`` with a lease that runs out: the sweep enqueues it again and the next attempt
starts over (up to ``MAX_ATTEMPTS``). Files are published before the row that names them
commits; a failed commit deletes them, and the storage sweep removes what a killed worker
left behind.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import sqlalchemy as sa
import structlog
import tink
from sqlmodel import Session

from app.clients import service as clients
from app.clients.models import Client
from app.core import audit, keys
from app.core.access import Actor, require_client_staff, require_user
from app.core.deferred import enqueue_after_commit
from app.core.errors import DomainError, Forbidden, NotFound
from app.core.storage import Storage, decrypting_reader
from app.db import utcnow
from app.identity.models import Org, StaffUser
from app.reports import court_summary, signing
from app.reports.models import Report, ReportSigningKey
from app.reports.schemas import CourtSummaryCreate, FunderAggregateCreate

log = structlog.get_logger("app.reports")

BUILD_TASK = "reports.build"  # same name as workers.celery_app.REPORT_BUILD_TASK
TABLE = "report"
KEYSET_PURPOSE = "report"
STORAGE_PREFIX = "reports/"
LEASE = timedelta(seconds=90)
MAX_ATTEMPTS = 3
# A queued report not claimed within this long is enqueued again by the sweep (its
# message may have been lost, or never sent).
REQUEUE_AFTER = timedelta(seconds=60)
ORPHAN_GRACE = timedelta(hours=24)
PARTS = ("pdf", "bundle", "manifest", "csv")
# Who may ask for and read an agency's funder aggregate (counts of the whole agency).
AGGREGATE_ROLES = frozenset({"supervisor", "admin"})
# The second stored file of each kind (kept in the bundle_* columns).
SECOND_PART = {"court_summary": "bundle", "funder_aggregate": "csv"}


class Gone(DomainError):
    status, kind, title = 410, "report-expired", "Report expired"


class NotReady(DomainError):
    status, kind, title = 409, "report-not-ready", "Report not ready"


# --- reach ------------------------------------------------------------------------------------


def readable_reports(actor: Actor) -> sa.Select[Any]:
    """Reports of the clients the actor may read, and for supervisors and admins their
    agency's funder aggregates (nothing for partner apps)."""
    reachable = clients.readable_clients(actor).with_only_columns(Client.id)
    of_clients = Report.client_id.in_(reachable)
    if actor.role in AGGREGATE_ROLES:
        of_clients = sa.or_(of_clients, Report.kind == "funder_aggregate")
    query = sa.select(Report).where(Report.org_id == actor.org_id, of_clients)
    if not actor.is_user:
        query = query.where(sa.false())
    return query


def get_report(db: Session, actor: Actor, report_id: UUID) -> Report:
    """The report if its client is within reach, or an aggregate of the agency for its
    supervisors and admins (404 otherwise)."""
    require_user(actor)
    if actor.role not in AGGREGATE_ROLES:
        require_client_staff(actor)
    report = db.scalar(readable_reports(actor).where(Report.id == report_id))
    if report is None:
        raise NotFound("No such report.")
    return report


# --- requesting ---------------------------------------------------------------------------


def _place(report: Report) -> dict[str, Any]:
    assert report.client_id is not None
    return {"org_id": report.org_id, "client_id": report.client_id, "table": TABLE,
            "column": "parameters", "row_id": str(report.id)}


def open_parameters(db: Session, report: Report) -> dict[str, Any]:
    """What the request asked for (raises ``keys.KeyDestroyed`` once the client is erased).
    A funder aggregate's parameters (a period and a grouping) are plain JSON."""
    if report.client_id is None:
        plain = json.loads(report.parameters)
        assert isinstance(plain, dict)
        return plain
    value = keys.decrypt_json(db, ciphertext=report.parameters, **_place(report))
    assert isinstance(value, dict)
    return value


def request_court_summary(db: Session, actor: Actor, data: CourtSummaryCreate) -> Report:
    """Queue a court summary of a client within reach (staff who may work on the client);
    a worker builds it once this unit of work commits (``reports.build``, the id only)."""
    require_client_staff(actor)
    # Making a report is staff's work on the case: an admin's emergency access reads only.
    client = clients.get_client(db, actor, data.client_id, for_write=True)
    court_summary.check_request(db, actor, data)
    report = Report(id=uuid4(), org_id=client.org_id, client_id=client.id,
                    kind="court_summary", parameters="", requested_by=actor.id)
    report.parameters = keys.encrypt_json(db, value=data.model_dump(mode="json"),
                                          **_place(report)) or ""
    db.add(report)
    db.flush()
    audit.record(db, actor, "report.requested", report, details={
        "kind": report.kind, "client_id": str(client.id),
        "incidents": len(data.incident_ids), "exhibits": len(data.evidence_ids),
        "redaction_profile": data.redaction_profile})
    enqueue_after_commit(db, BUILD_TASK, report.id)
    return report


def require_aggregate_role(actor: Actor) -> None:
    """Funder aggregates count the whole agency: supervisors and admins only (403)."""
    require_user(actor)
    if actor.role not in AGGREGATE_ROLES:
        raise Forbidden("Only supervisors and admins can ask for the agency's aggregate "
                        "report.", audit={"action": "reports:aggregate"})


def request_funder_aggregate(db: Session, actor: Actor,
                             data: FunderAggregateCreate) -> Report:
    """Queue a de-identified aggregate of the requester's own agency (supervisors and
    admins); a worker builds it once this unit of work commits."""
    require_aggregate_role(actor)
    report = Report(id=uuid4(), org_id=actor.org_id, client_id=None, kind="funder_aggregate",
                    parameters=json.dumps(data.model_dump(mode="json"), sort_keys=True),
                    requested_by=actor.id)
    db.add(report)
    db.flush()
    audit.record(db, actor, "report.requested", report, details={
        "kind": report.kind, "start": data.period.start.isoformat(),
        "end": data.period.end.isoformat(), "grouping": data.grouping})
    enqueue_after_commit(db, BUILD_TASK, report.id)
    return report


def downloads_of(report: Report) -> dict[str, str]:
    if report.status != "done":
        return {}
    base = f"/api/v1/reports/{report.id}/download"
    if report.kind == "funder_aggregate":
        return {"pdf": f"{base}?part=pdf", "csv": f"{base}?part=csv",
                "manifest": f"{base}?part=manifest"}
    return {"pdf": f"{base}?part=pdf", "bundle": f"{base}?part=bundle",
            "manifest": f"{base}?part=manifest"}


# --- downloading ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Download:
    part: str
    media_type: str
    filename: str
    size: int
    sha256: str
    chunks: Any  # an iterator of bytes


def _file_reader(db: Session, report: Report, storage: Storage, part: str) -> Any:
    assert report.sealed_keyset is not None
    key = report.pdf_key if part == "pdf" else report.bundle_key
    assert key is not None
    if report.client_id is None:
        keyset = keys.open_keyset_for_org(db, org_id=report.org_id, purpose=KEYSET_PURPOSE,
                                          bound_to=report.id, sealed=report.sealed_keyset)
    else:
        keyset = keys.open_keyset_for_client(
            db, org_id=report.org_id, client_id=report.client_id, purpose=KEYSET_PURPOSE,
            bound_to=report.id, sealed=report.sealed_keyset)
    return decrypting_reader(storage, key, keyset, object_associated_data(report.id, part))


def _chunks(reader: Any) -> Any:
    try:
        while chunk := reader.read(1024 * 1024):
            yield chunk
    except tink.TinkError as exc:
        raise keys.DecryptionError("a stored report does not open: altered or moved") from exc
    finally:
        reader.close()


def open_download(db: Session, actor: Actor, report_id: UUID, part: str, *,
                  storage: Storage) -> Download:
    """A built report's PDF, bundle or manifest, decrypted as it streams; audited every
    time. 409 while it is not built, 410 once it has expired."""
    report = get_report(db, actor, report_id)
    now = utcnow()
    if report.status == "expired" or (report.status == "done" and report.expires_at is not None
                                      and report.expires_at <= now):
        raise Gone("This report has expired and its files were deleted; request it again.")
    if report.status != "done":
        raise NotReady("The report is not built yet (or its build failed).")
    if part != "manifest" and part not in ("pdf", SECOND_PART.get(report.kind)):
        raise NotFound(f"A report of this kind has no {part} part.")
    audit.record(db, actor, "report.downloaded", report,
                 details={"part": part, "client_id": str(report.client_id)}
                 if report.client_id is not None else {"part": part, "kind": report.kind})
    stamp = f"{report.id}"
    if part == "manifest":
        assert report.manifest is not None and report.manifest_sha256 is not None
        body = report.manifest.encode()
        return Download(part, "application/json", f"report-{stamp}-manifest.json", len(body),
                        report.manifest_sha256, iter([body]))
    try:
        reader = _file_reader(db, report, storage, part)
    except keys.KeyDestroyed as exc:
        raise NotFound("No such report.") from exc
    except (OSError, tink.TinkError) as exc:
        raise keys.DecryptionError("a stored report is missing or does not open") from exc
    chunks = _chunks(reader)
    first = next(chunks, b"")  # a file that does not open fails here, not mid-download
    if part == "pdf":
        assert report.pdf_size is not None and report.pdf_sha256 is not None
        return Download(part, "application/pdf", f"report-{stamp}.pdf", report.pdf_size,
                        report.pdf_sha256, _prepend(first, chunks))
    assert report.bundle_size is not None and report.bundle_sha256 is not None
    if part == "csv":
        return Download(part, "text/csv; charset=utf-8", f"report-{stamp}.csv",
                        report.bundle_size, report.bundle_sha256, _prepend(first, chunks))
    return Download(part, "application/zip", f"report-{stamp}.zip", report.bundle_size,
                    report.bundle_sha256, _prepend(first, chunks))


def _prepend(first: bytes, rest: Any) -> Any:
    if first:
        yield first
    yield from rest


# --- storage ------------------------------------------------------------------------------


def object_key(claim: Claim, part: str) -> str:
    """Where one attempt stores one part: ids only, a new name for every attempt (stored
    objects are never replaced)."""
    extension = {"pdf": "pdf", "csv": "csv"}.get(part, "zip")
    return (f"reports/{claim.org_id}/{claim.report_id.hex[:2]}/{claim.report_id}/"
            f"attempt-{claim.attempt}.{extension}")


def object_associated_data(report_id: UUID, part: str) -> bytes:
    """The associated data of a stored report file: the report id and which part it is."""
    return f"advocase-report:{report_id}:{part}".encode("ascii")


# --- building: claims, progress, the end ---------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """A build this worker holds until its lease runs out (renewed while it works)."""

    report_id: UUID
    org_id: UUID
    client_id: UUID | None  # None for an agency's funder aggregate
    requested_by: UUID
    token: str
    attempt: int
    claimed_at: datetime
    kind: str = "court_summary"


def _due(now: datetime) -> sa.ColumnElement[bool]:
    return sa.or_(Report.status == "queued",
                  sa.and_(Report.status == "building", Report.lease_expires_at < now))


def claim_report(db: Session, report_id: UUID, *, now: datetime | None = None) -> Claim | None:
    """Take a queued report, or one whose builder's lease ran out, for one attempt: None if
    another worker holds it, it is finished, or it has had its last attempt (then it is
    marked failed). The caller commits before building."""
    now = now or utcnow()
    table = Report.__table__
    query = sa.select(Report.status, Report.attempts, Report.org_id, Report.client_id,
                      Report.requested_by, Report.kind).where(Report.id == report_id, _due(now))
    if db.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=table)
    seen = db.execute(query).first()
    if seen is None or (seen.client_id is None and seen.kind != "funder_aggregate"):
        return None
    same = (Report.id == report_id, Report.status == seen.status,
            Report.attempts == seen.attempts)
    if seen.attempts >= MAX_ATTEMPTS:
        db.execute(sa.update(table).where(*same).values(
            status="failed", step="failed", finished_at=now, claim_token=None,
            lease_expires_at=None, failure_code="worker_lost",
            failure_detail=f"The build was interrupted {seen.attempts} times (a worker "
                           "stopped while building it). Request the report again."))
        audit.append(db, action="report.failed", outcome="failure", org_id=seen.org_id,
                     object_type=TABLE, object_id=report_id,
                     details={"code": "worker_lost", "attempts": seen.attempts})
        return None
    token = secrets.token_urlsafe(24)
    claimed = db.execute(sa.update(table).where(*same).values(
        status="building", claim_token=token, lease_expires_at=now + LEASE,
        attempts=seen.attempts + 1, percent=0, step="starting", started_at=now,
        failure_code=None, failure_detail=None).returning(table.c.id)).first()
    if claimed is None:
        return None
    return Claim(report_id, seen.org_id, seen.client_id, seen.requested_by, token,
                 seen.attempts + 1, now, seen.kind)


def _held(claim: Claim) -> tuple[sa.ColumnElement[bool], ...]:
    return (Report.id == claim.report_id, Report.status == "building",
            Report.claim_token == claim.token)


def record_progress(db: Session, claim: Claim, percent: int, step: str) -> bool:
    """Record how far the build is (and renew the lease); False when the claim was lost."""
    done = db.execute(sa.update(Report.__table__).where(*_held(claim)).values(
        percent=max(0, min(99, percent)), step=step, lease_expires_at=utcnow() + LEASE)
        .returning(Report.__table__.c.id)).first()
    return done is not None


def renew_lease(db: Session, claim: Claim) -> bool:
    """Keep the claim alive while one long step runs; False when it was lost."""
    done = db.execute(sa.update(Report.__table__).where(*_held(claim)).values(
        lease_expires_at=utcnow() + LEASE).returning(Report.__table__.c.id)).first()
    return done is not None


def requester(db: Session, claim: Claim) -> Actor | None:
    """The staff member who asked for the report, as they are now (None if inactive)."""
    user = db.get(StaffUser, claim.requested_by)
    if user is None or not user.is_active or user.org_id != claim.org_id:
        return None
    return Actor(kind="user", id=user.id, org_id=user.org_id, role=user.role)


@dataclass
class BuiltReport:
    """What a finished build stored, for :func:`finish_report`."""

    pdf_key: str
    bundle_key: str
    sealed_keyset: bytes
    pdf_sha256: str
    pdf_size: int
    bundle_sha256: str
    bundle_size: int
    manifest: str
    manifest_sha256: str
    signature: str
    signing_key_id: UUID
    evidence_ids: list[UUID]


def finish_report(db: Session, claim: Claim, actor: Actor, built: BuiltReport, *,
                  ttl: timedelta) -> bool:
    """Mark the report done (100 %) if this worker still holds it, with what it stored; each
    exhibit's export goes into its chain of custody. False when the claim was lost."""
    from app.evidence import service as evidence_service

    now = utcnow()
    done = db.execute(sa.update(Report.__table__).where(*_held(claim)).values(
        status="done", percent=100, step="done", finished_at=now, expires_at=now + ttl,
        claim_token=None, lease_expires_at=None, pdf_key=built.pdf_key,
        bundle_key=built.bundle_key, sealed_keyset=built.sealed_keyset,
        pdf_sha256=built.pdf_sha256, pdf_size=built.pdf_size,
        bundle_sha256=built.bundle_sha256, bundle_size=built.bundle_size,
        manifest=built.manifest, manifest_sha256=built.manifest_sha256,
        signature=built.signature, signing_key_id=built.signing_key_id)
        .returning(Report.__table__.c.id)).first()
    if done is None:
        return False
    for evidence_id in built.evidence_ids:
        evidence_service.record_export(db, actor, evidence_id, purpose="court_preparation")
    audit.append(db, action="report.built", org_id=claim.org_id, object_type=TABLE,
                 object_id=claim.report_id, details={
                     "attempt": claim.attempt, "pdf_sha256": built.pdf_sha256,
                     "exhibits": len(built.evidence_ids)})
    return True


def fail_report(db: Session, claim: Claim, code: str, detail: str) -> bool:
    """Mark the build failed with a reason that holds no personal data; False when the claim
    was lost (another attempt owns the report now)."""
    done = db.execute(sa.update(Report.__table__).where(*_held(claim)).values(
        status="failed", step="failed", finished_at=utcnow(), claim_token=None,
        lease_expires_at=None, failure_code=code, failure_detail=detail[:500])
        .returning(Report.__table__.c.id)).first()
    if done is None:
        return False
    audit.append(db, action="report.failed", outcome="failure", org_id=claim.org_id,
                 object_type=TABLE, object_id=claim.report_id,
                 details={"code": code, "attempt": claim.attempt})
    return True


def due_report_ids(db: Session, *, now: datetime | None = None,
                   limit: int = 500) -> list[UUID]:
    """Reports a worker should take: queued for a while (their message may be lost) or
    building with a lease that ran out (their worker died)."""
    now = now or utcnow()
    waiting = sa.and_(Report.status == "queued", Report.requested_at < now - REQUEUE_AFTER)
    abandoned = sa.and_(Report.status == "building", Report.lease_expires_at < now)
    return list(db.scalars(sa.select(Report.id).where(sa.or_(waiting, abandoned))
                           .order_by(Report.requested_at, Report.id).limit(limit)))


# --- expiry and clean-up -------------------------------------------------------------------


def expire_reports(db: Session, storage: Storage, *, now: datetime | None = None,
                   limit: int = 500) -> int:
    """Delete the stored files of reports past their expiry and mark them expired (their
    manifest and hashes stay, so a copy handed to a court can still be verified)."""
    now = now or utcnow()
    rows = list(db.scalars(sa.select(Report).where(
        Report.status == "done", Report.expires_at <= now).order_by(Report.expires_at)
        .limit(limit).with_for_update()))
    for report in rows:
        for key in (report.pdf_key, report.bundle_key):
            if key:
                storage.delete(key)
        report.status, report.step = "expired", "expired"
        report.pdf_key = report.bundle_key = None
        report.sealed_keyset = None
        audit.append(db, action="report.expired", org_id=report.org_id, object_type=TABLE,
                     object_id=report.id)
    db.flush()
    return len(rows)


def sweep_storage(db: Session, storage: Storage, *,
                  older_than: timedelta = ORPHAN_GRACE) -> dict[str, int]:
    """Remove stored report files no report names (a worker killed after storing and before
    committing, or a failed attempt's leftovers) and abandoned partial writes, once they are
    old enough."""
    cutoff = utcnow() - older_than
    candidates = [o.key for o in storage.objects(STORAGE_PREFIX) if o.modified_at < cutoff]
    removed = 0
    for start in range(0, len(candidates), 500):
        batch = candidates[start:start + 500]
        known = set(db.scalars(sa.select(Report.pdf_key).where(Report.pdf_key.in_(batch))))
        known |= set(db.scalars(sa.select(Report.bundle_key)
                                .where(Report.bundle_key.in_(batch))))
        removed += sum(storage.delete(key) for key in batch if key not in known)
    # A worker killed while writing leaves a temporary file, never a published object.
    return {"orphans_removed": removed,
            "incomplete_removed": storage.discard_incomplete(older_than)}


# --- the agency's public keys ------------------------------------------------------------------


def published_keys(db: Session, org_id: UUID) -> list[ReportSigningKey]:
    """The agency's manifest keys (public): 404 for an agency that does not exist."""
    if db.get(Org, org_id) is None:
        raise NotFound("No such agency.")
    return signing.public_keys(db, org_id)


def manifest_of(report: Report) -> dict[str, Any] | None:
    return json.loads(report.manifest) if report.manifest else None
