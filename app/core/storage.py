"""Blob storage for evidence files (and later reports): one small interface, a local backend,
and encryption of each object with Tink streaming AEAD.

:class:`Storage` is what domains use; :class:`LocalStorage` keeps objects as files under
``ADVOCASE_STORAGE_DIR``; :class:`app.core.storage_s3.S3Storage` keeps them in an S3 bucket
(Amazon S3, MinIO) when ``ADVOCASE_STORAGE_URL`` is ``s3://bucket/prefix``. The interface
is small on purpose: multipart upload, ranged GET, HEAD, DELETE, ListObjectsV2 and the
abort of stale uploads are all an object store needs.

Writes are atomic: an object is written under a temporary name in its final folder, the
file is fsynced, linked to its final name (an existing object is never replaced) and the
folder fsynced. A crash or an error mid-write leaves no object under the final name; the
temporary file is removed on error, and one left by a killed process is removed by
:meth:`Storage.discard_incomplete`. Keys are ids only (never a file name a person gave).

What is stored is never plaintext: :func:`encrypting_writer` seals the stream with a
streaming-AEAD keyset (AES256_GCM_HKDF_1MB: 1 MiB segments, each authenticated, the end
of the stream too) made for one object by :func:`new_object_keyset`; the caller keeps that
keyset wrapped under the owner's key (see ``app.core.keys.seal_keyset_for_client``).
"""

from __future__ import annotations

import io
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import structlog
import tink
from sqlalchemy import event
from sqlalchemy.orm import Session
from tink import streaming_aead

from app.core.errors import DomainError
from app.settings import Settings, get_settings

streaming_aead.register()
log = structlog.get_logger("app.storage")

# Lower-case ids and short machine words separated by "/": no "..", no absolute paths,
# nothing a person typed.
_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}(/[a-z0-9][a-z0-9._-]{0,127}){0,7}$")
_TEMP_PREFIX = ".incomplete-"
READ_CHUNK = 1024 * 1024


class ObjectExists(Exception):
    """An object already has this key: stored objects are never replaced."""


class ObjectMissing(Exception):
    """No object has this key."""


class StorageUnavailable(DomainError):
    """The storage did not answer (a remote one: refused or timed-out connections, errors
    of the server after retries): answered 503, to be tried again."""

    status, kind, title = 503, "storage-unavailable", "File storage unavailable"

    def __init__(self) -> None:
        super().__init__("The file storage did not answer. Nothing was stored or changed; "
                         "try again in a moment.", headers={"Retry-After": "5"})


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    modified_at: datetime


def check_key(key: str) -> str:
    if not _KEY.match(key) or ".." in key:
        raise ValueError("a storage key is lower-case ids separated by '/'")
    return key


class ObjectWriter(Protocol):
    """A write-only stream for a new object; it becomes visible only when its ``create``
    block ends without an error. ``close()`` (which Tink calls on the stream it wraps)
    does not publish the object."""

    def write(self, data: bytes | bytearray | memoryview) -> int: ...

    def writable(self) -> bool: ...

    def close(self) -> None: ...

    @property
    def closed(self) -> bool: ...

    def flush(self) -> None: ...


class Storage(Protocol):
    """Where blobs live. Objects are written once and never modified."""

    def create(self, key: str) -> AbstractContextManager[ObjectWriter]:
        """``with storage.create(key) as out: out.write(...)`` — published atomically at
        the end of the block, discarded if it raises. :class:`ObjectExists` if taken."""
        ...

    def open(self, key: str, start: int = 0, length: int | None = None) -> BinaryIO:
        """A readable stream of the object, or of ``length`` bytes from ``start``."""
        ...

    def size(self, key: str) -> int: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> bool:
        """Remove an object. For clean-up only (an upload whose record was never
        committed, an orphan): evidence is never deleted through this."""
        ...

    def objects(self, prefix: str = "") -> Iterator[StoredObject]:
        """Every published object whose key starts with ``prefix`` (no incomplete ones)."""
        ...

    def discard_incomplete(self, older_than: timedelta) -> int:
        """Remove writes abandoned longer ago than ``older_than`` (a killed process)."""
        ...

    def probe(self) -> None:
        """Raise unless the storage can be reached (cheap: for ``/readyz``)."""
        ...


