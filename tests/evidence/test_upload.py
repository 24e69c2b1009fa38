"""Uploading evidence: every way an upload can fail leaves nothing behind; a good one is
typed by content, hashed, encrypted at rest and recorded in the chain of custody."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import anyio
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlmodel import Session

from app.core.audit import AuditEvent
from app.evidence.models import CustodyEvent, Evidence
from tests.evidence.conftest import (
    CAPTURED_BY,
    DESCRIPTION,
    DEVICE,
    FILENAME,
    NOTES,
    Agency,
    jpeg,
    stored_files,
    upload,
    uploaded,
)
from tests.support.privacy import assert_not_stored

BOUNDARY = "fictional-boundary-7f3a9c"


def multipart(content: bytes, fields: dict[str, str] | None = None,
              filename: str = "fictional.jpg") -> bytes:
    parts = []
    for name, value in (fields or {}).items():
        parts.append(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                     f"{value}\r\n".encode())
    parts.append(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
                 f'filename="{filename}"\r\nContent-Type: image/jpeg\r\n\r\n'.encode()
                 + content + b"\r\n")
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def evidence_rows(db: Session, agency: Agency) -> list[Evidence]:
    return list(db.scalars(sa.select(Evidence).where(Evidence.org_id == agency.org.id)))


def assert_nothing_kept(db: Session, agency: Agency, storage) -> None:
    assert evidence_rows(db, agency) == []
    assert stored_files(storage, agency.org.id) == []


def assert_problem(response: Any, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return response.json()


# --- failures first: nothing may be left behind ------------------------------------------


def test_declared_body_over_the_limit_is_refused_before_reading(small_limit_client, agency,
                                                                db, storage) -> None:
    response = upload(small_limit_client, agency, jpeg(300 * 1024))
    problem = assert_problem(response, 413)
    assert problem["type"].endswith("payload-too-large")
    assert problem["max_bytes"] == 256 * 1024
    assert_nothing_kept(db, agency, storage)


def test_streamed_body_over_the_limit_is_refused_while_streaming(small_limit_client, agency,
                                                                 db, storage) -> None:
    body = multipart(jpeg(600 * 1024))

    def chunks() -> Iterator[bytes]:  # no Content-Length: only counting can stop it
        for start in range(0, len(body), 16 * 1024):
            yield body[start:start + 16 * 1024]

    response = small_limit_client.post(
        f"/api/v1/incidents/{agency.incident_id}/evidence", content=chunks(),
        headers=agency.headers("advocate") | {"content-type": MULTIPART})
    assert_problem(response, 413)
    assert_nothing_kept(db, agency, storage)


def test_the_limit_applies_only_to_the_evidence_route(small_limit_client, agency) -> None:
    # The API's own 1 MiB default still guards every other route.
    response = small_limit_client.post("/api/v1/clients", content=b"{" + b" " * 2_000_000 + b"}",
                                       headers=agency.headers("advocate")
                                       | {"content-type": "application/json"})
    assert response.status_code == 413


def test_a_file_of_a_refused_type_is_415_naming_the_file_field(client, agency, db,
                                                               storage) -> None:
    for content in (b"PK\x03\x04" + os.urandom(5000),          # a zip archive
                    b"MZ\x90\x00" + os.urandom(5000),          # a Windows program
                    b"\x00\x00\x00\x1cftypavif" + os.urandom(500),  # AVIF: not on the list
                    os.urandom(4) + b"\x00" + os.urandom(4000)):  # unknown binary
        if content[:3] == b"\xff\xd8\xff":
            continue
        problem = assert_problem(upload(client, agency, content, filename="photo.jpg"), 415)
        assert problem["errors"][0]["field"] == "file"
        assert problem["errors"][0]["type"] == "file_type"
    assert_nothing_kept(db, agency, storage)


def test_a_body_that_is_not_multipart_is_415(client, agency, db, storage) -> None:
    response = client.post(f"/api/v1/incidents/{agency.incident_id}/evidence",
                           content=jpeg(1000), headers=agency.headers("advocate")
                           | {"content-type": "image/jpeg"})
    problem = assert_problem(response, 415)
    assert problem["errors"][0]["field"] == "content-type"
    assert_nothing_kept(db, agency, storage)


@pytest.mark.parametrize(("fields", "field"), [
    ({"captured_at": "yesterday evening"}, "captured_at"),
    ({"captured_at": "2026-03-01T08:15:00"}, "captured_at"),         # no offset
    ({"captured_at": "2999-01-01T00:00:00Z"}, "captured_at"),         # in the future
    ({"description": "x" * 4001}, "description"),
    ({"case_number": "2026-000001"}, "case_number"),                   # not a field
])
def test_invalid_fields_are_422_and_keep_nothing(client, agency, db, storage, fields,
                                                  field) -> None:
    problem = assert_problem(upload(client, agency, jpeg(), fields=fields), 422)
    assert [e["field"] for e in problem["errors"]] == [field]
    assert "yesterday" not in str(problem)  # values are never echoed
    assert_nothing_kept(db, agency, storage)


def test_missing_or_empty_file_is_422(client, agency, db, storage) -> None:
    response = client.post(f"/api/v1/incidents/{agency.incident_id}/evidence",
                           data={"description": "Fictional"}, files={"other": ("a", b"x")},
                           headers=agency.headers("advocate"))
    assert_problem(response, 422)
    response = client.post(f"/api/v1/incidents/{agency.incident_id}/evidence",
                           content=multipart(b"", {}),
                           headers=agency.headers("advocate") | {"content-type": MULTIPART})
    problem = assert_problem(response, 422)
    assert problem["errors"][0]["field"] == "file"
    assert_nothing_kept(db, agency, storage)


def test_a_body_cut_before_its_closing_boundary_keeps_nothing(client, agency, db,
                                                             storage) -> None:
    body = multipart(jpeg(100_000))
    response = client.post(f"/api/v1/incidents/{agency.incident_id}/evidence",
                           content=body[: len(body) // 2],
                           headers=agency.headers("advocate") | {"content-type": MULTIPART})
    problem = assert_problem(response, 400)
    assert problem["type"].endswith("upload-incomplete")
    assert_nothing_kept(db, agency, storage)


def _asgi_post(app: FastAPI, path: str, headers: dict[str, str],
               messages: list[dict[str, Any] | Exception]) -> list[dict[str, Any]]:
    """Drive the app with a hand-made ASGI conversation (a client that goes away)."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        item = messages.pop(0) if messages else {"type": "http.disconnect"}
        if isinstance(item, Exception):
            raise item
        return item

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "client": ("127.0.0.1", 50000),
             "server": ("testserver", 80),
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}

    async def run() -> None:
        try:
            await app(scope, receive, send)
        except OSError:
            pass  # the request-context layer already answered (or the client is gone)

    anyio.run(run)
    return sent


