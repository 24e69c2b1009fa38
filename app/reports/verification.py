"""Is this file exactly what advocase produced, and does each exhibit still match?

One function for the API (``POST /api/v1/reports/verify``, the caller's agency only) and
the command line (``advocase report verify FILE``, any agency of the installation). It
takes what a court or a colleague holds:

- a **bundle** (ZIP): the manifest's Ed25519 signature checked with the agency's key, the
  manifest known to this installation as the one it made for that report, the PDF's
  SHA-256 equal to the manifest's, nothing added or missing, and each exhibit file in the
  bundle hashed and compared with the manifest;
- a **PDF**: found by its SHA-256 among the reports this installation made, and that
  report's manifest and signature checked;
- a **manifest** (JSON, with its signature as a separate part, or found by its SHA-256).

In every case each exhibit the manifest lists is also checked against the evidence kept
here: its recorded SHA-256, and the stored file decrypted and hashed again. Reading stops
at the sizes the manifest declares, so a crafted archive cannot make it hash without end.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any
from uuid import UUID

import sqlalchemy as sa
from sqlmodel import Session

from app.core.storage import Storage
from app.evidence import service as evidence_service
from app.evidence.models import Evidence
from app.reports import build, signing
from app.reports.models import Report, ReportSigningKey

CHUNK = 1024 * 1024
MAX_MANIFEST_BYTES = 50 * 1024 * 1024


@dataclass
class Check:
    check: str
    ok: bool
    detail: str


@dataclass
class ExhibitCheck:
    number: int
    evidence_id: UUID
    sha256: str
    in_file: str
    stored: str


@dataclass
class Result:
    file_kind: str
    checks: list[Check] = field(default_factory=list)
    exhibits: list[ExhibitCheck] = field(default_factory=list)
    report_id: UUID | None = None
    generated_at: datetime | None = None

    @property
    def authentic(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def exhibits_match(self) -> bool | None:
        if not self.exhibits:
            return None
        return all(e.in_file in ("match", "not_included") and e.stored == "intact"
                   for e in self.exhibits)

    @property
    def ok(self) -> bool:
        return self.authentic and self.exhibits_match is not False

    def as_dict(self) -> dict[str, Any]:
        return {"file_kind": self.file_kind, "ok": self.ok, "authentic": self.authentic,
                "exhibits_match": self.exhibits_match,
                "report_id": str(self.report_id) if self.report_id else None,
                "generated_at": self.generated_at.isoformat() if self.generated_at else None,
                "checks": [c.__dict__ for c in self.checks],
                "exhibits": [{**e.__dict__, "evidence_id": str(e.evidence_id)}
                             for e in self.exhibits]}


def _hash_stream(stream: IO[bytes], limit: int | None = None) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    while True:
        want = CHUNK if limit is None else min(CHUNK, limit + 1 - size)
        if want <= 0:
            break
        chunk = stream.read(want)
        if not chunk:
            break
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _count(value: Any) -> int:
    """A size from a manifest (which may be crafted): a non-negative int, else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _kind(head: bytes) -> str:
    if head.startswith(b"PK\x03\x04"):
        return "bundle"
    if head.startswith(b"%PDF-"):
        return "pdf"
    if head.lstrip()[:1] == b"{":
        return "manifest"
    return "unknown"


def _in_org(query: sa.Select[Any], model: Any, org_id: UUID | None) -> sa.Select[Any]:
    return query if org_id is None else query.where(model.org_id == org_id)


def _report_by(db: Session, column: Any, value: str, org_id: UUID | None) -> Report | None:
    return db.scalar(_in_org(sa.select(Report).where(column == value, Report.status.in_(
        ("done", "expired"))), Report, org_id).order_by(Report.finished_at.desc()).limit(1))


