"""The storage interface, on both backends: the local folder and S3 (against a real
S3-compatible server, moto's, on loopback). Atomic publish, nothing left by a failed write
(no temporary file, no pending multipart upload), no overwrite, ranges, listing, clean-up
of abandoned writes, streaming encryption, and deletion on rollback. What only one backend
has (file modes, temporary names, conditional writes) is tested on that one."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import tink
from botocore.awsrequest import AWSResponse
from sqlmodel import Session

from app.core.storage import (
    LocalStorage,
    ObjectExists,
    ObjectMissing,
    Storage,
    StorageUnavailable,
    check_key,
    decrypting_reader,
    delete_on_rollback,
    encrypting_writer,
    new_object_keyset,
)
from app.core.storage_s3 import MIN_PART_SIZE, S3Storage
from tests.support.s3 import S3Server

MIB = 1024 * 1024
# Over one S3 part: such a write is a multipart upload on the S3 backend.
MULTIPART = MIN_PART_SIZE + MIB + 123


def files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@dataclass
class Backend:
    """A storage and a look at what it physically holds."""

    storage: Storage
    leftovers: Callable[[], list[str]]  # published objects, temporary files, pending uploads
    raw: Callable[[str], bytes]  # an object's stored bytes
    replace_raw: Callable[[str, bytes], None]  # what an attacker with bucket access does


@pytest.fixture(params=["local", "s3"])
def backend(request, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "local":
        local = LocalStorage(tmp_path / "storage")
        yield Backend(local, lambda: files(local.root) if local.root.exists() else [],
                      lambda key: (local.root / key).read_bytes(),
                      lambda key, data: (local.root / key).write_bytes(data))
        return
    server: S3Server = request.getfixturevalue("s3_server")
    s3 = server.storage()

    def leftovers() -> list[str]:
        return ([k[len(s3.prefix):] for k in server.keys(s3.prefix)]
                + [f"pending:{k[len(s3.prefix):]}" for k in server.pending_uploads(s3.prefix)])

    def raw(key: str) -> bytes:
        return server.client.get_object(Bucket=server.bucket, Key=s3.prefix + key)["Body"].read()

    def replace_raw(key: str, data: bytes) -> None:
        server.client.put_object(Bucket=server.bucket, Key=s3.prefix + key, Body=data)

    yield Backend(s3, leftovers, raw, replace_raw)
    for key in server.keys(s3.prefix):  # the server keeps objects in memory
        server.client.delete_object(Bucket=server.bucket, Key=key)


@pytest.fixture
def local(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "storage")


@pytest.fixture
def s3(s3_server: S3Server) -> S3Storage:
    return s3_server.storage()


# --- the contract, on both backends ---------------------------------------------------------


@pytest.mark.parametrize("size", [100, MULTIPART])
def test_an_object_appears_only_when_its_write_completes(backend, size) -> None:
    storage, key = backend.storage, "evidence/org/ab/object-1"
    content = os.urandom(size)
    with storage.create(key) as out:
        out.write(content[:size - 10])
        assert not storage.exists(key)
        assert list(storage.objects()) == []
        with pytest.raises(ObjectMissing):
            storage.open(key)
        out.write(content[size - 10:])
    assert backend.leftovers() == [key]
    assert storage.open(key).read() == content
    assert storage.size(key) == size
    assert [(o.key, o.size) for o in storage.objects()] == [(key, size)]


@pytest.mark.parametrize("size", [100_000, MULTIPART])
def test_a_failed_write_leaves_nothing(backend, size) -> None:
    with pytest.raises(RuntimeError), backend.storage.create("evidence/org/ab/failed") as out:
        out.write(b"x" * size)
        raise RuntimeError("fictional failure mid-write")
    assert backend.leftovers() == []
    assert not backend.storage.exists("evidence/org/ab/failed")


@pytest.mark.parametrize("size", [100, MULTIPART])
def test_an_object_is_never_replaced(backend, size) -> None:
    storage, key = backend.storage, "evidence/org/ab/original"
    with storage.create(key) as out:
        out.write(b"original bytes")
    with pytest.raises(ObjectExists), storage.create(key) as out:
        out.write(b"r" * size)
    assert storage.open(key).read() == b"original bytes"
    assert backend.leftovers() == [key]


@pytest.mark.parametrize("size", [100, MULTIPART])
def test_an_object_that_appears_during_a_write_is_not_replaced(backend, size) -> None:
    """Two writers of one key: the first to publish keeps it, the other is refused and
    leaves nothing (the local backend links without replacing; S3 publishes with
    If-None-Match: *)."""
    storage, key = backend.storage, "evidence/org/ab/raced"
    with pytest.raises(ObjectExists), storage.create(key) as slow:
        slow.write(b"s" * size)
        with storage.create(key) as fast:
            fast.write(b"the first to finish")
    assert storage.open(key).read() == b"the first to finish"
    assert backend.leftovers() == [key]


def test_ranges_listing_and_delete(backend) -> None:
    storage = backend.storage
    for name in ("b", "a", "c"):
        with storage.create(f"evidence/org/{name}") as out:
            out.write(bytes(range(256)))
    with storage.create("reports/org/x") as out:
        out.write(b"report")
    assert storage.open("evidence/org/a", start=10, length=5).read() == bytes(range(10, 15))
    assert storage.open("evidence/org/a", start=250).read() == bytes(range(250, 256))
    assert storage.open("evidence/org/a", start=250, length=100).read() == bytes(range(250, 256))
    assert storage.open("evidence/org/a", start=256).read() == b""
    assert storage.open("evidence/org/a", start=3, length=0).read() == b""
    listed = list(storage.objects("evidence/"))
    assert [o.key for o in listed] == ["evidence/org/a", "evidence/org/b", "evidence/org/c"]
    assert all(o.size == 256 for o in listed)
    assert [o.key for o in storage.objects("reports/")] == ["reports/org/x"]
    assert storage.delete("evidence/org/b") is True
    assert storage.delete("evidence/org/b") is False
    assert not storage.exists("evidence/org/b")
    with pytest.raises(ObjectMissing):
        storage.open("evidence/org/b")
    with pytest.raises(ObjectMissing):
        storage.open("evidence/org/b", start=5, length=5)
    with pytest.raises(ObjectMissing):
        storage.size("evidence/org/b")
    assert backend.leftovers() == ["evidence/org/a", "evidence/org/c", "reports/org/x"]


def test_a_multipart_object_reads_back_whole_and_across_parts(backend) -> None:
    content = os.urandom(2 * MIN_PART_SIZE + 777)
    with backend.storage.create("evidence/org/big") as out:
        for start in range(0, len(content), 300_000):
            out.write(content[start:start + 300_000])
    assert backend.raw("evidence/org/big") == content
    edge = MIN_PART_SIZE - 5
    assert backend.storage.open("evidence/org/big", start=edge, length=10).read() \
        == content[edge:edge + 10]


@pytest.mark.parametrize("key", ["../escape", "/absolute", "evidence/../../x", "Evidence/X",
                                 "evidence//x", "", "evidence/name with space"])
def test_keys_are_ids_only(backend, key) -> None:
    with pytest.raises(ValueError):
        check_key(key)
    with pytest.raises(ValueError), backend.storage.create(key):
        pass
    with pytest.raises(ValueError):
        backend.storage.open(key)
    assert backend.leftovers() == []


def test_streaming_encryption_round_trip_and_binding(backend) -> None:
    storage, keyset = backend.storage, new_object_keyset()
    plaintext = os.urandom(MULTIPART + 17)  # several 1 MiB segments, and two S3 parts
    with encrypting_writer(storage, "evidence/org/enc", keyset, b"evidence-id-1") as out:
        for start in range(0, len(plaintext), 100_000):
            out.write(plaintext[start:start + 100_000])
    ciphertext = backend.raw("evidence/org/enc")
    assert plaintext[:64] not in ciphertext and len(ciphertext) > len(plaintext)
    with decrypting_reader(storage, "evidence/org/enc", keyset, b"evidence-id-1") as reader:
        assert reader.read() == plaintext
    with pytest.raises(tink.TinkError), \
            decrypting_reader(storage, "evidence/org/enc", keyset, b"evidence-id-2") as reader:
        reader.read()
    with pytest.raises(tink.TinkError), \
            decrypting_reader(storage, "evidence/org/enc", new_object_keyset(),
                              b"evidence-id-1") as reader:
        reader.read()


def test_a_truncated_ciphertext_does_not_open(backend) -> None:
    keyset = new_object_keyset()
    with encrypting_writer(backend.storage, "evidence/org/t", keyset, b"ad") as out:
        out.write(os.urandom(2 * MIB))
    backend.replace_raw("evidence/org/t", backend.raw("evidence/org/t")[: MIB + 100])
    with pytest.raises(tink.TinkError), decrypting_reader(backend.storage, "evidence/org/t",
                                                          keyset, b"ad") as reader:
        reader.read()


def test_an_altered_byte_of_ciphertext_does_not_open(backend) -> None:
    keyset = new_object_keyset()
    with encrypting_writer(backend.storage, "evidence/org/m", keyset, b"ad") as out:
        out.write(os.urandom(3 * MIB))
    tampered = bytearray(backend.raw("evidence/org/m"))
    tampered[2 * MIB + 5] ^= 0x01  # in the third segment: the first two still open
    backend.replace_raw("evidence/org/m", bytes(tampered))
    with decrypting_reader(backend.storage, "evidence/org/m", keyset, b"ad") as reader:
        assert len(reader.read(MIB)) == MIB
        with pytest.raises(tink.TinkError):
            reader.read()


@pytest.mark.parametrize("size", [1_500_000, MULTIPART])
def test_an_encrypted_write_that_fails_leaves_nothing(backend, size) -> None:
    with pytest.raises(RuntimeError), encrypting_writer(backend.storage, "evidence/org/f",
                                                        new_object_keyset(), b"ad") as out:
        out.write(os.urandom(size))
        raise RuntimeError("fictional failure")
    assert backend.leftovers() == []


def test_delete_on_rollback(db: Session, backend) -> None:
    storage = backend.storage
    for name in ("kept", "savepoint", "rolled-back"):
        with storage.create(f"evidence/org/{name}") as out:
            out.write(b"ciphertext")
    delete_on_rollback(db, storage, "evidence/org/kept")
    db.commit()
    delete_on_rollback(db, storage, "evidence/org/rolled-back")
    nested = db.begin_nested()
    nested.rollback()  # a savepoint inside the unit of work: it goes on
    assert storage.exists("evidence/org/rolled-back")
    db.rollback()
    assert storage.exists("evidence/org/kept")
    assert not storage.exists("evidence/org/rolled-back")


def test_probe(backend) -> None:
    backend.storage.probe()


# --- the local backend ----------------------------------------------------------------------


def test_local_writes_under_a_temporary_name_and_files_are_private(local) -> None:
    key = "evidence/org/ab/object-1"
    with local.create(key) as out:
        out.write(b"first part ")
        [temporary] = files(local.root)
        assert Path(temporary).name.startswith(".incomplete-")
    assert files(local.root) == [key]
    assert (local.root / key).stat().st_mode & 0o777 == 0o600


def test_local_abandoned_writes_are_discarded_once_old(local) -> None:
    folder = local.root / "evidence" / "org"
    folder.mkdir(parents=True)
    old, fresh = folder / ".incomplete-a.1", folder / ".incomplete-b.2"
    old.write_bytes(b"half")
    fresh.write_bytes(b"half")
    then = time.time() - 7200
    os.utime(old, (then, then))
    assert local.discard_incomplete(timedelta(hours=1)) == 1
    assert not old.exists() and fresh.exists()
    assert list(local.objects()) == []  # incomplete writes are never listed


def test_local_probe_fails_without_its_folder(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    with pytest.raises(OSError):
        LocalStorage(not_a_folder).probe()


# --- the S3 backend -------------------------------------------------------------------------


def test_s3_abandoned_uploads_are_aborted_once_old_and_only_under_its_prefix(
        s3_server: S3Server, s3: S3Storage) -> None:
    """A process killed mid-write leaves a multipart upload: never listed as an object,
    aborted by discard_incomplete once older than the grace period. Another deployment's
    uploads (another prefix of the bucket) are left alone."""
    client, bucket = s3_server.client, s3_server.bucket
    mine = client.create_multipart_upload(Bucket=bucket, Key=s3.prefix + "evidence/org/half")
    client.upload_part(Bucket=bucket, Key=s3.prefix + "evidence/org/half", PartNumber=1,
                       UploadId=mine["UploadId"], Body=b"half a file")
    other = s3_server.storage()
    theirs = client.create_multipart_upload(Bucket=bucket, Key=other.prefix + "evidence/x")
    # moto reports one fixed initiation time (in 2010) for every upload: the grace periods
    # are set around the age the server reports.
    [upload] = client.list_multipart_uploads(Bucket=bucket, Prefix=s3.prefix)["Uploads"]
    age = datetime.now(UTC) - upload["Initiated"]
    try:
        assert list(s3.objects()) == []
        assert s3.discard_incomplete(age + timedelta(hours=1)) == 0  # too recent
        assert s3_server.pending_uploads(s3.prefix) == [s3.prefix + "evidence/org/half"]
        assert s3.discard_incomplete(age - timedelta(hours=1)) == 1
        assert s3_server.pending_uploads(s3.prefix) == []
        assert s3_server.pending_uploads(other.prefix) == [other.prefix + "evidence/x"]
    finally:
        client.abort_multipart_upload(Bucket=bucket, Key=other.prefix + "evidence/x",
                                      UploadId=theirs["UploadId"])


def test_s3_parts_reach_the_server_while_the_write_goes_on(s3_server: S3Server,
                                                          s3: S3Storage) -> None:
    """Never the whole object in memory: less than one part is held after each write, and
    the full parts are already on the server (in an upload nobody can read yet)."""
    chunk, written = os.urandom(700_000), 0
    full = s3.prefix + "evidence/org/streamed"
    with s3.create("evidence/org/streamed") as out:
        while written < 3 * MIN_PART_SIZE + 123:
            out.write(chunk)
            written += len(chunk)
            assert out.buffered < MIN_PART_SIZE
        assert out.buffered == written % MIN_PART_SIZE
        [upload] = s3_server.client.list_multipart_uploads(
            Bucket=s3_server.bucket, Prefix=full)["Uploads"]
        parts = s3_server.client.list_parts(Bucket=s3_server.bucket, Key=full,
                                            UploadId=upload["UploadId"])["Parts"]
        assert [p["Size"] for p in parts] == [MIN_PART_SIZE] * 3
        assert not s3.exists("evidence/org/streamed")
    assert s3.size("evidence/org/streamed") == written
    assert s3_server.pending_uploads(s3.prefix) == []


def test_s3_keys_live_under_the_prefix(s3_server: S3Server) -> None:
    nested = s3_server.storage("/agency-7/files/")
    with nested.create("evidence/org/a") as out:
        out.write(b"x")
    assert nested.prefix == "agency-7/files/"
    assert s3_server.keys("agency-7/") == ["agency-7/files/evidence/org/a"]
    assert [o.key for o in nested.objects()] == ["evidence/org/a"]
    assert nested.delete("evidence/org/a") is True


class _Answer:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Any:
        yield self._body


def refuse_conditional_writes(s3: S3Storage) -> list[str]:
    """Make the server answer 501 Not Implemented to any request carrying If-None-Match,
    as an S3-compatible server without conditional writes does. Returns what was refused."""
    refused: list[str] = []
    body = (b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>NotImplemented</Code>"
            b"<Message>A header you provided implies functionality that is not "
            b"implemented</Message></Error>")

    def answer(request: Any, **_: Any) -> AWSResponse | None:
        if "If-None-Match" not in request.headers:
            return None
        refused.append(request.method)
        return AWSResponse(request.url, 501, {"Content-Type": "application/xml"},
                           _Answer(body))

    s3.client.meta.events.register_first("before-send.s3", answer)
    return refused


@pytest.mark.parametrize("size", [100, MULTIPART])
def test_s3_without_conditional_writes_checks_before_publishing(s3_server: S3Server,
                                                                size) -> None:
    s3 = s3_server.storage(own_client=True)
    refused = refuse_conditional_writes(s3)
    with s3.create("evidence/org/a") as out:
        out.write(b"a" * size)
    assert refused and s3.conditional_writes is False
    assert s3.open("evidence/org/a").read() == b"a" * size
    # The HEAD before publishing catches an object that appeared during the write.
    with pytest.raises(ObjectExists), s3.create("evidence/org/b") as slow:
        slow.write(b"s" * size)
        with s3.create("evidence/org/b") as fast:
            fast.write(b"first")
    assert s3.open("evidence/org/b").read() == b"first"
    assert s3_server.pending_uploads(s3.prefix) == []
    assert s3_server.keys(s3.prefix) == [s3.prefix + "evidence/org/a",
                                         s3.prefix + "evidence/org/b"]


def test_s3_unreachable_is_storage_unavailable(s3_server: S3Server) -> None:
    options = s3_server.client_options() | {"endpoint_url": "http://127.0.0.1:1",
                                            "max_attempts": 1, "connect_timeout": 1}
    down = S3Storage(s3_server.bucket, "x", **options)
    with pytest.raises(StorageUnavailable):
        down.exists("evidence/org/a")
    with pytest.raises(StorageUnavailable):
        down.open("evidence/org/a")
    with pytest.raises(StorageUnavailable), down.create("evidence/org/a") as out:
        out.write(b"never stored")
    with pytest.raises(StorageUnavailable):
        list(down.objects())
    with pytest.raises(StorageUnavailable):
        down.discard_incomplete(timedelta(hours=1))
    assert StorageUnavailable().to_response().status_code == 503


def test_s3_server_errors_after_retries_are_storage_unavailable(s3_server: S3Server) -> None:
    s3 = S3Storage(s3_server.bucket, "x", **s3_server.client_options() | {"max_attempts": 1})
    body = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message>" \
           b"</Error>"
    s3.client.meta.events.register_first(
        "before-send.s3", lambda request, **_: AWSResponse(
            request.url, 503, {"Content-Type": "application/xml"}, _Answer(body)))
    with pytest.raises(StorageUnavailable):
        s3.size("evidence/org/a")
    with pytest.raises(StorageUnavailable), s3.create("evidence/org/b"):
        pass


def test_s3_probe_fails_for_a_missing_bucket(s3_server: S3Server) -> None:
    missing = S3Storage("advocase-no-such-bucket", **s3_server.client_options())
    with pytest.raises(Exception) as caught:
        missing.probe()
    assert type(caught.value).__name__ == "ClientError"


def test_s3_part_size_is_at_least_s3s_minimum(s3_server: S3Server) -> None:
    with pytest.raises(ValueError):
        s3_server.storage(part_size=MIN_PART_SIZE - 1)