@pytest.mark.parametrize("how", ["disconnect", "network_error"])
def test_a_client_that_goes_away_mid_upload_leaves_nothing(app, agency, db, storage,
                                                          how) -> None:
    body = multipart(jpeg(3 * 1024 * 1024))
    half = len(body) // 2
    end: dict[str, Any] | Exception = ({"type": "http.disconnect"} if how == "disconnect"
                                       else OSError("fictional connection reset"))
    sent = _asgi_post(
        app, f"/api/v1/incidents/{agency.incident_id}/evidence",
        agency.headers("advocate") | {"content-type": MULTIPART,
                                      "content-length": str(len(body))},
        [{"type": "http.request", "body": body[:half // 2], "more_body": True},
         {"type": "http.request", "body": body[half // 2:half], "more_body": True}, end])
    statuses = [m["status"] for m in sent if m["type"] == "http.response.start"]
    # (Nobody reads these answers: the point is what is left on disk and in the database.)
    assert statuses == [400 if how == "disconnect" else 500]
    assert_nothing_kept(db, agency, storage)


def test_a_failed_commit_removes_the_stored_file_and_keeps_earlier_evidence(
        client, agency, db, storage, monkeypatch) -> None:
    first_content = jpeg(200_000)
    first = uploaded(client, agency, first_content)
    kept = stored_files(storage, agency.org.id)
    assert len(kept) == 1

    real_commit = db.commit
    calls = {"n": 0}

    def failing_commit() -> None:
        calls["n"] += 1
        raise RuntimeError("fictional: the database went away at commit")

    monkeypatch.setattr(db, "commit", failing_commit)
    response = client.post(f"/api/v1/incidents/{agency.incident_id}/evidence",
                           files={"file": ("second.jpg", jpeg(300_000), "image/jpeg")},
                           headers=agency.headers("advocate"))
    monkeypatch.setattr(db, "commit", real_commit)
    assert calls["n"] == 1
    assert response.status_code == 500
    # The second file was stored, then deleted when its transaction rolled back.
    assert stored_files(storage, agency.org.id) == kept
    assert [e.id for e in evidence_rows(db, agency)] == [UUID(first["id"])]
    again = client.get(f"/api/v1/evidence/{first['id']}/content",
                       headers=agency.headers("advocate"))
    assert again.status_code == 200 and again.content == first_content


def test_access_is_checked_before_the_body_is_read(client, agency, db, storage) -> None:
    for who, incident, status in (("colleague", agency.incident_id, 404),
                                  ("stranger", agency.incident_id, 404),
                                  ("advocate", agency.other_org_incident_id, 404),
                                  ("admin", agency.incident_id, 404),
                                  ("auditor", agency.incident_id, 403)):
        response = upload(client, agency, jpeg(), who=who, incident_id=incident)
        assert_problem(response, status)
    assert_nothing_kept(db, agency, storage)


# --- a good upload -------------------------------------------------------------------------


def test_upload_answers_the_sha256_and_the_metadata(client, agency, db) -> None:
    content = jpeg(150_000)
    response = upload(client, agency, content, purpose="case_work")
    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["location"] == f"/api/v1/evidence/{body['id']}"
    assert body["sha256"] == hashlib.sha256(content).hexdigest()
    assert body["size_bytes"] == len(content)
    assert body["content_type"] == "image/jpeg"
    assert body["original_filename"] == FILENAME
    assert body["description"] == DESCRIPTION
    assert body["captured_at"] == "2026-03-01T07:15:00Z"
    assert body["source"] == {"captured_by": CAPTURED_BY, "device": DEVICE, "notes": NOTES}
    assert body["incident_id"] == str(agency.incident_id)
    assert body["uploaded_by"] == str(agency.users["advocate"].id)
    events = list(db.scalars(sa.select(CustodyEvent)
                             .where(CustodyEvent.evidence_id == UUID(body["id"]))))
    assert [(e.action, e.purpose, e.actor_id) for e in events] == [
        ("upload", "case_work", agency.users["advocate"].id)]
    assert db.scalar(sa.select(AuditEvent.action).where(
        AuditEvent.object_id == body["id"])) == "evidence.uploaded"


def test_only_the_basename_of_a_sent_path_is_kept(client, agency) -> None:
    body = uploaded(client, agency, jpeg(), filename="C:\\Users\\Fictional\\door.jpg")
    assert body["original_filename"] == "door.jpg"


def test_metadata_is_optional(client, agency) -> None:
    body = uploaded(client, agency, b"Fictional note typed by the client.\n", fields={},
                    filename="")
    assert body["content_type"] == "text/plain"
    assert body["original_filename"] is None and body["description"] is None
    assert body["source"] == {"captured_by": None, "device": None, "notes": None}


def test_stored_file_and_row_hold_no_plaintext(client, agency, db, storage) -> None:
    content = jpeg(256 * 1024)
    body = uploaded(client, agency, content)
    [path] = stored_files(storage, agency.org.id)
    blob = path.read_bytes()
    assert len(blob) > len(content)  # header and a tag per segment
    # Any 64-byte run of the original contains one of these aligned 32-byte windows.
    for start in range(0, len(content) - 32, 32):
        assert content[start:start + 32] not in blob, f"original bytes at {start} stored"
    row = db.get(Evidence, UUID(body["id"]))
    assert row is not None
    stored_text = " ".join(str(v) for v in (row.original_filename, row.description, row.source,
                                            row.storage_key, row.sealed_keyset))
    assert_not_stored(stored_text, [FILENAME, DESCRIPTION, CAPTURED_BY, DEVICE, NOTES])
    assert str(agency.client_id) not in row.storage_key  # keys name org and evidence only


def test_a_supervisor_may_upload_to_any_incident_of_the_agency(client, agency) -> None:
    body = uploaded(client, agency, jpeg(), who="supervisor",
                    incident_id=agency.other_caseload_incident_id)
    assert body["incident_id"] == str(agency.other_caseload_incident_id)
