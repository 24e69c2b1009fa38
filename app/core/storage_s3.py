"""The S3 backend of :class:`app.core.storage.Storage`: Amazon S3, MinIO or any server that
speaks the S3 API, through boto3.

- ``create`` buffers one part (8 MiB) at a time: an object that fits in one part is sent
  with a single PutObject when its block ends; a larger one becomes a multipart upload
  whose parts are sent as they fill, and which is completed only when the block ends
  without an error. Until then nothing is visible under the key; on an error the upload
  is aborted (its parts are deleted), and an upload a killed process left behind is
  aborted by :meth:`S3Storage.discard_incomplete`.
- An object is never replaced. The publishing request (PutObject or
  CompleteMultipartUpload) carries ``If-None-Match: *``, so the server itself refuses a
  key that already exists (Amazon S3 and recent MinIO do; the refusal is 412). A server
  that answers that header with 501 Not Implemented gets a HEAD check right before each
  publish instead, which leaves a race: two writers of one key between the HEAD and the
  publish could both succeed, the later replacing the earlier. Keys are fresh random ids,
  so two writers of one key are not expected; the conditional write is what makes it
  impossible rather than unlikely. (A server that silently ignores the header has the
  same race: ``create`` always HEADs the key first, as the local backend checks for its
  file, so a taken key is refused before any bytes are sent.) The other way round, a
  publish whose answer was lost and that boto3 retries can be refused as taken although
  its first attempt stored the object: the write then fails like any other (the caller
  makes no record of it) and the daily sweep removes the object as an orphan.
- ``open`` is a GET (ranged when ``start`` or ``length`` is given) whose body is read as
  it is consumed; ``size`` and ``exists`` are HEADs; ``objects`` pages through
  ListObjectsV2; ``discard_incomplete`` pages through ListMultipartUploads.

Every key lives under an optional prefix of the bucket (``s3://bucket/some/prefix``), so
several deployments can share a bucket. Objects are ciphertext (see
``app.core.storage.encrypting_writer``): the server never sees a file's content, and
nothing here logs a key, a bucket or a server message.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO

import boto3
import structlog
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError, IncompleteReadError
from botocore.exceptions import ConnectionError as BotoConnectionError

from app.core.storage import (
    _KEY,
    READ_CHUNK,
    ObjectExists,
    ObjectMissing,
    ObjectWriter,
    StorageUnavailable,
    StoredObject,
    check_key,
)

log = structlog.get_logger("app.storage")

MIB = 1024 * 1024
PART_SIZE = 8 * MIB
MIN_PART_SIZE = 5 * MIB  # S3's smallest part (all but the last)


def make_client(*, endpoint_url: str | None = None, region: str | None = None,
                access_key_id: str | None = None, secret_access_key: str | None = None,
                max_pool_connections: int = 10, connect_timeout: float = 5,
                read_timeout: float = 60, max_attempts: int = 3) -> Any:
    """An S3 client (thread-safe). Without keys, boto3's standard credential chain is used
    (environment, shared files, container or instance role). A custom endpoint (MinIO)
    is addressed by path (``http://host:9000/bucket/key``)."""
    config = Config(
        region_name=region or ("us-east-1" if endpoint_url else None),
        signature_version="s3v4",
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"mode": "standard", "max_attempts": max_attempts},
        max_pool_connections=max_pool_connections,
        s3={"addressing_style": "path" if endpoint_url else "auto"},
        # Checksums only where the API requires them: several S3-compatible servers refuse
        # the CRC headers newer boto3 sends by default, and every object is authenticated
        # end to end by its streaming AEAD anyway (each 1 MiB segment and the stream's end).
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    global _session
    # Not boto3's default session: a session is not safe to use from several threads at
    # once, so clients are made from this one under a lock (it keeps the loaded API model,
    # which makes each further client quick). A client itself is thread-safe.
    with _session_lock:
        if _session is None:
            _session = boto3.session.Session()
        return _session.client(
            "s3", endpoint_url=endpoint_url, aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key, config=config)


_session: Any = None
_session_lock = threading.Lock()


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _not_found(exc: ClientError) -> bool:
    return _code(exc) in ("404", "NoSuchKey", "NotFound") or _status(exc) == 404


def _precondition_failed(exc: ClientError) -> bool:
    return _code(exc) == "PreconditionFailed" or _status(exc) == 412


def _not_implemented(exc: ClientError) -> bool:
    return _code(exc) == "NotImplemented" or _status(exc) == 501


@contextmanager
def _reachable() -> Iterator[None]:
    """Connections refused, cut or timed out, and server errors left after boto3's retries,
    become :class:`StorageUnavailable` (503). Refusals (403, 404, 412) stay as they are."""
    try:
        yield
    except (BotoConnectionError, HTTPClientError, IncompleteReadError) as exc:
        raise StorageUnavailable() from exc
    except ClientError as exc:
        if _status(exc) >= 500 and not _not_implemented(exc):
            raise StorageUnavailable() from exc
        raise


class _PartWriter(io.RawIOBase):
    """Buffers what is written and sends it in parts of ``part_size`` bytes: at most one
    part (plus the last write) is ever held in memory. ``close`` only stops writes."""

    def __init__(self, storage: S3Storage, key: str) -> None:
        super().__init__()
        self._storage = storage
        self._key = key  # the full key in the bucket
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self.written = 0

    def writable(self) -> bool:
        return True

    @property
    def buffered(self) -> int:
        """Bytes held in memory, not yet sent (less than one part after each write)."""
        return len(self._buffer)

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        if self.closed:
            raise ValueError("write to a finished object")
        self._buffer += data
        size = self._storage.part_size
        while len(self._buffer) >= size:
            with memoryview(self._buffer) as view:
                part = bytes(view[:size])  # one copy (a slice of the bytearray is another)
            del self._buffer[:size]
            self._send_part(part)
        count = len(memoryview(data))
        self.written += count
        return count

    def _send_part(self, body: bytes) -> None:
        client, bucket = self._storage.client, self._storage.bucket
        with _reachable():
            if self._upload_id is None:
                self._upload_id = client.create_multipart_upload(
                    Bucket=bucket, Key=self._key)["UploadId"]
            number = len(self._parts) + 1
            answer = client.upload_part(Bucket=bucket, Key=self._key,
                                        UploadId=self._upload_id, PartNumber=number, Body=body)
        self._parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    def publish(self) -> None:
        """Make the object visible: PutObject, or the last part and CompleteMultipartUpload."""
        if self._upload_id is not None and self._buffer:
            self._send_part(bytes(self._buffer))
            self._buffer.clear()
        self._storage._publish(self._key, self._upload_id, self._parts, self._buffer)

    def abort(self) -> None:
        """Delete what was sent (the multipart upload's parts); nothing becomes visible."""
        self._buffer.clear()
        if self._upload_id is None:
            return
        try:
            self._storage.client.abort_multipart_upload(
                Bucket=self._storage.bucket, Key=self._key, UploadId=self._upload_id)
        except Exception:  # noqa: BLE001 - discard_incomplete aborts what is left here
            log.error("storage_abort_failed", exc_info=True)


class _Body(io.RawIOBase):
    """A GET's streaming body as a raw stream (read as it is consumed)."""

    def __init__(self, body: Any) -> None:
        super().__init__()
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        with _reachable():
            data = self._body.read(len(buffer))
        n = len(data)
        memoryview(buffer)[:n] = data
        return n

    def close(self) -> None:
        if not self.closed:
            self._body.close()  # hands the connection back to the pool
        super().close()


class S3Storage:
    """Objects in an S3 bucket, under ``prefix`` (a folder-like start of every key)."""

    def __init__(self, bucket: str, prefix: str = "", *, client: Any = None,
                 part_size: int = PART_SIZE, probe_timeout: float = 2.0,
                 **client_options: Any) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError("an S3 part is at least 5 MiB")
        self.bucket = bucket
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self.part_size = part_size
        self.client = client or make_client(**client_options)
        self._client_options = client_options
        self._probe_timeout = probe_timeout
        # A client given by the caller is probed as it is.
        self._probe_client: Any = client
        # Cleared the first time the server answers If-None-Match with 501 Not Implemented.
        self.conditional_writes = True

    def _full(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _head(self, full: str) -> dict[str, Any] | None:
        try:
            with _reachable():
                return self.client.head_object(Bucket=self.bucket, Key=full)
        except ClientError as exc:
            if _not_found(exc):
                return None
            raise

    @contextmanager
    def create(self, key: str) -> Iterator[ObjectWriter]:
        full = self._full(key)
        if self._head(full) is not None:
            raise ObjectExists(key)
        writer = _PartWriter(self, full)
        try:
            yield writer
            try:
                writer.publish()
            except ObjectExists as exc:
                raise ObjectExists(key) from exc
        except BaseException:
            writer.abort()
            raise
        finally:
            writer.close()

    def _publish(self, full: str, upload_id: str | None, parts: list[dict[str, Any]],
                 body: bytearray) -> None:
        while True:
            condition = {"IfNoneMatch": "*"} if self.conditional_writes else {}
            if not self.conditional_writes and self._head(full) is not None:
                raise ObjectExists(full)
            try:
                with _reachable():
                    if upload_id is None:
                        self.client.put_object(Bucket=self.bucket, Key=full,
                                               Body=bytes(body), **condition)
                    else:
                        self.client.complete_multipart_upload(
                            Bucket=self.bucket, Key=full, UploadId=upload_id,
                            MultipartUpload={"Parts": parts}, **condition)
                return
            except ClientError as exc:
                if condition and _precondition_failed(exc):
                    raise ObjectExists(full) from exc
                if condition and _not_implemented(exc):
                    log.warning("storage_conditional_writes_unsupported")
                    self.conditional_writes = False
                    continue  # once more, after a HEAD check
                raise

    def open(self, key: str, start: int = 0, length: int | None = None) -> BinaryIO:
        full = self._full(key)
        if length is not None and length <= 0:
            if self._head(full) is None:
                raise ObjectMissing(key)
            return io.BytesIO(b"")
        request: dict[str, Any] = {"Bucket": self.bucket, "Key": full}
        if start or length is not None:
            end = "" if length is None else str(start + length - 1)
            request["Range"] = f"bytes={start}-{end}"
        try:
            with _reachable():
                answer = self.client.get_object(**request)
        except ClientError as exc:
            if _not_found(exc):
                raise ObjectMissing(key) from exc
            if _code(exc) == "InvalidRange" or _status(exc) == 416:
                return io.BytesIO(b"")  # starts at or past the end, as a file would
            raise
        return io.BufferedReader(_Body(answer["Body"]), READ_CHUNK)  # type: ignore[return-value]

    def size(self, key: str) -> int:
        head = self._head(self._full(key))
        if head is None:
            raise ObjectMissing(key)
        return int(head["ContentLength"])

    def exists(self, key: str) -> bool:
        return self._head(self._full(key)) is not None

    def delete(self, key: str) -> bool:
        full = self._full(key)
        # DeleteObject answers 204 whether or not the key existed: HEAD says which.
        if self._head(full) is None:
            return False
        with _reachable():
            self.client.delete_object(Bucket=self.bucket, Key=full)
        return True

    def objects(self, prefix: str = "") -> Iterator[StoredObject]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + prefix)
        for page in _pages(pages):
            for item in page.get("Contents", []):
                key = item["Key"][len(self.prefix):]
                if not _KEY.match(key):
                    continue  # not ours (another tool's object under the prefix)
                yield StoredObject(key, int(item["Size"]), _utc(item["LastModified"]))

    def discard_incomplete(self, older_than: timedelta) -> int:
        cutoff = datetime.now(UTC) - older_than
        removed = 0
        pages = self.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=self.prefix)
        for page in _pages(pages):
            for upload in page.get("Uploads", []):
                if _utc(upload["Initiated"]) >= cutoff:
                    continue
                with _reachable(), suppress(ClientError):  # finished or aborted meanwhile
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                    removed += 1
        return removed

    def probe(self) -> None:
        """Raise unless the bucket answers (HEAD bucket, one try, short timeouts): for
        ``/readyz``."""
        if self._probe_client is None:
            options = dict(self._client_options)
            options.update(connect_timeout=self._probe_timeout,
                           read_timeout=self._probe_timeout, max_attempts=1,
                           max_pool_connections=2)
            self._probe_client = make_client(**options)
        self._probe_client.head_bucket(Bucket=self.bucket)


def _pages(pages: Any) -> Iterator[dict[str, Any]]:
    iterator = iter(pages)
    while True:
        with _reachable():
            page = next(iterator, None)
        if page is None:
            return
        yield page


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
