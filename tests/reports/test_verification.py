"""Verification: a bundle, PDF or manifest is exactly what advocase produced and each exhibit
still matches — and one changed byte anywhere is found (failure cases first)."""

from __future__ import annotations

import base64
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from sqlmodel import Session

from app.evidence.models import Evidence
from tests.reports.conftest import Case, alter_one_byte


@pytest.fixture
def made(client, case: Case, sent_tasks, run_build) -> dict[str, Any]:
    report_id = client.post("/api/v1/reports", json=case.body(),
                            headers=case.headers()).json()["id"]
    assert run_build(report_id) == "done"
    status = client.get(f"/api/v1/reports/{report_id}", headers=case.headers()).json()
    return {"id": report_id, "status": status,
            "pdf": client.get(status["downloads"]["pdf"], headers=case.headers()).content,
            "bundle": client.get(status["downloads"]["bundle"], headers=case.headers()).content,
            "manifest": client.get(status["downloads"]["manifest"],
                                   headers=case.headers()).content}


def verify(client, case: Case, content: bytes, who: str = "advocate",
           signature: str | None = None) -> dict[str, Any]:
    data = {"signature": signature} if signature else None
    response = client.post("/api/v1/reports/verify", headers=case.headers(who), data=data,
                           files={"file": ("upload.bin", content, "application/octet-stream")})
    assert response.status_code == 200, response.text
    return response.json()


