"""``advocase backup`` and ``advocase restore``: the database, every storage object and the
wrapped keysets in one archive, never the master key or the secret key.

The archive is ONE uncompressed tar file (PAX format), created 0600, written under a
temporary name in the target's folder and linked to its name only once complete (an
existing file is never replaced). Uncompressed because nearly everything in it is already
ciphertext or compressed (PostgreSQL's custom format compresses). Its members:

- ``database.pgdump`` (PostgreSQL: ``pg_dump --format=custom``) or ``database.sqlite``
  (SQLite: a copy made with the online backup API, ``sqlite3.Connection.backup``).
- ``objects/<key>``: every storage object, byte for byte as stored (ciphertext: evidence is
  sealed with Tink streaming AEAD before it reaches storage), streamed through, never whole
  in memory.
- ``objects.jsonl``: one line per object, ``{"key", "size", "sha256"}`` of the stored bytes.
- ``manifest.json`` (last): format and version, app version, creation time, the database's
  dialect, Alembic revision, row count of every table, the dump's size and SHA-256, the
  object count, bytes and the SHA-256 of ``objects.jsonl``, the ids of the key-encryption
  keys (``local:<id>``, never a key) and a SHA-256 of the public token-signing key.

The wrapped keysets (org keysets, client data keys, shredded tombstones) are rows of the
database, so the dump holds them, in the same snapshot as the data they open. No separate
``keysets.json`` is written: a second copy could only drift from the snapshot and would add
nothing a restore needs; the manifest records what a restore must check first (which
key-encryption key wrapped them, how many there are).

Consistency. PostgreSQL: the counts, the revision and the key facts are read in a
REPEATABLE READ transaction whose snapshot ``pg_dump --snapshot`` shares, so the manifest
describes exactly the dumped data. SQLite: the facts are read from the copy itself.
Objects are copied after the database: an object is published before the row naming it
commits, so every row of the snapshot finds its object (objects created later are copied
too, as harmless orphans; one deleted meanwhile, an expired report, is counted as vanished).

Restore (into an empty database, or any with ``--force``) first checks everything it can
without touching the target: the manifest, the dialect, that the Alembic revision is one
this code knows, that the configured master key is the one that wrapped the backed-up
keysets and the secret key the one that signed its audit anchors, and the SHA-256 and size
of the dump and of every object. Then it restores the database (``pg_restore --clean
--if-exists --no-owner --no-acl --single-transaction``, or the SQLite backup API), writes
every object to the configured storage (hashing again on the way), and verifies: row
counts against the manifest, then upgrades the schema to this code's head, then the audit
chains, that every org keyset opens, and that every evidence row's object was restored;
with ``--check-evidence`` it also decrypts and re-hashes every evidence file against its
recorded SHA-256 (the integrity check's own code, nothing recorded).

A purge is never undone by a restore over a live database: the clients whose data key the
target had destroyed are read before it is replaced, and any of them the (older) backup
brings back is purged again at once (``clients.service.erase_client``, plus a
``backup.erasure_replayed`` audit event). A backup restored where that database is gone
still holds the clients purged after it was taken: see the README.

Error messages name files, tables and object keys (ids), never data.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from contextlib import closing, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa
import structlog
from cryptography.hazmat.primitives import serialization

from app import __version__
from app.core.storage import ObjectMissing, Storage, check_key, get_storage
from app.db import create_db_engine, utcnow
from app.settings import ConfigurationError, Settings, get_settings, sqlite_path

log = structlog.get_logger("app.backup")

FORMAT = "advocase-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
OBJECTS_LIST = "objects.jsonl"
OBJECTS_DIR = "objects/"
DATABASE_FILES = {"postgresql": "database.pgdump", "sqlite": "database.sqlite"}
CHUNK = 1024 * 1024
FILE_MODE = 0o600

# Query parameters of a PostgreSQL URL that libpq also reads from the environment.
_PG_QUERY_ENV = {
    "host": "PGHOST", "port": "PGPORT", "sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY", "sslcrl": "PGSSLCRL",
    "connect_timeout": "PGCONNECT_TIMEOUT", "application_name": "PGAPPNAME",
    "options": "PGOPTIONS", "passfile": "PGPASSFILE", "service": "PGSERVICE",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
}


class BackupError(Exception):
    """A backup or restore that cannot go on; the message is safe to show (no data)."""


# --- small helpers -------------------------------------------------------------------------


def _dialect(url: str) -> str:
    if url.startswith("sqlite"):
        return "sqlite"
    if url.startswith("postgresql"):
        return "postgresql"
    raise BackupError("backup and restore support PostgreSQL and SQLite databases only")


def pg_environment(url: str) -> dict[str, str]:
    """The environment for ``pg_dump``/``pg_restore``: the process's own, with the URL's
    connection parameters as ``PG*`` variables (the password never on a command line)."""
    parsed = sa.make_url(url)
    env = dict(os.environ)
    if parsed.host:
        env["PGHOST"] = parsed.host
    if parsed.port:
        env["PGPORT"] = str(parsed.port)
    if parsed.username:
        env["PGUSER"] = parsed.username
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    if parsed.database:
        env["PGDATABASE"] = parsed.database
    for name, value in parsed.query.items():
        if name in _PG_QUERY_ENV:
            env[_PG_QUERY_ENV[name]] = value if isinstance(value, str) else value[-1]
    return env


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} is not installed: install the PostgreSQL client tools "
                          "(the server's major version or newer)")
    return found


def _tool_failure(name: str, code: int, stderr: bytes) -> BackupError:
    # Only the tools' own error lines: DETAIL, CONTEXT and "Command was" lines can quote
    # row values, so they are never passed on.
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines()]
    errors = [line for line in lines if line.startswith((f"{name}: error:", f"{name}: fatal"))]
    summary = "; ".join(line[:300] for line in errors[:3]) or "no error message"
    return BackupError(f"{name} failed (exit {code}): {summary}")


def _create_private(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)


class _Hashing:
    """A readable stream that hashes and counts what is read through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self.digest.update(data)
        self.size += len(data)
        return data

    def hexdigest(self) -> str:
        return self.digest.hexdigest()


