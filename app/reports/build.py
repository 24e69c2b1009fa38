"""Building a report in a worker: claim, gather, check the exhibits, render, sign, store.

Each step runs in short units of work of its own (the database is never held while files
are read or the PDF is drawn) and records its progress under the worker's claim. A thread
renews the claim's lease while the build runs, so a long step (drawing a PDF of hundreds
of incidents) does not lose it, and a killed worker's lease runs out within
``service.LEASE``. The stored files are published before the row that names them commits:
if that commit fails they are deleted, and if the process dies in between the storage
sweep removes them.

The bundle is one ZIP written as a stream straight into encrypted storage: the original
exhibit files first (each re-hashed as it is copied: the check at export), then the PDF,
the manifest and its signature. Nothing is held whole in memory but the PDF and the
reduced images it shows.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import structlog
import tink

from app import __version__
from app.core import keys
from app.core.errors import NotFound
from app.core.storage import (
    ObjectMissing,
    Storage,
    StorageUnavailable,
    decrypting_reader,
    delete_on_rollback,
    encrypting_writer,
    get_storage,
    new_object_keyset,
)
from app.db import Work, unit_of_work, utcnow
from app.evidence import previews
from app.evidence import service as evidence_service
from app.reports import court_summary, funder_aggregate, service, signing
from app.reports.models import Report
from app.settings import Settings, get_settings

log = structlog.get_logger("app.reports.build")

PDF_NAME = "court-summary.pdf"
MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.sig"
README_NAME = "README.txt"
MANIFEST_FORMAT = "advocase-report-manifest/1"
CHUNK = 1024 * 1024
RENEW_EVERY = 20.0  # seconds; well inside service.LEASE
PROGRESS_EVERY = 0.5  # seconds between progress writes while exhibits stream
# The previews are made by a few threads while the next exhibits stream (Pillow releases
# the GIL while it decodes, scales and encodes). At most PREVIEW_THREADS originals wait or
# are being reduced at once, and no more than PREVIEW_BYTES_IN_FLIGHT of them (a single
# larger image still goes alone), so memory stays bounded whatever the exhibits weigh.
PREVIEW_THREADS = 3
PREVIEW_BYTES_IN_FLIGHT = 64 * 1024 * 1024
README = """This bundle was produced by advocase.

court-summary.pdf  the incident summary
manifest.json      every item in it with its SHA-256, the PDF's SHA-256, when and by which
                   software it was made
manifest.sig       the Ed25519 signature of manifest.json (base64), by the agency's key
exhibits/          the original evidence files, named by exhibit number and evidence id

To check it: verify manifest.sig over the exact bytes of manifest.json with the agency's
public key (the address is in manifest.json, signature.public_key_url), then compare the
SHA-256 of court-summary.pdf and of each exhibit file with the manifest. The agency can
also check the whole bundle, the PDF or the manifest with POST /api/v1/reports/verify or
`advocase report verify FILE`.
"""


class BuildFailed(Exception):
    """The build cannot succeed as asked; ``detail`` is for people and holds no personal data."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(code)
        self.code, self.detail = code, detail


class ClaimLost(Exception):
    """Another attempt owns the report now: stop, change nothing."""