def rezip(bundle: bytes, change: dict[str, Any]) -> bytes:
    """The bundle with some entries replaced (bytes) or added; the rest as they were."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(bundle)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            target.writestr(info, change.pop(info.filename, None) or source.read(info))
        for name, content in change.items():
            target.writestr(name, content)
    return out.getvalue()


def entry(bundle: bytes, name: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(bundle)) as source:
        return source.read(name)


def failed(result: dict[str, Any]) -> set[str]:
    return {c["check"] for c in result["checks"] if not c["ok"]}


# --- what fails ----------------------------------------------------------------------------


def test_one_byte_of_the_pdf_changed_is_found(client, case: Case, made) -> None:
    pdf = alter_one_byte(made["pdf"], len(made["pdf"]) // 2)
    alone = verify(client, case, pdf)
    assert (alone["file_kind"], alone["ok"], alone["authentic"]) == ("pdf", False, False)
    assert failed(alone) == {"pdf_known"}
    in_bundle = verify(client, case, rezip(made["bundle"], {"court-summary.pdf": pdf}))
    assert (in_bundle["ok"], in_bundle["authentic"]) == (False, False)
    assert failed(in_bundle) == {"pdf_sha256", "bundle_sha256"}


def test_one_byte_of_an_exhibit_changed_is_found(client, case: Case, made) -> None:
    manifest = json.loads(made["manifest"])
    name = next(i["file"] for i in manifest["items"] if i["type"] == "exhibit")
    exhibit = alter_one_byte(entry(made["bundle"], name), 40)
    result = verify(client, case, rezip(made["bundle"], {name: exhibit}))
    assert result["ok"] is False and result["exhibits_match"] is False
    assert [e["in_file"] for e in result["exhibits"]] == ["mismatch", "match", "match"]
    assert all(e["stored"] == "intact" for e in result["exhibits"])


def test_a_changed_manifest_or_signature_is_found(client, case: Case, made) -> None:
    manifest = made["manifest"].replace(b'"version": "0.1.0"', b'"version": "0.1.1"')
    assert manifest != made["manifest"]
    signature = entry(made["bundle"], "manifest.sig").decode().strip()
    alone = verify(client, case, manifest, signature=signature)
    assert alone["ok"] is False
    assert failed(alone) == {"manifest_signature", "manifest_known"}
    in_bundle = verify(client, case, rezip(made["bundle"], {"manifest.json": manifest}))
    assert {"manifest_signature", "manifest_known"} <= failed(in_bundle)
    forged = base64.b64encode(bytes(64)).decode()
    wrong = verify(client, case, rezip(made["bundle"], {"manifest.sig": forged}))
    assert failed(wrong) == {"manifest_signature", "bundle_sha256"}


def test_an_added_file_is_found(client, case: Case, made) -> None:
    result = verify(client, case, rezip(made["bundle"], {"exhibits/extra.txt": b"added"}))
    assert result["ok"] is False and "bundle_contents" in failed(result)


def test_a_stored_exhibit_altered_on_disk_is_found(client, case: Case, made, db: Session,
                                                   storage) -> None:
    evidence = db.get(Evidence, case.evidence["drawing"])
    assert evidence is not None
    path = Path(storage.root) / evidence.storage_key  # type: ignore[attr-defined]
    original = path.read_bytes()
    try:
        path.write_bytes(alter_one_byte(original, 100))
        result = verify(client, case, made["bundle"])
    finally:
        path.write_bytes(original)
    assert result["authentic"] is True and result["ok"] is False
    assert [e["stored"] for e in result["exhibits"]] == ["intact", "unreadable", "intact"]


def test_another_agency_cannot_vouch_for_the_report(client, case: Case, made) -> None:
    result = verify(client, case, made["bundle"], who="stranger")
    assert result["ok"] is False and "manifest_signature" in failed(result)


def test_a_crafted_manifest_is_refused_not_crashed_on(client, case: Case, made) -> None:
    crafted = json.dumps({"format": "advocase-report-manifest/1", "signature": ["x"],
                          "document": {"size_bytes": "many", "sha256": 5},
                          "items": [{"type": "exhibit", "number": "one", "file": 7},
                                    {"type": "exhibit", "number": 1, "sha256": "0" * 64,
                                     "evidence_id": str(case.evidence["text"]),
                                     "size_bytes": -3, "file": "exhibits/nothing.txt"}],
                          "report_id": None}).encode()
    result = verify(client, case, rezip(made["bundle"], {"manifest.json": crafted}))
    assert result["ok"] is False and result["authentic"] is False
    assert {"manifest_signature", "manifest_known", "pdf_sha256", "manifest_items"} <= \
        failed(result)
    assert [(e["in_file"], e["stored"]) for e in result["exhibits"]] == \
        [("missing", "mismatch")]


def test_a_file_that_is_no_report(client, case: Case) -> None:
    result = verify(client, case, b"Fictional: not a report at all\n")
    assert (result["file_kind"], result["ok"], result["authentic"]) == ("unknown", False, False)
    not_zip = verify(client, case, b"PK\x03\x04 truncated")
    assert not_zip["ok"] is False and failed(not_zip) == {"bundle"}
    missing = client.post("/api/v1/reports/verify", headers=case.headers(),
                          data={"signature": "x"})
    assert missing.status_code == 422
    assert missing.json()["errors"][0]["field"] == "file"


# --- what passes ---------------------------------------------------------------------------


def test_the_bundle_pdf_and_manifest_as_made_verify(client, case: Case, made) -> None:
    bundle = verify(client, case, made["bundle"], who="supervisor")
    assert (bundle["file_kind"], bundle["ok"], bundle["authentic"]) == ("bundle", True, True)
    assert bundle["exhibits_match"] is True and bundle["report_id"] == made["id"]
    assert {c["check"] for c in bundle["checks"]} == {
        "manifest_signature", "manifest_known", "pdf_sha256", "bundle_contents",
        "bundle_sha256"}
    assert all(e["in_file"] == "match" and e["stored"] == "intact" for e in bundle["exhibits"])
    pdf = verify(client, case, made["pdf"])
    assert (pdf["file_kind"], pdf["ok"]) == ("pdf", True)
    assert [e["in_file"] for e in pdf["exhibits"]] == ["not_included"] * 3
    signature = entry(made["bundle"], "manifest.sig").decode()
    manifest = verify(client, case, made["manifest"], signature=signature)
    assert (manifest["file_kind"], manifest["ok"]) == ("manifest", True)
    # Without its signature part, the manifest is found by its hash and its stored signature.
    assert verify(client, case, made["manifest"])["ok"] is True


def test_the_signature_checks_offline_with_the_published_key(client, case: Case, made) -> None:
    manifest = json.loads(made["manifest"])
    url = manifest["signature"]["public_key_url"]
    assert url.endswith(f"/api/v1/orgs/{case.org.id}/report-key")
    keys = client.get(f"/api/v1/orgs/{case.org.id}/report-key")  # no sign-in: public
    assert keys.status_code == 200
    [key] = keys.json()["keys"]
    assert key["key_id"] == manifest["signature"]["key_id"] and key["current"] is True
    public = serialization.load_pem_public_key(key["public_key_pem"].encode())
    signature = base64.b64decode(entry(made["bundle"], "manifest.sig"))
    public.verify(signature, entry(made["bundle"], "manifest.json"))  # type: ignore[union-attr]
    assert client.get(f"/api/v1/orgs/{case.other_org.id}/report-key").json()["keys"] == []
    assert client.get("/api/v1/orgs/00000000-0000-4000-8000-000000000000/report-key"
                      ).status_code == 404


def test_verification_still_works_after_the_files_expired(client, case: Case, made,
                                                          db: Session, storage) -> None:
    from datetime import timedelta

    from app.db import utcnow
    from app.reports import service
    from app.reports.models import Report

    report = db.get(Report, __import__("uuid").UUID(made["id"]))
    assert report is not None
    report.expires_at = utcnow() - timedelta(seconds=1)
    db.commit()
    service.expire_reports(db, storage)
    db.commit()
    assert verify(client, case, made["bundle"])["ok"] is True


def test_the_command_line_verifies_a_file(made, tmp_path, monkeypatch, bound_work) -> None:
    from app import cli
    from app import db as app_db

    monkeypatch.setattr(app_db, "unit_of_work", bound_work)
    good = tmp_path / "report.zip"
    good.write_bytes(made["bundle"])
    bad = tmp_path / "changed.pdf"
    bad.write_bytes(alter_one_byte(made["pdf"], 1000))
    runner = CliRunner()
    ok = runner.invoke(cli.cli, ["report", "verify", str(good), "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output.strip().splitlines()[-1])["ok"] is True
    refused = runner.invoke(cli.cli, ["report", "verify", str(bad)])
    assert refused.exit_code == 1
    assert "NOT verified" in refused.output and "FAILED: pdf_known" in refused.output
    assert os.path.exists(good)
