"""Reading evidence back: the original bytes, byte ranges, ETag, safe headers, the chain of
custody of every access, reach, and crypto-shredding."""

from __future__ import annotations

import hashlib
from uuid import UUID

import pytest
import sqlalchemy as sa
import tink
from sqlmodel import Session

from app.clients import service as clients_service
from app.core import keys
from app.core.audit import AuditEvent
from app.core.storage import decrypting_reader
from app.evidence import service
from app.evidence.models import CustodyEvent, Evidence
from tests.evidence.conftest import FILENAME, jpeg, stored_files, uploaded

MIB = 1024 * 1024


@pytest.fixture
def stored(client, agency) -> tuple[dict, bytes]:
    # Over two 1 MiB segments, so ranges cross segment boundaries.
    content = jpeg(2 * MIB + 12_345)
    return uploaded(client, agency, content), content


def content_url(body: dict) -> str:
    return f"/api/v1/evidence/{body['id']}/content"


def custody(db: Session, evidence_id: str) -> list[CustodyEvent]:
    return service.custody_log(db, UUID(evidence_id))


def test_download_is_the_original_with_safe_headers(client, agency, stored, db) -> None:
    body, content = stored
    response = client.get(content_url(body), headers=agency.headers("advocate"))
    assert response.status_code == 200
    assert response.content == content
    assert hashlib.sha256(response.content).hexdigest() == body["sha256"]
    headers = response.headers
    assert headers["etag"] == f'"{body["sha256"]}"'
    assert headers["content-type"] == "image/jpeg"
    assert headers["content-length"] == str(len(content))
    assert headers["cache-control"] == "no-store"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["accept-ranges"] == "bytes"
    assert "sandbox" in headers["content-security-policy"]
    disposition = headers["content-disposition"]
    assert disposition == f'attachment; filename="evidence-{body["id"]}.jpg"'
    assert "door" not in disposition and FILENAME not in disposition
    assert [e.action for e in custody(db, body["id"])] == ["upload", "download"]


@pytest.mark.parametrize(("header", "first", "last"), [
    ("bytes=0-0", 0, 0),
    ("bytes=10-99", 10, 99),
    ("bytes=1048000-2100000", 1048000, 2100000),   # across segment boundaries
    ("bytes=2097000-", 2097000, None),             # to the end
    ("bytes=-500", -500, None),                    # the last 500 bytes
    ("bytes=100-99999999", 100, None),             # a last byte past the end is clamped
])
def test_ranges_answer_206_with_content_range(client, agency, stored, db, header, first,
                                              last) -> None:
    body, content = stored
    size = len(content)
    start = first if first >= 0 else size + first
    end = size - 1 if last is None else last
    response = client.get(content_url(body), headers=agency.headers("advocate")
                          | {"Range": header})
    assert response.status_code == 206, response.text
    assert response.content == content[start:end + 1]
    assert response.headers["content-range"] == f"bytes {start}-{end}/{size}"
    assert response.headers["content-length"] == str(end - start + 1)
    assert response.headers["etag"] == f'"{body["sha256"]}"'
    event = custody(db, body["id"])[-1]
    assert (event.action, event.byte_range) == ("download", f"{start}-{end}")


@pytest.mark.parametrize("header", ["bytes=500-400", "bytes=99999999-", "bytes=-0",
                                    "bytes=abc-def", "bytes=-", "bytes=1-2-3"])
def test_an_invalid_or_unsatisfiable_range_is_416(client, agency, stored, db,
                                                  header) -> None:
    body, content = stored
    response = client.get(content_url(body), headers=agency.headers("advocate")
                          | {"Range": header})
    assert response.status_code == 416
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["content-range"] == f"bytes */{len(content)}"
    assert [e.action for e in custody(db, body["id"])] == ["upload"]  # nothing was served