def _parse_manifest(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(value, dict) or value.get("format") != build.MANIFEST_FORMAT:
        return None
    return value


def _check_signature(db: Session, result: Result, manifest: dict[str, Any], raw: bytes,
                     signature: str | None, org_id: UUID | None) -> None:
    key_id = _mapping(manifest.get("signature")).get("key_id")
    key = None
    try:
        key = db.scalar(_in_org(sa.select(ReportSigningKey).where(
            ReportSigningKey.id == UUID(str(key_id))), ReportSigningKey, org_id))
    except ValueError:
        key = None
    if key is None:
        result.checks.append(Check("manifest_signature", False,
                                   "The manifest names no signing key of this agency."))
        return
    if not signature:
        result.checks.append(Check("manifest_signature", False,
                                   "No signature was given for the manifest."))
        return
    valid = signing.verify_signature(key.public_key, raw, signature)
    result.checks.append(Check("manifest_signature", valid,
                               "The agency's key signed exactly this manifest." if valid else
                               "The signature does not match the manifest: it was changed, "
                               "or signed by another key."))


def _check_known(db: Session, result: Result, manifest: dict[str, Any], raw: bytes,
                 org_id: UUID | None) -> Report | None:
    digest = hashlib.sha256(raw).hexdigest()
    report = _report_by(db, Report.manifest_sha256, digest, org_id)
    try:
        named = UUID(str(manifest.get("report_id")))
    except ValueError:
        named = None
    known = report is not None and report.id == named
    result.checks.append(Check("manifest_known", known,
                               "This installation made exactly this manifest for the report."
                               if known else "This installation made no report with exactly "
                               "this manifest."))
    if report is not None:
        result.report_id, result.generated_at = report.id, report.finished_at
    return report if known else None


def _exhibit_items(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    items = manifest.get("items")
    return [item for item in (items if isinstance(items, list) else [])
            if isinstance(item, dict) and item.get("type") == "exhibit"]


def _stored_state(db: Session, storage: Storage, evidence_id: UUID, sha256: str,
                  org_id: UUID | None) -> str:
    evidence = db.scalar(_in_org(sa.select(Evidence).where(Evidence.id == evidence_id),
                                 Evidence, org_id))
    if evidence is None:
        return "missing"
    if evidence.sha256 != sha256:
        return "mismatch"
    stored = evidence_service.open_for_check(db, evidence_id)
    if stored is None:
        return "missing"  # the client was erased: the file is unreadable for good
    return evidence_service.hash_stored(stored, storage)


def _check_exhibits(db: Session, storage: Storage, result: Result, manifest: dict[str, Any],
                    bundle: zipfile.ZipFile | None, org_id: UUID | None) -> None:
    names = set(bundle.namelist()) if bundle is not None else set()
    for item in _exhibit_items(manifest):
        try:
            evidence_id = UUID(str(item.get("evidence_id")))
            number, sha256 = int(item["number"]), str(item["sha256"])
            size = _count(item.get("size_bytes"))
        except (KeyError, TypeError, ValueError):
            result.checks.append(Check("manifest_items", False,
                                       "An exhibit of the manifest is malformed."))
            continue
        in_file = "not_included"
        if bundle is not None and isinstance(item.get("file"), str):
            name = item["file"]
            if name not in names:
                in_file = "missing"
            else:
                with bundle.open(name) as entry:
                    digest, found = _hash_stream(entry, size)
                in_file = "match" if (digest, found) == (sha256, size) else "mismatch"
        result.exhibits.append(ExhibitCheck(
            number, evidence_id, sha256, in_file,
            _stored_state(db, storage, evidence_id, sha256, org_id)))


def _verify_bundle(db: Session, storage: Storage, file: IO[bytes], result: Result,
                   org_id: UUID | None) -> None:
    digest, _ = _hash_stream(file)
    file.seek(0)
    try:
        bundle = zipfile.ZipFile(file)
    except zipfile.BadZipFile:
        result.checks.append(Check("bundle", False, "The file is not a readable ZIP bundle."))
        return
    with bundle:
        names = set(bundle.namelist())
        needed = {build.PDF_NAME, build.MANIFEST_NAME, build.SIGNATURE_NAME}
        if not needed <= names:
            result.checks.append(Check("bundle", False, "The bundle lacks its PDF, manifest "
                                                        "or signature."))
            return
        with bundle.open(build.MANIFEST_NAME) as entry:
            raw = entry.read(MAX_MANIFEST_BYTES + 1)
        manifest = _parse_manifest(raw) if len(raw) <= MAX_MANIFEST_BYTES else None
        if manifest is None:
            result.checks.append(Check("manifest", False, "manifest.json is not an advocase "
                                                          "report manifest."))
            return
        with bundle.open(build.SIGNATURE_NAME) as entry:
            signature = entry.read(1024).decode("ascii", "replace")
        _check_signature(db, result, manifest, raw, signature, org_id)
        report = _check_known(db, result, manifest, raw, org_id)
        document = _mapping(manifest.get("document"))
        with bundle.open(build.PDF_NAME) as entry:
            pdf_digest, pdf_size = _hash_stream(entry, _count(document.get("size_bytes")))
        same_pdf = pdf_digest == document.get("sha256") and pdf_size == document.get(
            "size_bytes")
        result.checks.append(Check("pdf_sha256", same_pdf,
                                   "The PDF is the one the manifest lists." if same_pdf else
                                   "The PDF's SHA-256 differs from the manifest's: the PDF "
                                   "was changed."))
        listed = {i["file"] for i in _exhibit_items(manifest) if isinstance(i.get("file"), str)}
        extra = names - listed - needed - {build.README_NAME}
        result.checks.append(Check("bundle_contents", not extra,
                                   "The bundle holds exactly the listed files." if not extra
                                   else f"The bundle holds {len(extra)} file(s) the manifest "
                                        "does not list."))
        if report is not None and report.bundle_sha256 is not None:
            result.checks.append(Check(
                "bundle_sha256", digest == report.bundle_sha256,
                "The bundle is byte for byte the one advocase made."
                if digest == report.bundle_sha256 else
                "The bundle's bytes differ from the one advocase made (see the other checks "
                "for what changed)."))
        _check_exhibits(db, storage, result, manifest, bundle, org_id)


def verify_file(db: Session, file: IO[bytes], *, storage: Storage,
                org_id: UUID | None = None, signature: str | None = None) -> Result:
    """Check a PDF, manifest or bundle (``file`` must be seekable); ``org_id`` limits the
    check to one agency's reports and keys (the API), None allows any (the CLI)."""
    head = file.read(8)
    file.seek(0)
    result = Result(_kind(head))
    if result.file_kind == "bundle":
        _verify_bundle(db, storage, file, result, org_id)
    elif result.file_kind == "pdf":
        digest, _ = _hash_stream(file)
        report = _report_by(db, Report.pdf_sha256, digest, org_id)
        result.checks.append(Check("pdf_known", report is not None,
                                   "This installation made exactly this PDF." if report else
                                   "No report made here has this SHA-256: the PDF was not made "
                                   "by advocase here, or it was changed."))
        if report is not None and report.manifest is not None:
            raw = report.manifest.encode()
            manifest = json.loads(raw)
            _check_signature(db, result, manifest, raw, report.signature, org_id)
            result.report_id, result.generated_at = report.id, report.finished_at
            _check_exhibits(db, storage, result, manifest, None, org_id)
    elif result.file_kind == "manifest":
        raw = file.read(MAX_MANIFEST_BYTES + 1)
        manifest = _parse_manifest(raw) if len(raw) <= MAX_MANIFEST_BYTES else None
        if manifest is None:
            result.file_kind = "unknown"
            result.checks.append(Check("file", False, "The file is not an advocase PDF, "
                                                      "manifest or bundle."))
            return result
        report = _report_by(db, Report.manifest_sha256, hashlib.sha256(raw).hexdigest(), org_id)
        _check_signature(db, result, manifest, raw,
                         signature or (report.signature if report else None), org_id)
        _check_known(db, result, manifest, raw, org_id)
        _check_exhibits(db, storage, result, manifest, None, org_id)
    else:
        result.checks.append(Check("file", False, "The file is not an advocase PDF, manifest "
                                                  "or bundle."))
    return result