class _FileWriter(io.RawIOBase):
    """Writes to an open temporary file; ``close`` only stops further writes."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd
        self.written = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        if self.closed:
            raise ValueError("write to a finished object")
        view = memoryview(data)
        total = 0
        while total < len(view):
            total += os.write(self._fd, view[total:])
        self.written += total
        return total


class _Window(io.RawIOBase):
    """At most ``remaining`` bytes of a file object, then end of stream."""

    def __init__(self, raw: BinaryIO, remaining: int) -> None:
        super().__init__()
        self._raw, self._remaining = raw, remaining

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._remaining <= 0:
            return 0
        view = memoryview(buffer)[: min(len(buffer), self._remaining)]
        n = self._raw.readinto(view)  # type: ignore[attr-defined]
        n = n or 0
        self._remaining -= n
        return n

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStorage:
    """Objects as files under ``root`` (folders 0700, files 0600)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._mkdir_lock = threading.Lock()

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _ensure_parent(self, path: Path) -> None:
        missing = []
        parent = path.parent
        while not parent.exists():
            missing.append(parent)
            parent = parent.parent
        if not missing:
            return
        with self._mkdir_lock:
            for folder in reversed(missing):
                with suppress(FileExistsError):
                    folder.mkdir(mode=0o700)
                # A new folder is durable only once its parent's entry is.
                _fsync_dir(folder.parent)

    @contextmanager
    def create(self, key: str) -> Iterator[ObjectWriter]:
        final = self._path(key)
        if final.exists():
            raise ObjectExists(key)
        self._ensure_parent(final)
        temp = final.with_name(f"{_TEMP_PREFIX}{final.name}.{secrets.token_hex(8)}")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        writer = _FileWriter(fd)
        published = False
        try:
            yield writer
            os.fsync(fd)
            os.close(fd)
            fd = -1
            try:
                # link, not rename: an object that appeared meanwhile is never replaced.
                os.link(temp, final)
            except FileExistsError as exc:
                raise ObjectExists(key) from exc
            published = True
            os.unlink(temp)
            _fsync_dir(final.parent)
        finally:
            if fd >= 0:
                os.close(fd)
            if not published:
                with suppress(FileNotFoundError):
                    os.unlink(temp)
            writer.close()

    def open(self, key: str, start: int = 0, length: int | None = None) -> BinaryIO:
        path = self._path(key)
        try:
            raw = path.open("rb", buffering=0)
        except FileNotFoundError as exc:
            raise ObjectMissing(key) from exc
        if start:
            raw.seek(start)
        if length is None:
            return io.BufferedReader(raw, READ_CHUNK)  # type: ignore[arg-type]
        return io.BufferedReader(_Window(raw, length), READ_CHUNK)  # type: ignore[return-value]

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError as exc:
            raise ObjectMissing(key) from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> bool:
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        _fsync_dir(path.parent)
        return True

    def objects(self, prefix: str = "") -> Iterator[StoredObject]:
        if not self.root.is_dir():
            return
        for folder, dirs, files in os.walk(self.root):
            dirs.sort()
            for name in sorted(files):
                if name.startswith(_TEMP_PREFIX):
                    continue
                path = Path(folder) / name
                key = path.relative_to(self.root).as_posix()
                if not key.startswith(prefix) or not _KEY.match(key):
                    continue
                with suppress(FileNotFoundError):
                    info = path.stat()
                    yield StoredObject(key, info.st_size,
                                       datetime.fromtimestamp(info.st_mtime, UTC))

    def discard_incomplete(self, older_than: timedelta) -> int:
        if not self.root.is_dir():
            return 0
        cutoff = time.time() - older_than.total_seconds()
        removed = 0
        for folder, _dirs, files in os.walk(self.root):
            for name in files:
                if not name.startswith(_TEMP_PREFIX):
                    continue
                path = Path(folder) / name
                with suppress(FileNotFoundError):
                    if path.stat().st_mtime < cutoff:
                        path.unlink()
                        removed += 1
        return removed

    def probe(self) -> None:
        # Folders are made on first write: the nearest one that exists must be writable.
        folder = self.root
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
            raise NotADirectoryError("the storage folder is not a writable folder")


_storages: dict[tuple[Any, ...], Storage] = {}
_storages_lock = threading.Lock()