class LeaseKeeper:
    """Renews the claim's lease every few seconds from a thread of its own."""

    def __init__(self, claim: service.Claim, work: Work, every: float = RENEW_EVERY) -> None:
        self.claim, self.work, self.every = claim, work, every
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="report-lease", daemon=True)

    def start(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                with self.work() as db:
                    if not service.renew_lease(db, self.claim):
                        self.lost = True
                        return
            except Exception:  # noqa: BLE001 - the next renewal tries again; the lease is long
                log.warning("report_lease_renewal_failed", report_id=str(self.claim.report_id),
                            exc_info=True)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


@dataclass
class _Hashing(io.RawIOBase):
    """A write-only, non-seekable stream that counts and hashes what passes to ``out``."""

    out: Any
    digest: Any = field(default_factory=hashlib.sha256)
    size: int = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:  # type: ignore[override]
        view = memoryview(data)
        self.out.write(view)
        self.digest.update(view)
        self.size += len(view)
        return len(view)

    def tell(self) -> int:
        return self.size

    def seekable(self) -> bool:
        return False

    def seek(self, *args: Any) -> int:
        raise io.UnsupportedOperation("not seekable")

    def flush(self) -> None:
        return None


class _Progress:
    def __init__(self, work: Work, claim: service.Claim, keeper: LeaseKeeper | None) -> None:
        self.work, self.claim, self.keeper = work, claim, keeper
        self.percent = 0
        self._last = 0.0

    def __call__(self, percent: int, step: str, *, force: bool = True) -> None:
        if self.keeper is not None and self.keeper.lost:
            raise ClaimLost()
        now = time.monotonic()
        if not force and now - self._last < PROGRESS_EVERY:
            return
        percent = max(self.percent, percent)
        with self.work() as db:
            if not service.record_progress(db, self.claim, percent, step):
                raise ClaimLost()
        self.percent, self._last = percent, now


def _zip_info(name: str, when: datetime, *, size: int = 0, compress: bool = False
              ) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=when.astimezone(UTC).timetuple()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    info.external_attr = 0o600 << 16
    info.file_size = size
    return info


def _stream_exhibit(storage: Storage, source: court_summary.ExhibitSource) -> Iterator[bytes]:
    """The exhibit's original bytes, decrypted from storage as they are read."""
    if source.stored is None or source.stored.keyset is None:
        raise BuildFailed("exhibit_unreadable", _unreadable(source))
    evidence = source.evidence
    try:
        reader = decrypting_reader(storage, evidence.storage_key, source.stored.keyset,
                                   evidence_service.content_associated_data(evidence.id))
    except (ObjectMissing, OSError, tink.TinkError) as exc:
        raise BuildFailed("exhibit_unreadable", _unreadable(source)) from exc
    try:
        while chunk := reader.read(CHUNK):
            yield chunk
    except (OSError, tink.TinkError) as exc:
        raise BuildFailed("exhibit_unreadable", _unreadable(source)) from exc
    finally:
        reader.close()


def _unreadable(source: court_summary.ExhibitSource) -> str:
    return (f"Exhibit {source.number} (evidence {source.evidence.id}) cannot be read from "
            "storage: it is missing or was altered. The report was not made; leave it out, "
            "or ask a supervisor to look into it.")


@dataclass
class _ExhibitResult:
    sha256: str
    size: int
    preview: bytes | None


def _copy_exhibits(storage: Storage, gathered: court_summary.Gathered,
                   bundle: zipfile.ZipFile | None, generated_at: datetime,
                   progress: _Progress) -> dict[int, _ExhibitResult]:
    """Re-hash every exhibit from storage (copying it into the bundle when asked), compare
    with the SHA-256 taken when it was received, and read (or, where none was kept, make)
    the previews of images."""
    total = sum(s.evidence.size_bytes for s in gathered.exhibits) or 1
    done_bytes = 0
    results: dict[int, _ExhibitResult] = {}
    making: dict[int, tuple[Future[bytes | None], int]] = {}  # in the order submitted

    def collect_oldest() -> None:
        number, (made, _) = next(iter(making.items()))
        results[number].preview = made.result()
        del making[number]

    pool = ThreadPoolExecutor(max_workers=PREVIEW_THREADS, thread_name_prefix="preview")
    try:
        for source in gathered.exhibits:
            evidence = source.evidence
            digest, size = hashlib.sha256(), 0
            # The preview a worker made when the file was received; made here (from the
            # original as it streams) only for an image that has none.
            made_before = (previews.read_preview(storage, evidence, source.preview_key,
                                                 source.stored.keyset)
                           if previews.wanted(evidence) and source.stored is not None
                           and source.stored.keyset is not None else None)
            keep = previews.wanted(evidence) and made_before is None
            kept: list[bytes] = []
            target = None
            if bundle is not None:
                target = bundle.open(_zip_info(source.file_name, generated_at,
                                               size=evidence.size_bytes), "w")
            try:
                for chunk in _stream_exhibit(storage, source):
                    digest.update(chunk)
                    size += len(chunk)
                    if target is not None:
                        target.write(chunk)
                    if keep:
                        kept.append(chunk)
                    done_bytes += len(chunk)
                    progress(15 + int(55 * done_bytes / total), "checking_exhibits",
                             force=False)
            finally:
                if target is not None:
                    target.close()
            if size != evidence.size_bytes or digest.hexdigest() != evidence.sha256:
                raise BuildFailed("exhibit_integrity", (
                    f"Exhibit {source.number} (evidence {evidence.id}) no longer matches the "
                    "SHA-256 recorded when it was received. The report was not made; leave it "
                    "out, or ask a supervisor to look into it."))
            results[source.number] = _ExhibitResult(digest.hexdigest(), size, made_before)
            if keep:
                while making and (len(making) >= PREVIEW_THREADS or size + sum(
                        held for _, held in making.values()) > PREVIEW_BYTES_IN_FLIGHT):
                    collect_oldest()
                making[source.number] = (pool.submit(previews.reduce, b"".join(kept)),
                                         size)
            del kept
        while making:
            collect_oldest()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return results


def _manifest(gathered: court_summary.Gathered, claim: service.Claim, *, kind: str,
              generated_at: datetime, signer: signing.Signer, pdf: bytes,
              exhibits: dict[int, _ExhibitResult], include_files: bool, profile: str,
              settings: Settings) -> bytes:
    data = gathered.data
    items: list[dict[str, Any]] = []
    for incident in data["incidents"]:
        for revision in incident["revisions"]:
            items.append({"type": "incident_revision", "incident_id": incident["id"],
                          "incident_number": incident["number"],
                          "revision": revision["revision"],
                          "sha256": court_summary.sha256_of(revision)})
    for order in data["orders"]:
        items.append({"type": "protective_order", "id": order["id"],
                      "sha256": court_summary.sha256_of(order)})
    for hearing in data["court_dates"]:
        items.append({"type": "court_date", "id": hearing["id"],
                      "sha256": court_summary.sha256_of(hearing)})
    for exhibit in data["exhibits"]:
        result = exhibits[exhibit["number"]]
        items.append({"type": "exhibit", "number": exhibit["number"],
                      "evidence_id": exhibit["evidence_id"],
                      "incident_number": exhibit["incident_number"],
                      "media_type": exhibit["content_type"], "size_bytes": result.size,
                      "sha256": result.sha256,
                      "file": exhibit["file_name"] if include_files else None})
    public_url = settings.public_url.rstrip("/")
    document = {
        "format": MANIFEST_FORMAT,
        "report_id": str(claim.report_id), "kind": kind, "org_id": str(claim.org_id),
        "generated_at": generated_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "software": {"name": "advocase", "version": __version__},
        "signature": {"algorithm": "Ed25519", "key_id": str(signer.key_id),
                      "public_key_url": f"{public_url}/api/v1/orgs/{claim.org_id}/report-key"},
        "redaction": {"profile": profile, "hidden": list(gathered.hidden)},
        "document": {"file": PDF_NAME, "media_type": "application/pdf",
                     "size_bytes": len(pdf), "sha256": hashlib.sha256(pdf).hexdigest()},
        "items": items,
    }
    return (json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _gather(work: Work, claim: service.Claim, generated_at: datetime
            ) -> tuple[court_summary.Gathered, dict[str, Any]]:
    with work(reading=True) as db:
        actor = service.requester(db, claim)
        if actor is None:
            raise BuildFailed("requester_inactive", (
                "The staff member who asked for this report can no longer sign in, so it "
                "was not made. Ask a colleague to request it again."))
        report = db.get(Report, claim.report_id)
        assert report is not None
        assert claim.client_id is not None
        try:
            params = service.open_parameters(db, report)
            gathered = court_summary.collect(db, actor, org_id=claim.org_id,
                                             client_id=claim.client_id, params=params,
                                             generated_at=generated_at)
        except (NotFound, keys.KeyDestroyed) as exc:
            raise BuildFailed("out_of_reach", (
                "The client or a chosen record is no longer within the requester's reach "
                "(or was erased), so the report was not made.")) from exc
    leftover = gathered.redactor.leftovers(gathered.data)
    if leftover:
        raise BuildFailed("redaction_failed", (
            "A detail the redaction profile hides could not be removed everywhere, so the "
            "report was not made. Choose a stricter profile or report this problem."))
    return gathered, params


def _build(work: Work, claim: service.Claim, storage: Storage, settings: Settings,
           progress: _Progress, stored: list[str]) -> service.BuiltReport:
    generated_at = utcnow()
    progress(2, "collecting")
    gathered, params = _gather(work, claim, generated_at)
    progress(12, "collecting")
    with work() as db:
        signer = signing.signer_for(db, claim.org_id)
    include_files = bool(params.get("include_original_files", True))
    keyset = new_object_keyset()
    bundle_key = service.object_key(claim, "bundle")
    pdf_key = service.object_key(claim, "pdf")
    progress(15, "checking_exhibits")
    with encrypting_writer(storage, bundle_key, keyset,
                           service.object_associated_data(claim.report_id, "bundle")) as raw:
        hashed = _Hashing(raw)
        with zipfile.ZipFile(hashed, "w", allowZip64=True) as bundle:
            results = _copy_exhibits(storage, gathered, bundle if include_files else None,
                                     generated_at, progress)
            data = gathered.data
            for exhibit in data["exhibits"]:
                exhibit["sha256_at_export"] = results[exhibit["number"]].sha256
                exhibit["in_bundle"] = include_files
            data["signing_key_id"] = str(signer.key_id)
            previews = {n: r.preview for n, r in results.items() if r.preview is not None}
            progress(72, "drawing_chart")
            period = params["period"]
            chart = court_summary.timeline_svg(data, date.fromisoformat(period["start"]),
                                               date.fromisoformat(period["end"]))
            progress(75, "rendering_pdf")
            pdf = court_summary.render_report(data, chart=chart, previews=previews,
                                              report_id=claim.report_id)
            progress(90, "signing")
            manifest = _manifest(gathered, claim, kind="court_summary",
                                 generated_at=generated_at, signer=signer, pdf=pdf,
                                 exhibits=results, include_files=include_files,
                                 profile=params.get("redaction_profile", "standard"),
                                 settings=settings)
            signature = signer.sign(manifest)
            progress(94, "bundling")
            bundle.writestr(_zip_info(PDF_NAME, generated_at, size=len(pdf)), pdf)
            bundle.writestr(_zip_info(MANIFEST_NAME, generated_at, compress=True), manifest)
            bundle.writestr(_zip_info(SIGNATURE_NAME, generated_at), signature + "\n")
            bundle.writestr(_zip_info(README_NAME, generated_at, compress=True), README)
    stored.append(bundle_key)
    progress(97, "storing")
    with encrypting_writer(storage, pdf_key, keyset,
                           service.object_associated_data(claim.report_id, "pdf")) as out:
        out.write(pdf)
    stored.append(pdf_key)
    assert claim.client_id is not None
    with work(reading=True) as db:
        sealed = keys.seal_keyset_for_client(
            db, org_id=claim.org_id, client_id=claim.client_id,
            purpose=service.KEYSET_PURPOSE, bound_to=claim.report_id, keyset=keyset)
    return service.BuiltReport(
        pdf_key=pdf_key, bundle_key=bundle_key, sealed_keyset=sealed,
        pdf_sha256=hashlib.sha256(pdf).hexdigest(), pdf_size=len(pdf),
        bundle_sha256=hashed.digest.hexdigest(), bundle_size=hashed.size,
        manifest=manifest.decode(), manifest_sha256=hashlib.sha256(manifest).hexdigest(),
        signature=signature, signing_key_id=signer.key_id, evidence_ids=gathered.evidence_ids)


def _build_funder_aggregate(work: Work, claim: service.Claim, storage: Storage,
                            settings: Settings, progress: _Progress,
                            stored: list[str]) -> service.BuiltReport:
    """Count, suppress, write the CSV and the PDF, sign a manifest of both, store both
    encrypted under a keyset sealed with the agency's key (there is no one client)."""
    generated_at = utcnow()
    progress(2, "collecting")
    with work(reading=True) as db:
        if service.requester(db, claim) is None:
            raise BuildFailed("requester_inactive", (
                "The staff member who asked for this report can no longer sign in, so it "
                "was not made. Ask a colleague to request it again."))
        report = db.get(Report, claim.report_id)
        assert report is not None
        params = service.open_parameters(db, report)
        period = params["period"]
        data = funder_aggregate.collect(
            db, org_id=claim.org_id, start=date.fromisoformat(period["start"]),
            end=date.fromisoformat(period["end"]), grouping=params.get("grouping", "none"),
            threshold=settings.report_suppression_threshold, generated_at=generated_at)
    progress(40, "suppressing")
    csv_bytes = funder_aggregate.to_csv(data)
    progress(50, "drawing_chart")
    chart = funder_aggregate.bar_chart_svg(data)
    progress(55, "rendering_pdf")
    pdf = funder_aggregate.render_pdf(
        funder_aggregate.render_html(data, chart=chart, report_id=claim.report_id))
    progress(85, "signing")
    with work() as db:
        signer = signing.signer_for(db, claim.org_id)
    public_url = settings.public_url.rstrip("/")
    manifest = (json.dumps({
        "format": MANIFEST_FORMAT, "report_id": str(claim.report_id),
        "kind": "funder_aggregate", "org_id": str(claim.org_id),
        "generated_at": generated_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "software": {"name": "advocase", "version": __version__},
        "signature": {"algorithm": "Ed25519", "key_id": str(signer.key_id),
                      "public_key_url": f"{public_url}/api/v1/orgs/{claim.org_id}/report-key"},
        "suppression": {"threshold": settings.report_suppression_threshold},
        "document": {"file": "aggregate.pdf", "media_type": "application/pdf",
                     "size_bytes": len(pdf), "sha256": hashlib.sha256(pdf).hexdigest()},
        "items": [{"type": "csv", "file": "aggregate.csv", "size_bytes": len(csv_bytes),
                   "sha256": hashlib.sha256(csv_bytes).hexdigest()}],
    }, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
    signature = signer.sign(manifest)
    progress(92, "storing")
    keyset = new_object_keyset()
    for part, content in (("csv", csv_bytes), ("pdf", pdf)):
        key = service.object_key(claim, part)
        with encrypting_writer(storage, key, keyset,
                               service.object_associated_data(claim.report_id, part)) as out:
            out.write(content)
        stored.append(key)
    with work(reading=True) as db:
        sealed = keys.seal_keyset_for_org(db, org_id=claim.org_id,
                                          purpose=service.KEYSET_PURPOSE,
                                          bound_to=claim.report_id, keyset=keyset)
    return service.BuiltReport(
        pdf_key=service.object_key(claim, "pdf"), bundle_key=service.object_key(claim, "csv"),
        sealed_keyset=sealed, pdf_sha256=hashlib.sha256(pdf).hexdigest(), pdf_size=len(pdf),
        bundle_sha256=hashlib.sha256(csv_bytes).hexdigest(), bundle_size=len(csv_bytes),
        manifest=manifest.decode(), manifest_sha256=hashlib.sha256(manifest).hexdigest(),
        signature=signature, signing_key_id=signer.key_id, evidence_ids=[])


def _discard(storage: Storage, keys_stored: list[str]) -> None:
    for key in keys_stored:
        try:
            storage.delete(key)
        except (OSError, StorageUnavailable):  # the storage sweep removes it later
            log.warning("report_file_cleanup_failed", exc_info=True)


def build_report(report_id: UUID, *, work: Work = unit_of_work,
                 storage: Storage | None = None, settings: Settings | None = None,
                 keep_lease: bool = True,
                 time_limits: tuple[type[BaseException], ...] = ()) -> str:
    """Claim and build one report; returns what happened (``done``, ``failed``,
    ``not_claimed``, ``claim_lost``). ``time_limits`` are the exceptions a task runner raises
    when the build runs out of time (recorded as ``time_limit``)."""
    settings = settings or get_settings()
    storage = storage or get_storage(settings)
    with work() as db:
        claim = service.claim_report(db, report_id)
    if claim is None:
        return "not_claimed"
    keeper = LeaseKeeper(claim, work).start() if keep_lease else None
    progress = _Progress(work, claim, keeper)
    stored: list[str] = []
    started = time.monotonic()
    try:
        builder = _build_funder_aggregate if claim.kind == "funder_aggregate" else _build
        built = builder(work, claim, storage, settings, progress, stored)
        if keeper is not None:
            keeper.stop()
            if keeper.lost:
                raise ClaimLost()
        with work() as db:
            for key in stored:
                delete_on_rollback(db, storage, key)
            actor = service.requester(db, claim)
            if actor is None:
                raise BuildFailed("requester_inactive", (
                    "The staff member who asked for this report can no longer sign in, so it "
                    "was not made."))
            try:
                finished = service.finish_report(
                    db, claim, actor, built, ttl=timedelta(hours=settings.report_ttl_hours))
            except NotFound as exc:  # an exhibit left the requester's reach meanwhile
                raise BuildFailed("out_of_reach", (
                    "A chosen record left the requester's reach while the report was being "
                    "made, so it was not kept.")) from exc
            if not finished:
                raise ClaimLost()
        log.info("report_built", report_id=str(report_id), attempt=claim.attempt,
                 seconds=round(time.monotonic() - started, 2))
        return "done"
    except ClaimLost:
        _discard(storage, stored)
        log.warning("report_claim_lost", report_id=str(report_id), attempt=claim.attempt)
        return "claim_lost"
    except BuildFailed as failure:
        return _record_failure(work, claim, storage, stored, failure.code, failure.detail)
    except time_limits:
        return _record_failure(work, claim, storage, stored, "time_limit", (
            "The build took longer than a worker is allowed to spend on one report. Choose "
            "fewer incidents or exhibits, or ask an operator to raise the limit."))
    except Exception as exc:  # noqa: BLE001 - recorded as failed; the worker goes on
        log.error("report_build_error", report_id=str(report_id), attempt=claim.attempt,
                  error=type(exc).__name__)
        return _record_failure(work, claim, storage, stored, "internal_error", (
            f"An unexpected error stopped the build (attempt {claim.attempt}). Request the "
            "report again; if it happens again, give an operator the report id."))
    finally:
        if keeper is not None:
            keeper.stop()


def _record_failure(work: Work, claim: service.Claim, storage: Storage, stored: list[str],
                    code: str, detail: str) -> str:
    _discard(storage, stored)
    with work() as db:
        recorded = service.fail_report(db, claim, code, detail)
    log.warning("report_build_failed", report_id=str(claim.report_id), code=code,
                attempt=claim.attempt)
    return "failed" if recorded else "claim_lost"
