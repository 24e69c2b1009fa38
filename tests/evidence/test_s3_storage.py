"""Evidence kept in S3: the settings that choose the backend, and an upload and ranged
download through the API with ``ADVOCASE_STORAGE_URL`` pointing at a real S3-compatible
server (moto's, on loopback)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from app.core.storage import LocalStorage, get_storage
from app.core.storage_s3 import S3Storage, make_client
from app.evidence import service as evidence_service
from app.settings import Settings
from tests.evidence.conftest import jpeg, stored_files, uploaded
from tests.support.s3 import S3Server

MIB = 1024 * 1024


def make(tmp_path: Path, **values: str) -> Settings:
    return Settings(_env_file=None, var_dir=tmp_path / "var", **values)  # type: ignore[call-arg]


@pytest.mark.parametrize(("url", "field_error"), [
    ("https://bucket.example/prefix", "s3://bucket"),
    ("s3://", "bucket name"),
    ("s3://Upper-Case", "bucket name"),
    ("s3://ab", "bucket name"),
    ("s3://bucket/../escape", "prefix"),
    ("s3://bucket/with space", "prefix"),
])
def test_a_bad_storage_url_is_refused_naming_the_setting(tmp_path, url, field_error) -> None:
    with pytest.raises(ValidationError) as caught:
        make(tmp_path, storage_url=url)
    [error] = caught.value.errors()
    assert error["loc"] == ("storage_url",)
    assert field_error in error["msg"] and "ADVOCASE_STORAGE_URL" in error["msg"]


@pytest.mark.parametrize("given", [{"s3_access_key_id": "fictional-id"},
                                   {"s3_secret_access_key": "fictional-secret"}])
def test_s3_keys_come_as_a_pair(tmp_path, given) -> None:
    with pytest.raises(ValidationError) as caught:
        make(tmp_path, storage_url="s3://advocase-files", **given)
    assert "ADVOCASE_S3_ACCESS_KEY_ID" in str(caught.value)
    assert "fictional-secret" not in str(caught.value)


def test_the_configured_backend_is_chosen_and_kept_per_configuration(tmp_path) -> None:
    local = make(tmp_path)
    assert isinstance(get_storage(local), LocalStorage)
    s3 = make(tmp_path, storage_url="s3://advocase-files/agency-7/", s3_region="eu-west-1",
              s3_endpoint_url="http://127.0.0.1:9", s3_access_key_id="fictional-id",
              s3_secret_access_key="fictional-secret")
    storage = get_storage(s3)
    assert isinstance(storage, S3Storage)
    assert (storage.bucket, storage.prefix) == ("advocase-files", "agency-7/")
    assert storage.client.meta.region_name == "eu-west-1"
    assert storage.client.meta.endpoint_url == "http://127.0.0.1:9"
    assert get_storage(s3.model_copy()) is storage
    other = s3.model_copy(update={"storage_url": "s3://advocase-files/agency-8"})
    assert get_storage(other) is not storage
    assert "fictional-secret" not in repr(s3)


def test_evidence_upload_and_ranged_download_through_s3(s3_server: S3Server, app_with,
                                                        agency, storage) -> None:
    prefix = f"e2e-{uuid4().hex[:12]}"
    app = app_with(**s3_server.settings_changes(prefix))
    content = jpeg(2 * MIB + 12_345)  # three 1 MiB segments: ranges cross them
    with TestClient(app, raise_server_exceptions=False) as client:
        body = uploaded(client, agency, content)
        [key] = s3_server.keys(prefix + "/")
        assert key.startswith(f"{prefix}/evidence/{agency.org.id}/")
        stored = s3_server.client.get_object(Bucket=s3_server.bucket, Key=key)["Body"].read()
        assert content[11:75] not in stored and len(stored) > len(content)
        assert stored_files(storage, agency.org.id) == []  # nothing in the local folder

        url = f"/api/v1/evidence/{body['id']}/content"
        whole = client.get(url, headers=agency.headers("advocate"))
        assert whole.status_code == 200, whole.text
        assert whole.content == content
        assert hashlib.sha256(whole.content).hexdigest() == body["sha256"]
        ranged = client.get(url, headers=agency.headers("advocate")
                            | {"Range": "bytes=1048000-2100000"})
        assert ranged.status_code == 206, ranged.text
        assert ranged.content == content[1048000:2100001]
        assert ranged.headers["content-range"] == f"bytes 1048000-2100000/{len(content)}"

        ready = client.get("/readyz").json()
        assert ready["checks"]["storage"]["status"] == "ok"
    assert s3_server.pending_uploads(prefix + "/") == []


def test_a_download_while_s3_is_unreachable_is_503_and_records_nothing(
        s3_server: S3Server, app_with, agency, db) -> None:
    prefix = f"e2e-{uuid4().hex[:12]}"
    app = app_with(**s3_server.settings_changes(prefix))
    with TestClient(app, raise_server_exceptions=False) as client:
        body = uploaded(client, agency, jpeg(64 * 1024))
        storage = get_storage(app.state.settings)
        assert isinstance(storage, S3Storage)
        storage.client = make_client(**s3_server.client_options()
                                     | {"endpoint_url": "http://127.0.0.1:1", "max_attempts": 1})
        response = client.get(f"/api/v1/evidence/{body['id']}/content",
                              headers=agency.headers("advocate"))
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["retry-after"] == "5"
    assert response.json()["type"].endswith("storage-unavailable")
    assert "127.0.0.1" not in response.text
    actions = [e.action for e in evidence_service.custody_log(db, UUID(body["id"]))]
    assert actions == ["upload"]  # the failed download left no custody event


def test_readiness_reports_an_unreachable_bucket_without_naming_it(s3_server: S3Server,
                                                                   app_with) -> None:
    changes = s3_server.settings_changes("x") | {"storage_url": "s3://advocase-missing-bucket"}
    with TestClient(app_with(**changes)) as client:
        response = client.get("/readyz")
    assert response.status_code == 200  # reported, not a readiness condition
    storage = response.json()["checks"]["storage"]
    assert (storage["status"], storage["error"]) == ("down", "ClientError")
    assert "advocase-missing-bucket" not in response.text
    assert s3_server.endpoint_url not in response.text