def test_several_ranges_or_another_unit_get_the_whole_file(client, agency, stored) -> None:
    body, content = stored
    for header in ("bytes=0-10,20-30", "pages=1-2"):
        response = client.get(content_url(body), headers=agency.headers("advocate")
                              | {"Range": header})
        assert response.status_code == 200 and response.content == content


def test_if_range_with_another_etag_gets_the_whole_file(client, agency, stored) -> None:
    body, content = stored
    response = client.get(content_url(body), headers=agency.headers("advocate")
                          | {"Range": "bytes=0-9", "If-Range": '"0000"'})
    assert response.status_code == 200 and response.content == content
    response = client.get(content_url(body), headers=agency.headers("advocate")
                          | {"Range": "bytes=0-9", "If-Range": f'"{body["sha256"]}"'})
    assert response.status_code == 206 and response.content == content[:10]


def test_if_none_match_answers_304_and_is_in_the_custody_log(client, agency, stored,
                                                             db) -> None:
    body, _ = stored
    for header in (f'"{body["sha256"]}"', f'W/"{body["sha256"]}"', f'"x", "{body["sha256"]}"',
                   "*"):
        response = client.get(content_url(body), headers=agency.headers("advocate")
                              | {"If-None-Match": header})
        assert response.status_code == 304
        assert response.content == b""
        assert response.headers["etag"] == f'"{body["sha256"]}"'
    response = client.get(content_url(body), headers=agency.headers("advocate")
                          | {"If-None-Match": '"another"'})
    assert response.status_code == 200
    outcomes = [e.outcome for e in custody(db, body["id"]) if e.action == "download"]
    assert outcomes == ["not_modified"] * 4 + ["success"]


def test_metadata_view_lists_the_custody_chain_and_is_itself_recorded(client, agency, stored,
                                                                     db) -> None:
    body, _ = stored
    client.get(content_url(body), headers=agency.headers("advocate")
               | {"Range": "bytes=0-99"}, params={"purpose": "court_preparation"})
    response = client.get(f"/api/v1/evidence/{body['id']}", headers=agency.headers("supervisor"),
                          params={"purpose": "supervision"})
    assert response.status_code == 200
    detail = response.json()
    assert detail["sha256"] == body["sha256"] and detail["original_filename"] == FILENAME
    chain = [(c["action"], c["purpose"], c["byte_range"], c["actor_id"])
             for c in detail["custody"]]
    assert chain == [
        ("upload", None, None, str(agency.users["advocate"].id)),
        ("download", "court_preparation", "0-99", str(agency.users["advocate"].id)),
        ("view", "supervision", None, str(agency.users["supervisor"].id)),
    ]
    audited = list(db.scalars(sa.select(AuditEvent.action).where(
        AuditEvent.object_id == body["id"]).order_by(AuditEvent.seq)))
    assert audited == ["evidence.uploaded", "evidence.downloaded", "evidence.read"]


def test_an_unknown_purpose_is_422(client, agency, stored) -> None:
    body, _ = stored
    response = client.get(f"/api/v1/evidence/{body['id']}", headers=agency.headers("advocate"),
                          params={"purpose": "Fictional Person asked"})
    assert response.status_code == 422
    assert "Fictional Person" not in response.text


def test_incident_listing_is_newest_first_and_audited(client, agency, db) -> None:
    first = uploaded(client, agency, jpeg())
    second = uploaded(client, agency, b"Fictional text message saved by the client.\n",
                      filename="message.txt")
    response = client.get(f"/api/v1/incidents/{agency.incident_id}/evidence",
                          headers=agency.headers("advocate"), params={"limit": 1})
    assert response.status_code == 200
    page = response.json()
    assert [item["id"] for item in page["items"]] == [second["id"]]
    response = client.get(f"/api/v1/incidents/{agency.incident_id}/evidence",
                          headers=agency.headers("advocate"),
                          params={"limit": 1, "cursor": page["next_cursor"]})
    assert [item["id"] for item in response.json()["items"]] == [first["id"]]
    listed = set(db.scalars(sa.select(AuditEvent.object_id).where(
        AuditEvent.action == "evidence.listed", AuditEvent.org_id == agency.org.id)))
    assert listed == {first["id"], second["id"]}
    # A listing is in the audit log, not in each file's chain of custody.
    assert [e.action for e in custody(db, first["id"])] == ["upload"]