def get_storage(settings: Settings | None = None) -> Storage:
    """The configured storage: the S3 bucket of ``ADVOCASE_STORAGE_URL`` when it is set,
    otherwise the local folder ``ADVOCASE_STORAGE_DIR``. One per configuration (an S3
    client and its connection pool are shared by the threads of a process)."""
    settings = settings or get_settings()
    if settings.storage_url:
        secret = settings.s3_secret_access_key
        config: tuple[Any, ...] = (
            "s3", settings.storage_url, settings.s3_endpoint_url, settings.s3_region,
            settings.s3_access_key_id, secret.get_secret_value() if secret else None)
    else:
        assert settings.storage_dir is not None
        config = ("local", Path(settings.storage_dir))
    with _storages_lock:
        storage = _storages.get(config)
        if storage is None:
            storage = _storages[config] = _make_storage(settings)
    return storage


def _make_storage(settings: Settings) -> Storage:
    if not settings.storage_url:
        assert settings.storage_dir is not None
        return LocalStorage(Path(settings.storage_dir))
    from app.core.storage_s3 import S3Storage  # boto3 is loaded only when S3 is used

    bucket, prefix = settings.storage_bucket_and_prefix
    secret = settings.s3_secret_access_key
    return S3Storage(
        bucket, prefix, endpoint_url=settings.s3_endpoint_url, region=settings.s3_region,
        access_key_id=settings.s3_access_key_id,
        secret_access_key=secret.get_secret_value() if secret else None,
        max_pool_connections=max(10, settings.threadpool_size),
        probe_timeout=settings.broker_check_timeout)


# --- encryption --------------------------------------------------------------------------


def new_object_keyset() -> tink.KeysetHandle:
    """A fresh streaming-AEAD keyset for one object (AES256_GCM_HKDF_1MB)."""
    return tink.new_keyset_handle(
        streaming_aead.streaming_aead_key_templates.AES256_GCM_HKDF_1MB)


def _primitive(keyset: tink.KeysetHandle) -> streaming_aead.StreamingAead:
    return keyset.primitive(streaming_aead.StreamingAead)


class _Sink(io.RawIOBase):
    """Passes ciphertext on to the object being written, or drops it once abandoned (so
    that closing an unfinished Tink stream never writes into a discarded object)."""

    def __init__(self, out: ObjectWriter) -> None:
        super().__init__()
        self._out: ObjectWriter | None = out

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        if self._out is not None:
            self._out.write(data)
        return len(data)

    def abandon(self) -> None:
        self._out = None


@contextmanager
def encrypting_writer(storage: Storage, key: str, keyset: tink.KeysetHandle,
                      associated_data: bytes) -> Iterator[BinaryIO]:
    """Write plaintext; ciphertext is published under ``key`` when the block ends without
    an error (nothing is left behind otherwise)."""
    with storage.create(key) as out:
        sink = _Sink(out)
        stream = _primitive(keyset).new_encrypting_stream(sink, associated_data)  # type: ignore[arg-type]
        try:
            yield stream
        except BaseException:
            sink.abandon()
            with suppress(Exception):
                stream.close()
            raise
        stream.close()  # writes the last segment, which marks the end of the stream


def decrypting_reader(storage: Storage, key: str, keyset: tink.KeysetHandle,
                      associated_data: bytes) -> BinaryIO:
    """The plaintext of an object written by :func:`encrypting_writer`. Reading raises
    ``tink.TinkError`` where the ciphertext was altered, truncated or moved."""
    source = storage.open(key)
    try:
        return _primitive(keyset).new_decrypting_stream(source, associated_data)
    except BaseException:
        source.close()
        raise


# --- objects that must not outlive a rolled-back unit of work ------------------------------

_CLEANUP_KEY = "advocase.storage_cleanup"


def delete_on_rollback(db: Session, storage: Storage, key: str) -> None:
    """Delete the object ``key`` if ``db``'s transaction rolls back (or its commit fails);
    keep it once the transaction commits. For an object written just before the row that
    names it: a failed unit of work then leaves no orphan behind."""
    db.info.setdefault(_CLEANUP_KEY, []).append((storage, key))


@event.listens_for(Session, "after_commit")
def _keep_objects(session: Session) -> None:
    session.info.pop(_CLEANUP_KEY, None)


@event.listens_for(Session, "after_soft_rollback")
def _delete_objects(session: Session, previous_transaction: Any) -> None:
    if previous_transaction.parent is not None:
        return  # a savepoint rolled back: the unit of work goes on
    for storage, key in session.info.pop(_CLEANUP_KEY, []):
        try:
            storage.delete(key)
        except Exception:  # noqa: BLE001 - the orphan sweep removes what is left here
            log.error("storage_cleanup_failed", exc_info=True)