def _sha256_of(stream: IO[bytes]) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def _member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, FILE_MODE, int(time.time())
    return info


def signing_key_fingerprint(settings: Settings) -> str:
    """SHA-256 of the public key that signs tokens and audit anchors (public: it names the
    secret key without revealing anything of it)."""
    from app.core.crypto import _signing_key_for

    public = _signing_key_for(settings.secret_key_value()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(public).hexdigest()


def _configured_kek_id() -> str:
    from app.core import keys

    return keys.kek_provider().kek_id


# --- facts about a database ----------------------------------------------------------------


Query = Callable[[str], list[tuple[Any, ...]]]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _table_names(query: Query, dialect: str) -> list[str]:
    if dialect == "sqlite":
        rows = query("SELECT name FROM sqlite_master WHERE type = 'table' "
                     "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'")
    else:
        rows = query("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
    return sorted(row[0] for row in rows)


def _database_facts(query: Query, dialect: str) -> dict[str, Any]:
    tables = _table_names(query, dialect)
    if "alembic_version" not in tables:
        raise BackupError("the database has no advocase schema (run `advocase migrate`)")
    # Table names come from the database's own catalog, quoted.
    counts = {name: int(query(f"SELECT count(*) FROM {_quote(name)}")[0][0])  # noqa: S608
              for name in tables}
    revision = query("SELECT version_num FROM alembic_version")
    kek_ids: list[str] = []
    destroyed = 0
    if "org_keyset" in tables:
        kek_ids = sorted(row[0] for row in query("SELECT DISTINCT kek_id FROM org_keyset"))
    if "client_data_key" in tables:
        destroyed = int(query("SELECT count(*) FROM client_data_key "
                              "WHERE destroyed_at IS NOT NULL")[0][0])
    return {"tables": counts, "alembic_revision": revision[0][0] if revision else None,
            "keys": {"kek_ids": kek_ids, "org_keysets": counts.get("org_keyset", 0),
                     "client_keys": counts.get("client_data_key", 0),
                     "client_keys_destroyed": destroyed}}


def _sa_query(conn: sa.Connection) -> Query:
    return lambda sql: [tuple(row) for row in conn.exec_driver_sql(sql).all()]


def _sqlite_query(conn: sqlite3.Connection) -> Query:
    return lambda sql: conn.execute(sql).fetchall()


# --- backup --------------------------------------------------------------------------------


@dataclass
class BackupResult:
    path: str
    created_at: str
    dialect: str
    alembic_revision: str
    tables: int
    rows: int
    objects: int
    object_bytes: int
    objects_vanished: int
    archive_bytes: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _dump_postgres(url: str, settings: Settings, work: Path) -> tuple[Path, dict[str, Any]]:
    dump = work / DATABASE_FILES["postgresql"]
    engine = create_db_engine(url, settings)
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                conn.exec_driver_sql("SET TRANSACTION READ ONLY")
                snapshot = conn.exec_driver_sql("SELECT pg_export_snapshot()").scalar_one()
                fd = _create_private(dump)
                try:
                    done = subprocess.run(  # noqa: S603 - fixed arguments, no shell
                        [_tool("pg_dump"), "--format=custom", "--no-password",
                         f"--snapshot={snapshot}"],
                        env=pg_environment(url), stdin=subprocess.DEVNULL, stdout=fd,
                        stderr=subprocess.PIPE, check=False)
                finally:
                    os.close(fd)
                if done.returncode:
                    raise _tool_failure("pg_dump", done.returncode, done.stderr)
                facts = _database_facts(_sa_query(conn), "postgresql")
    except sa.exc.OperationalError as exc:
        raise BackupError("cannot connect to the database "
                          f"({type(exc.orig).__name__ if exc.orig else 'error'})") from exc
    finally:
        engine.dispose()
    return dump, facts


def _dump_sqlite(url: str, work: Path) -> tuple[Path, dict[str, Any]]:
    source = sqlite_path(url)
    if source is None or not source.is_file():
        raise BackupError("the SQLite database file does not exist")
    dump = work / DATABASE_FILES["sqlite"]
    os.close(_create_private(dump))
    with closing(sqlite3.connect(source, timeout=30)) as src, \
            closing(sqlite3.connect(dump)) as copy:
        src.backup(copy)
        # One self-contained file: no -wal or -shm beside it.
        copy.execute("PRAGMA journal_mode = DELETE")
        facts = _database_facts(_sqlite_query(copy), "sqlite")
    return dump, facts


def _add_file(tar: tarfile.TarFile, name: str, path: Path) -> tuple[str, int]:
    size = path.stat().st_size
    with path.open("rb") as handle:
        reader = _Hashing(handle)
        tar.addfile(_member(name, size), reader)  # type: ignore[arg-type]
    return reader.hexdigest(), reader.size


def _copy_objects(storage: Storage, tar: tarfile.TarFile, listing: Path) -> dict[str, Any]:
    count = total = vanished = 0
    fd = _create_private(listing)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        for stored in storage.objects(""):
            try:
                source = storage.open(stored.key)
            except ObjectMissing:
                vanished += 1  # deleted since it was listed (an expired report)
                continue
            with source:
                reader = _Hashing(source)
                try:
                    tar.addfile(_member(OBJECTS_DIR + stored.key, stored.size),
                                reader)  # type: ignore[arg-type]
                except OSError as exc:
                    raise BackupError(f"stored object {stored.key} changed size while it "
                                      "was copied") from exc
            out.write(json.dumps({"key": stored.key, "size": reader.size,
                                  "sha256": reader.hexdigest()}, separators=(",", ":")) + "\n")
            count += 1
            total += reader.size
    return {"count": count, "bytes": total, "vanished": vanished}


def backup(to: Path, *, settings: Settings | None = None,
           storage: Storage | None = None) -> BackupResult:
    """Write one archive of the configured database and storage to ``to`` (a new file)."""
    started = time.perf_counter()
    settings = settings or get_settings()
    storage = storage or get_storage(settings)
    url = str(settings.database_url)
    dialect = _dialect(url)
    to = Path(to)
    if to.exists():
        raise BackupError(f"{to.name} exists already: a backup never replaces a file")
    if not to.parent.is_dir():
        raise BackupError("the folder to write the backup in does not exist")
    created_at = utcnow().isoformat()
    partial = to.with_name(f".{to.name}.partial-{secrets.token_hex(4)}")
    work = Path(tempfile.mkdtemp(prefix=".advocase-backup-", dir=to.parent))  # 0700
    try:
        if dialect == "postgresql":
            dump, facts = _dump_postgres(url, settings, work)
        else:
            dump, facts = _dump_sqlite(url, work)
        fd = _create_private(partial)
        with os.fdopen(fd, "wb") as raw:
            with tarfile.open(fileobj=raw, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                dump_sha, dump_size = _add_file(tar, dump.name, dump)
                dump.unlink()
                listing = work / OBJECTS_LIST
                objects = _copy_objects(storage, tar, listing)
                listing_sha, _ = _add_file(tar, OBJECTS_LIST, listing)
                manifest = {
                    "format": FORMAT, "format_version": FORMAT_VERSION,
                    "app_version": __version__, "created_at": created_at,
                    "database": {"dialect": dialect, "file": dump.name, "size": dump_size,
                                 "sha256": dump_sha,
                                 "alembic_revision": facts["alembic_revision"],
                                 "tables": facts["tables"]},
                    "keys": facts["keys"] | {
                        "signing_key_sha256": signing_key_fingerprint(settings)},
                    "objects": objects | {"list": OBJECTS_LIST, "list_sha256": listing_sha},
                }
                data = json.dumps(manifest, indent=2, sort_keys=True).encode()
                tar.addfile(_member(MANIFEST, len(data)), io.BytesIO(data))
            raw.flush()
            os.fsync(raw.fileno())
        try:
            os.link(partial, to)  # never replaces a file that appeared meanwhile
        except FileExistsError as exc:
            raise BackupError(f"{to.name} exists already: a backup never replaces a "
                              "file") from exc
    finally:
        with suppress(FileNotFoundError):
            partial.unlink()
        shutil.rmtree(work, ignore_errors=True)
    tables = facts["tables"]
    result = BackupResult(
        path=str(to), created_at=created_at, dialect=dialect,
        alembic_revision=facts["alembic_revision"], tables=len(tables),
        rows=sum(tables.values()), objects=objects["count"], object_bytes=objects["bytes"],
        objects_vanished=objects["vanished"], archive_bytes=to.stat().st_size,
        seconds=round(time.perf_counter() - started, 3))
    log.info("backup_written", dialect=dialect, tables=result.tables, rows=result.rows,
             objects=result.objects, archive_bytes=result.archive_bytes)
    return result


# --- reading an archive --------------------------------------------------------------------


_MANIFEST_FIELDS = {
    "database": ("dialect", "file", "size", "sha256", "alembic_revision", "tables"),
    "keys": ("kek_ids", "signing_key_sha256", "client_keys_destroyed"),
    "objects": ("count", "list", "list_sha256"),
}


@dataclass(frozen=True)
class _Entry:
    key: str
    size: int
    sha256: str


class Archive:
    """A backup archive opened for reading: members are looked up by name, never extracted
    to paths the archive chooses."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self._tar = tarfile.open(self.path, mode="r:")  # noqa: SIM115 - closed by close()
        except (OSError, tarfile.TarError) as exc:
            raise BackupError(f"{self.path.name} is not a readable advocase backup (not a "
                              "tar file)") from exc
        try:
            self._members = {m.name: m for m in self._tar.getmembers() if m.isfile()}
            self.manifest = self._manifest()
        except (OSError, tarfile.TarError) as exc:
            self._tar.close()
            raise BackupError(f"{self.path.name} is not a readable advocase backup (cut "
                              "short or damaged)") from exc
        except BaseException:
            self._tar.close()
            raise

    def close(self) -> None:
        self._tar.close()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self, name: str) -> IO[bytes]:
        member = self._members.get(name)
        stream = self._tar.extractfile(member) if member is not None else None
        if stream is None:
            raise BackupError(f"the backup has no {name}")
        return stream

    def size(self, name: str) -> int | None:
        member = self._members.get(name)
        return member.size if member is not None else None

    def _manifest(self) -> dict[str, Any]:
        try:
            manifest = json.loads(self.open(MANIFEST).read())
        except ValueError as exc:
            raise BackupError("the backup's manifest.json is not valid JSON") from exc
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise BackupError(f"{self.path.name} is not an advocase backup")
        if manifest.get("format_version") != FORMAT_VERSION:
            raise BackupError(f"backup format version {manifest.get('format_version')} is not "
                              f"one this advocase reads (it reads {FORMAT_VERSION})")
        for section, names in _MANIFEST_FIELDS.items():
            part = manifest.get(section)
            missing = [n for n in names if not isinstance(part, dict) or n not in part]
            if missing:
                raise BackupError(f"the backup's manifest.json lacks {section}.{missing[0]}")
        return manifest

    def entries(self) -> list[_Entry]:
        """The object list, checked against the manifest's hash of it."""
        objects = self.manifest["objects"]
        stream = _Hashing(self.open(objects["list"]))
        data = stream.read()
        if stream.hexdigest() != objects["list_sha256"]:
            raise BackupError(f"{objects['list']} does not match its SHA-256 in the manifest "
                              "(altered or corrupted); nothing was restored")
        entries = []
        for line in data.decode().splitlines():
            item = json.loads(line)
            try:
                check_key(item["key"])
            except ValueError as exc:
                raise BackupError("the object list names an invalid storage key") from exc
            entries.append(_Entry(item["key"], int(item["size"]), item["sha256"]))
        if len(entries) != objects["count"]:
            raise BackupError(f"{objects['list']} lists {len(entries)} objects, the manifest "
                              f"{objects['count']}")
        return entries

    def verify(self, entries: list[_Entry]) -> None:
        """Every stored byte against the manifest: the dump and each object (named by key)."""
        database = self.manifest["database"]
        digest, size = _sha256_of(self.open(database["file"]))
        if size != database["size"] or digest != database["sha256"]:
            raise BackupError(f"{database['file']} does not match its SHA-256 in the manifest "
                              "(corrupted or altered); nothing was restored")
        listed = set()
        for entry in entries:
            name = OBJECTS_DIR + entry.key
            if self.size(name) is None:
                raise BackupError(f"stored object {entry.key} is missing from the backup; "
                                  "nothing was restored")
            digest, size = _sha256_of(self.open(name))
            if size != entry.size or digest != entry.sha256:
                raise BackupError(f"stored object {entry.key} does not match its SHA-256 in "
                                  "the manifest (corrupted or altered); nothing was restored")
            listed.add(name)
        extra = [n for n in self._members if n.startswith(OBJECTS_DIR) and n not in listed]
        if extra:
            raise BackupError(f"the backup holds {len(extra)} objects its manifest does not "
                              "list; nothing was restored")


# --- restore -------------------------------------------------------------------------------


@dataclass
class RestoreResult:
    source: str
    dialect: str
    backup_created_at: str
    alembic_revision: str
    migrated_to: str | None
    tables: int
    rows: int
    objects_restored: int
    objects_kept: int
    objects_replaced: int
    audit: dict[str, int]
    org_keysets: int
    client_keys_destroyed: int
    erasures_replayed: int = 0
    evidence: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _known_revision(revision: str | None) -> None:
    from alembic.script import ScriptDirectory

    from app.cli import alembic_config

    scripts = ScriptDirectory.from_config(alembic_config())
    try:
        known = revision is not None and scripts.get_revision(revision) is not None
    except Exception:  # noqa: BLE001 - alembic raises several kinds for an unknown id
        known = False
    if not known:
        raise BackupError(f"the backup's schema revision {revision} is not one this advocase "
                          "knows (made by a newer version?): restore it with that version")


def _check_keys(manifest: dict[str, Any], settings: Settings) -> None:
    kek_ids = manifest["keys"]["kek_ids"]
    try:
        configured = _configured_kek_id()
        signing = signing_key_fingerprint(settings)
    except ConfigurationError as exc:
        raise BackupError(f"configuration: {exc}") from exc
    if kek_ids and configured not in kek_ids:
        raise BackupError(
            f"this backup's org keysets were wrapped by key-encryption key "
            f"{', '.join(kek_ids)}, but the configured ADVOCASE_MASTER_KEY gives {configured}: "
            "nothing in it would decrypt. Configure the master key of the backed-up "
            "deployment (it is never in a backup); nothing was restored")
    if manifest["keys"]["signing_key_sha256"] != signing:
        raise BackupError(
            "the configured ADVOCASE_SECRET_KEY is not the backed-up deployment's: its audit "
            "anchors would not verify and every session would end. Configure the same secret "
            "key (it is never in a backup); nothing was restored")


def _app_tables() -> set[str]:
    from sqlmodel import SQLModel

    import app.models  # noqa: F401 - every table registered

    return set(SQLModel.metadata.tables) - {"alembic_version"}


def _tables_with_rows(engine: sa.Engine, dialect: str) -> list[str]:
    wanted = _app_tables()
    with engine.connect() as conn:
        names = [n for n in _table_names(_sa_query(conn), dialect) if n in wanted]
        return [n for n in names
                if conn.exec_driver_sql(f"SELECT 1 FROM {_quote(n)} LIMIT 1")  # noqa: S608
                .first()]


def _restore_postgres(archive: Archive, url: str) -> None:
    name = sa.make_url(url).database
    if not name:
        raise BackupError("the database URL names no database")
    database = archive.manifest["database"]
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(  # noqa: S603 - fixed arguments, no shell
            [_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--no-acl",
             "--single-transaction", "--exit-on-error", "--no-password",
             f"--dbname={name}"],
            env=pg_environment(url), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=errors)
        assert process.stdin is not None
        stream = _Hashing(archive.open(database["file"]))
        try:
            while chunk := stream.read(CHUNK):
                process.stdin.write(chunk)
        except BrokenPipeError:
            pass  # pg_restore stopped early; its exit code and message say why
        finally:
            with suppress(BrokenPipeError):
                process.stdin.close()
        code = process.wait()
        if code:
            errors.seek(0)
            raise _tool_failure("pg_restore", code, errors.read())
    if stream.size == database["size"] and stream.hexdigest() != database["sha256"]:
        raise BackupError(f"{database['file']} changed while it was restored")


def _restore_sqlite(archive: Archive, url: str) -> None:
    target = sqlite_path(url)
    if target is None:
        raise BackupError("restore needs a SQLite database file, not an in-memory database")
    target.parent.mkdir(parents=True, exist_ok=True)
    database = archive.manifest["database"]
    copy = target.with_name(f".{target.name}.restore-{secrets.token_hex(4)}")
    try:
        fd = _create_private(copy)
        stream = _Hashing(archive.open(database["file"]))
        with os.fdopen(fd, "wb") as out:
            while chunk := stream.read(CHUNK):
                out.write(chunk)
        if stream.hexdigest() != database["sha256"]:
            raise BackupError(f"{database['file']} changed while it was restored")
        if not target.exists():
            os.close(_create_private(target))
        with closing(sqlite3.connect(copy)) as src, \
                closing(sqlite3.connect(target, timeout=30)) as dst:
            src.backup(dst)
    finally:
        with suppress(FileNotFoundError):
            copy.unlink()


def _restore_objects(archive: Archive, entries: list[_Entry], storage: Storage) -> dict[str, int]:
    restored = kept = replaced = 0
    for entry in entries:
        if storage.exists(entry.key):
            with storage.open(entry.key) as current:
                if _sha256_of(current) == (entry.sha256, entry.size):
                    kept += 1
                    continue
            storage.delete(entry.key)
            replaced += 1
        stream = _Hashing(archive.open(OBJECTS_DIR + entry.key))
        with storage.create(entry.key) as out:
            while chunk := stream.read(CHUNK):
                out.write(chunk)
            if stream.hexdigest() != entry.sha256 or stream.size != entry.size:
                # Raised inside the block: the object is discarded, never published.
                raise BackupError(f"stored object {entry.key} changed while it was restored")
        restored += 1
    return {"restored": restored, "kept": kept, "replaced": replaced}


def _check_counts(engine: sa.Engine, manifest: dict[str, Any], dialect: str) -> dict[str, int]:
    expected: dict[str, int] = manifest["database"]["tables"]
    with engine.connect() as conn:
        found = _database_facts(_sa_query(conn), dialect)
    differ = [name for name, count in expected.items() if found["tables"].get(name) != count]
    if differ:
        shown = ", ".join(f"{n} ({found['tables'].get(n)} rows, manifest {expected[n]})"
                          for n in differ[:5])
        raise BackupError(f"restored row counts differ from the manifest: {shown}")
    if found["alembic_revision"] != manifest["database"]["alembic_revision"]:
        raise BackupError("the restored schema revision differs from the manifest's")
    return found["tables"]


def _verify_restored(engine: sa.Engine, entries: list[_Entry],
                     storage: Storage, check_evidence: bool) -> tuple[dict[str, int], int,
                                                                      dict[str, int]]:
    from sqlmodel import Session

    from app.core import audit, keys
    from app.evidence import service as evidence_service
    from app.evidence.models import Evidence

    with engine.connect() as conn:
        report = audit.verify_all(conn)
    if report.broken:
        raise BackupError(f"audit chain broken after restore: {report.broken.describe()}")
    audit_counts = {"chains": report.chains, "events": report.events, "anchors": report.anchors}
    keys.clear_key_caches()
    with Session(engine) as db:
        statuses = keys.key_status(db)
        unopened = [s for s in statuses if s.aead_keys is None or s.prf_keys is None]
        if unopened:
            raise BackupError(f"{len(unopened)} org keysets do not open with the configured "
                              "master key after restore")
        restored = {entry.key for entry in entries}
        query = sa.select(Evidence.id, Evidence.storage_key)  # type: ignore[call-overload]
        evidence_rows = db.execute(query.order_by(Evidence.id)).all()
        missing = [row.id for row in evidence_rows if row.storage_key not in restored]
        if missing:
            raise BackupError(f"{len(missing)} evidence files have no stored object after "
                              f"restore (first: evidence {missing[0]})")
        evidence: dict[str, int] = {"records": len(evidence_rows)}
        if check_evidence:
            outcomes: dict[str, int] = {"intact": 0, "mismatch": 0, "unreadable": 0,
                                        "key_destroyed": 0}
            failed: list[str] = []
            for row in evidence_rows:
                stored = evidence_service.open_for_check(db, row.id)
                if stored is None:
                    outcomes["key_destroyed"] += 1
                    continue
                outcome = evidence_service.hash_stored(stored, storage)
                outcomes[outcome] += 1
                if outcome != "intact":
                    failed.append(str(row.id))
            evidence |= outcomes
            if failed:
                raise BackupError(f"{len(failed)} evidence files do not re-hash to their "
                                  f"recorded SHA-256 after restore (first: evidence {failed[0]})")
        db.rollback()
    return audit_counts, sum(1 for _ in statuses), evidence


def _erased_clients(engine: sa.Engine) -> set[Any]:
    """Clients whose data key the target database has destroyed, read before a restore
    over it: the backup may predate their purge."""
    from app.core.key_models import ClientDataKey

    table = ClientDataKey.__table__
    with engine.connect() as conn:
        if "client_data_key" not in sa.inspect(conn).get_table_names():
            return set()
        return set(conn.execute(sa.select(table.c.client_id)
                                .where(table.c.destroyed_at.is_not(None))).scalars())


def _replay_erasures(engine: sa.Engine, erased: set[Any]) -> int:
    """Purge again every client the target had purged whose key the backup brought back:
    a purge is never undone by a restore. Returns how many were purged again."""
    if not erased:
        return 0
    from app.clients.models import Client
    from app.clients.service import erase_client
    from app.core import audit, keys
    from app.core.key_models import ClientDataKey
    from app.db import unit_of_work

    table = ClientDataKey.__table__
    with unit_of_work(engine) as db:
        revived = db.execute(sa.select(table.c.client_id, table.c.org_id).where(
            table.c.client_id.in_(sorted(erased, key=str)), table.c.destroyed_at.is_(None))
            .order_by(table.c.client_id)).all()
        for client_id, org_id in revived:
            client = db.get(Client, client_id)
            if client is None:
                keys.shred_client_key(db, client_id)
            else:
                erase_client(db, client)
            audit.append(db, action="backup.erasure_replayed", org_id=org_id,
                         object_type="client", object_id=client_id)
    return len(revived)


def restore(source: Path, *, settings: Settings | None = None, storage: Storage | None = None,
            force: bool = False, check_evidence: bool = False) -> RestoreResult:
    """Restore a backup into the configured database and storage, then verify it."""
    started = time.perf_counter()
    settings = settings or get_settings()
    storage = storage or get_storage(settings)
    url = str(settings.database_url)
    dialect = _dialect(url)
    if not Path(source).is_file():
        raise BackupError(f"{Path(source).name} does not exist")
    with Archive(Path(source)) as archive:
        manifest = archive.manifest
        database = manifest["database"]
        if database["dialect"] != dialect:
            raise BackupError(f"this is a {database['dialect']} backup; the configured "
                              f"database is {dialect} (restore into the same kind)")
        if database["file"] != DATABASE_FILES[dialect]:
            raise BackupError("the manifest names an unexpected database file")
        _known_revision(database["alembic_revision"])
        _check_keys(manifest, settings)
        entries = archive.entries()
        archive.verify(entries)

        settings.ensure_dirs()
        engine = create_db_engine(url, settings)
        try:
            try:
                occupied = _tables_with_rows(engine, dialect)
            except sa.exc.OperationalError as exc:
                raise BackupError("cannot connect to the target database (does it exist?)") \
                    from exc
            erased = _erased_clients(engine) if occupied else set()
        finally:
            engine.dispose()
        stored = next(iter(storage.objects("")), None)
        if not force and (occupied or stored is not None):
            what = (f"the target database is not empty ({len(occupied)} tables hold rows)"
                    if occupied else "the target storage already holds objects")
            raise BackupError(f"{what}: restore replaces everything there, so it needs "
                              "--force; nothing was restored")

        if dialect == "postgresql":
            _restore_postgres(archive, url)
        else:
            _restore_sqlite(archive, url)
        objects = _restore_objects(archive, entries, storage)

    engine = create_db_engine(url, settings)
    try:
        tables = _check_counts(engine, manifest, dialect)
        migrated_to = _upgrade(url, database["alembic_revision"])
        replayed = _replay_erasures(engine, erased)
        audit_counts, org_keysets, evidence = _verify_restored(engine, entries, storage,
                                                               check_evidence)
    finally:
        engine.dispose()
    result = RestoreResult(
        source=str(source), dialect=dialect,
        backup_created_at=str(manifest.get("created_at", "")),
        alembic_revision=database["alembic_revision"], migrated_to=migrated_to,
        tables=len(tables), rows=sum(tables.values()), objects_restored=objects["restored"],
        objects_kept=objects["kept"], objects_replaced=objects["replaced"],
        audit=audit_counts, org_keysets=org_keysets,
        client_keys_destroyed=manifest["keys"]["client_keys_destroyed"],
        erasures_replayed=replayed, evidence=evidence,
        seconds=round(time.perf_counter() - started, 3))
    log.info("backup_restored", dialect=dialect, tables=result.tables, rows=result.rows,
             objects=objects["restored"] + objects["kept"] + objects["replaced"])
    return result


def _upgrade(url: str, revision: str) -> str | None:
    """Upgrade a restored schema to this code's head; the new revision, or None if current."""
    from alembic import command
    from alembic.script import ScriptDirectory

    from app.cli import alembic_config

    config = alembic_config(url)
    head = ScriptDirectory.from_config(config).get_current_head()
    if head == revision:
        return None
    try:
        command.upgrade(config, "head")
    except Exception as exc:  # noqa: BLE001 - any migration failure: one clear message
        raise BackupError(f"the restored schema ({revision}) did not upgrade to {head} "
                          f"({type(exc).__name__}); run `advocase migrate` to see why") from exc
    return head