def test_text_is_served_as_utf8_text(client, agency) -> None:
    text = "Fictional note: the car was parked outside at 21:40 — again.\n".encode()
    body = uploaded(client, agency, text, filename="note.txt")
    response = client.get(content_url(body), headers=agency.headers("advocate"))
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.content == text
    assert response.headers["content-disposition"].endswith('.txt"')


def test_outside_reach_is_404_and_partners_are_refused(client, agency, stored) -> None:
    body, _ = stored
    for path in (f"/api/v1/evidence/{body['id']}", content_url(body),
                 f"/api/v1/incidents/{agency.incident_id}/evidence"):
        for who in ("colleague", "stranger", "admin"):
            response = client.get(path, headers=agency.headers(who))
            assert response.status_code == 404, (path, who)
            assert response.headers["content-type"].startswith("application/problem+json")
        assert client.get(path, headers=agency.headers("auditor")).status_code == 403
        assert client.get(path, headers=agency.headers("supervisor")).status_code == 200


def test_crypto_shredding_the_client_makes_evidence_unreadable(client, agency, stored,
                                                               db, storage) -> None:
    body, content = stored
    row = db.get(Evidence, UUID(body["id"]))
    assert row is not None
    clients_service.purge_client(db, agency.actor("supervisor"), agency.client_id)
    db.commit()
    for path in (f"/api/v1/evidence/{body['id']}", content_url(body),
                 f"/api/v1/incidents/{agency.incident_id}/evidence"):
        assert client.get(path, headers=agency.headers("supervisor")).status_code == 404
    # The ciphertext is still on disk, and nothing can open it any more.
    [path] = stored_files(storage, agency.org.id)
    assert path.stat().st_size > len(content)
    keys.clear_key_caches()
    with pytest.raises(keys.KeyDestroyed):
        keys.open_keyset_for_client(db, org_id=row.org_id, client_id=row.client_id,
                                    purpose=service.KEYSET_PURPOSE, bound_to=row.id,
                                    sealed=row.sealed_keyset)


def test_a_keyset_or_file_moved_to_another_evidence_row_does_not_open(client, agency, db,
                                                                    storage) -> None:
    one = db.get(Evidence, UUID(uploaded(client, agency, jpeg())["id"]))
    two = db.get(Evidence, UUID(uploaded(client, agency, jpeg())["id"]))
    assert one is not None and two is not None
    with pytest.raises(keys.DecryptionError):
        keys.open_keyset_for_client(db, org_id=two.org_id, client_id=two.client_id,
                                    purpose=service.KEYSET_PURPOSE, bound_to=two.id,
                                    sealed=one.sealed_keyset)
    keyset = keys.open_keyset_for_client(db, org_id=one.org_id, client_id=one.client_id,
                                         purpose=service.KEYSET_PURPOSE, bound_to=one.id,
                                         sealed=one.sealed_keyset)
    # one's keyset with one's ciphertext, read as if it were two's: the stream's
    # associated data (the evidence id) no longer matches.
    reader = decrypting_reader(storage, one.storage_key, keyset,
                               service.content_associated_data(two.id))
    with pytest.raises(tink.TinkError):
        reader.read(10)
    reader.close()


def test_a_file_altered_on_disk_is_an_integrity_failure_not_data(client, agency, stored,
                                                                 storage, db) -> None:
    body, _ = stored
    [path] = stored_files(storage, agency.org.id)
    data = bytearray(path.read_bytes())
    data[100] ^= 0x01
    path.write_bytes(bytes(data))
    response = client.get(content_url(body), headers=agency.headers("advocate"))
    assert response.status_code == 500
    assert response.json()["type"].endswith("integrity-failure")
