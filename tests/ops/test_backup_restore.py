"""Backup and restore: the restore drill on PostgreSQL (in both CI runs), a SQLite round
trip through the CLI, and the failures first: a corrupted object, a non-empty target, the
wrong master key.

A small fictional agency is seeded into a database this module owns (three clients with
encrypted fields, an incident each, three evidence files, one client purged before the
backup, an audit anchor), backed up once, and restored into fresh databases and storage
folders of its own."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from sqlmodel import Session

from app.clients import service as clients_service
from app.clients.models import Client
from app.core import audit, keys
from app.core.access import Actor
from app.core.key_models import ClientDataKey
from app.core.storage import LocalStorage, Storage
from app.db import create_db_engine
from app.evidence import service as evidence_service
from app.evidence.models import Evidence
from app.incidents import service as incidents
from app.incidents.schemas import IncidentCreate
from app.ops import backup as ops
from app.settings import ConfigurationError, Settings
from tests.support import services
from tests.support.identity import make_org, make_user

NAMES = ["Fictional Client Ada Backupson", "Fictional Client Bo Restoreby",
         "Fictional Client Cy Shredwell"]
ADDRESS = "12 Fictional Lane, Nowhere Town"


@dataclass
class Seeded:
    org_id: UUID
    supervisor: Actor
    clients: dict[UUID, str] = field(default_factory=dict)  # live client -> legal name
    purged: UUID | None = None
    purged_ciphertext: str = ""  # the purged client's legal name, sealed, taken before
    evidence: dict[UUID, str] = field(default_factory=dict)  # live evidence -> SHA-256
    purged_evidence: UUID | None = None


def _actor(user: Any) -> Actor:
    return Actor(kind="user", id=user.id, org_id=user.org_id, role=user.role)


def _upload(db: Session, actor: Actor, incident_id: UUID, content: bytes,
            storage: Storage) -> Evidence:
    target = evidence_service.start_upload(db, actor, incident_id)
    body = (b'--fictional\r\nContent-Disposition: form-data; name="description"\r\n\r\n'
            b"Fictional photo for the restore drill\r\n"
            b'--fictional\r\nContent-Disposition: form-data; name="file"; '
            b'filename="fictional.jpg"\r\n\r\n' + content + b"\r\n--fictional--\r\n")
    return evidence_service.receive_upload(
        db, actor, target, [body], content_type="multipart/form-data; boundary=fictional",
        purpose=None, storage=storage, max_bytes=1024 * 1024).evidence


def seed(db: Session, storage: Storage) -> Seeded:
    org = make_org(db)
    supervisor = _actor(make_user(db, org, "supervisor"))
    advocate = _actor(make_user(db, org, "advocate"))
    seeded = Seeded(org.id, supervisor)
    for number, name in enumerate(NAMES):
        client = clients_service.create_client(
            db, advocate, personal={"legal_name": name, "address": ADDRESS}).client
        incident = incidents.record_incident(
            db, advocate, client.id, IncidentCreate.model_validate({
                "occurred": {"precision": "date", "start": "2026-02-01", "time_zone": "UTC"},
                "categories": ["threats"], "client_account": "Fictional account, drill."}))
        content = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + os.urandom(20 * 1024)
        evidence = _upload(db, advocate, incident.incident.id, content, storage)
        if number < 2:
            seeded.clients[client.id] = name
            seeded.evidence[evidence.id] = evidence.sha256
        else:
            seeded.purged, seeded.purged_evidence = client.id, evidence.id
            seeded.purged_ciphertext = client.legal_name or ""
    db.commit()
    assert seeded.purged is not None
    clients_service.purge_client(db, supervisor, seeded.purged)
    audit.anchor_heads(db)
    db.commit()
    return seeded


@dataclass
class Source:
    url: str
    settings: Settings
    storage: LocalStorage
    seeded: Seeded
    archive: Path
    counts: dict[str, int]


def _counts(url: str) -> dict[str, int]:
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            names = sa.inspect(conn).get_table_names()
            return {n: conn.execute(sa.text(f'SELECT count(*) FROM "{n}"')).scalar_one()
                    for n in names}
    finally:
        engine.dispose()


def _seed_database(url: str, storage: Storage) -> Seeded:
    """The drill's records, seeded into the database at ``url`` and ``storage``."""
    engine = create_db_engine(url)
    try:
        with Session(engine, expire_on_commit=False) as db:
            return seed(db, storage)
    finally:
        engine.dispose()


@contextmanager
def _source(kind: str, folder: Path, settings: Settings) -> Iterator[Source]:
    with services.own_database(kind, folder, "backup_src") as url:
        storage = LocalStorage(folder / "source-storage")
        seeded = _seed_database(url, storage)
        source_settings = settings.model_copy(update={"database_url": url,
                                                      "storage_dir": storage.root})
        archive = folder / "drill.tar"
        if kind == "postgresql":
            result = ops.backup(archive, settings=source_settings, storage=storage)
            assert result.objects == 3 and result.dialect == "postgresql"
        yield Source(url, source_settings, storage, seeded, archive, _counts(url))


@pytest.fixture(scope="module")
def pg_source(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Source]:
    with _source("postgresql", tmp_path_factory.mktemp("pg-backup"), settings) as source:
        yield source


class Target:
    """A fresh, empty database (not even migrated) and storage folder to restore into."""

    def __init__(self, url: str, folder: Path, settings: Settings) -> None:
        self.url = url
        self.storage = LocalStorage(folder)
        self.settings = settings.model_copy(update={"database_url": url,
                                                    "storage_dir": folder})

    def restore(self, archive: Path, **options: Any) -> ops.RestoreResult:
        return ops.restore(archive, settings=self.settings, storage=self.storage, **options)

    def table_names(self) -> list[str]:
        engine = create_db_engine(self.url)
        try:
            with engine.connect() as conn:
                return sa.inspect(conn).get_table_names()
        finally:
            engine.dispose()


@pytest.fixture
def pg_target(settings: Settings, tmp_path: Path) -> Iterator[Target]:
    with services.own_database("postgresql", tmp_path, "backup_dst", migrate=False) as url:
        yield Target(url, tmp_path / "restored-storage", settings)


def _corrupt_first_object(archive: Path, copy: Path) -> str:
    shutil.copyfile(archive, copy)
    with tarfile.open(copy) as tar:
        member = next(m for m in tar.getmembers() if m.name.startswith(ops.OBJECTS_DIR))
    with copy.open("r+b") as handle:
        handle.seek(member.offset_data + 100)
        byte = handle.read(1)
        handle.seek(member.offset_data + 100)
        handle.write(bytes([byte[0] ^ 0x01]))
    return member.name[len(ops.OBJECTS_DIR):]


# --- failures first ------------------------------------------------------------------------


def test_a_corrupted_object_fails_the_restore_naming_its_key_and_nothing_is_restored(
        pg_source: Source, pg_target: Target, tmp_path: Path) -> None:
    key = _corrupt_first_object(pg_source.archive, tmp_path / "corrupted.tar")
    with pytest.raises(ops.BackupError) as failure:
        pg_target.restore(tmp_path / "corrupted.tar")
    message = str(failure.value)
    assert f"stored object {key} does not match its SHA-256" in message
    assert "nothing was restored" in message
    assert not any(name.split()[-1] in message for name in NAMES)
    assert pg_target.table_names() == []
    assert list(pg_target.storage.objects()) == []


def test_a_non_empty_database_is_refused_without_force(pg_source: Source,
                                                        tmp_path: Path) -> None:
    into_source = Target(pg_source.url, tmp_path / "other-storage", pg_source.settings)
    with pytest.raises(ops.BackupError, match=r"target database is not empty .* --force"):
        into_source.restore(pg_source.archive)
    assert _counts(pg_source.url) == pg_source.counts
    assert list(into_source.storage.objects()) == []


def test_the_wrong_master_key_is_refused_before_anything_is_restored(
        pg_source: Source, pg_target: Target) -> None:
    keys.use_kek_provider(keys.LocalKekProvider("fictional-wrong-master-key"))
    try:
        with pytest.raises(ops.BackupError, match="ADVOCASE_MASTER_KEY") as failure:
            pg_target.restore(pg_source.archive)
    finally:
        keys.use_kek_provider(None)
    assert "nothing in it would decrypt" in str(failure.value)
    assert pg_target.table_names() == []


def _with_manifest(archive: Path, copy: Path, change: Any) -> None:
    """A copy of ``archive`` whose manifest.json is changed by ``change(manifest)``."""
    with tarfile.open(archive) as tar, tarfile.open(copy, "w", format=tarfile.PAX_FORMAT) as out:
        for member in tar.getmembers():
            data = tar.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == ops.MANIFEST:
                manifest = json.loads(data)
                change(manifest)
                data = json.dumps(manifest).encode()
                member.size = len(data)
            out.addfile(member, io.BytesIO(data))


def test_a_backup_from_a_newer_schema_is_refused(pg_source: Source, pg_target: Target,
                                                 tmp_path: Path) -> None:
    newer = tmp_path / "newer.tar"
    _with_manifest(pg_source.archive, newer,
                   lambda m: m["database"].update(alembic_revision="9999"))
    with pytest.raises(ops.BackupError, match="revision 9999 is not one this advocase knows"):
        pg_target.restore(newer)
    assert pg_target.table_names() == []


# --- the drill -----------------------------------------------------------------------------


def _archive_text(archive: Path, folder: Path) -> bytes:
    """The archive's bytes plus its dump as plain SQL (the dump itself is compressed)."""
    raw = archive.read_bytes()
    with tarfile.open(archive) as tar:
        member = tar.extractfile("database.pgdump")
        assert member is not None
        (folder / "dump").write_bytes(member.read())
    script = subprocess.run(["pg_restore", "--file=-", str(folder / "dump")],  # noqa: S603,S607
                            capture_output=True, check=True).stdout
    assert b"CREATE TABLE public.client_data_key" in script
    return raw + script


def test_restore_drill_on_postgresql(pg_source: Source, pg_target: Target, settings: Settings,
                                     tmp_path: Path) -> None:
    archive = pg_source.archive
    assert archive.stat().st_mode & 0o777 == 0o600
    everything = _archive_text(archive, tmp_path)
    for secret in (settings.master_key_value(), settings.secret_key_value()):
        assert secret.encode() not in everything
    for name in NAMES:
        assert name.encode() not in everything  # personal fields are ciphertext in the dump
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile(ops.MANIFEST))  # type: ignore[arg-type]
    assert names[0] == "database.pgdump" and names[-2:] == [ops.OBJECTS_LIST, ops.MANIFEST]
    assert manifest["database"]["tables"] == pg_source.counts
    assert manifest["keys"]["client_keys_destroyed"] == 1

    result = pg_target.restore(archive, check_evidence=True)

    # Row counts match, table by table.
    assert _counts(pg_target.url) == pg_source.counts
    assert result.rows == sum(pg_source.counts.values()) and result.objects_restored == 3
    assert result.evidence == {"records": 3, "intact": 2, "mismatch": 0, "unreadable": 0,
                               "key_destroyed": 1}
    seeded = pg_source.seeded
    engine = create_db_engine(pg_target.url)
    try:
        # The audit chain verifies (the anchor's signature too), every event restored.
        with engine.connect() as conn:
            report = audit.verify_all(conn)
        assert report.ok and report.anchors >= 1
        assert report.events == pg_source.counts["audit_event"]
        keys.clear_key_caches()  # as a fresh process would: keys unwrapped from the restore
        with Session(engine) as db:
            # Every evidence file re-hashes to its recorded SHA-256 (the integrity check's code).
            for evidence_id, sha256 in seeded.evidence.items():
                stored = evidence_service.open_for_check(db, evidence_id)
                assert stored is not None and stored.evidence.sha256 == sha256
                assert evidence_service.hash_stored(stored, pg_target.storage) == "intact"
            # Client fields decrypt with the same master key.
            for client_id, name in seeded.clients.items():
                client = db.get(Client, client_id)
                record = clients_service.decrypt_record(db, seeded.supervisor, client)
                assert record.fields["legal_name"] == name
                assert record.fields["address"] == ADDRESS
            # The purged client stays shredded: no key, its ciphertexts do not open.
            assert db.get(ClientDataKey, seeded.purged).wrapped_keyset is None
            with pytest.raises(keys.KeyDestroyed):
                keys.decrypt_field(db, org_id=seeded.org_id, client_id=seeded.purged,
                                   table="client", column="legal_name",
                                   row_id=str(seeded.purged),
                                   ciphertext=seeded.purged_ciphertext)
            assert evidence_service.open_for_check(db, seeded.purged_evidence) is None
            db.rollback()
        # With another master key nothing decrypts, and the error says why.
        keys.use_kek_provider(keys.LocalKekProvider("fictional-wrong-master-key"))
        try:
            with Session(engine) as db:
                status = keys.key_status(db)
                assert [(s.aead_keys, s.kek_current) for s in status] == [(None, False)]
                client_id = next(iter(seeded.clients))
                with pytest.raises(ConfigurationError, match="ADVOCASE_MASTER_KEY"):
                    clients_service.decrypt_record(db, seeded.supervisor, db.get(Client, client_id))
        finally:
            keys.use_kek_provider(None)
    finally:
        engine.dispose()

    # Restoring again over the restored copy needs --force; identical objects are kept; a
    # client purged there after the backup was taken stays purged.
    with pytest.raises(ops.BackupError, match="--force"):
        pg_target.restore(archive)
    purged_since = _purge_one(pg_target.url, seeded)
    again = pg_target.restore(archive, force=True)
    assert (again.objects_restored, again.objects_kept) == (0, 3)
    assert again.erasures_replayed == 1
    _assert_purged(pg_target.url, seeded, purged_since)


def _purge_one(url: str, seeded: Seeded) -> UUID:
    """Purge a live client in a restored database (committed) and return its id."""
    client_id = next(iter(seeded.clients))
    engine = create_db_engine(url)
    try:
        with Session(engine) as db:
            clients_service.purge_client(db, seeded.supervisor, client_id)
            db.commit()
    finally:
        engine.dispose()
    return client_id


def _assert_purged(url: str, seeded: Seeded, client_id: UUID) -> None:
    engine = create_db_engine(url)
    try:
        keys.clear_key_caches()
        with engine.connect() as conn:
            assert audit.verify_all(conn).ok
            replayed = conn.execute(sa.text(
                "SELECT count(*) FROM audit_event WHERE action = 'backup.erasure_replayed' "
                "AND object_id = :id"), {"id": str(client_id)}).scalar_one()
            assert replayed == 1
        with Session(engine) as db:
            client = db.get(Client, client_id)
            assert client.purged_at is not None and client.legal_name is None
            assert db.get(ClientDataKey, client_id).wrapped_keyset is None
            evidence = db.scalar(sa.select(Evidence.id).where(Evidence.client_id == client_id))
            assert evidence_service.open_for_check(db, evidence) is None
    finally:
        engine.dispose()


# --- SQLite, through the command line ------------------------------------------------------


def test_sqlite_round_trip_through_the_cli(settings: Settings, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    with _source("sqlite", tmp_path, settings) as source:
        _round_trip(source, settings, tmp_path, monkeypatch)


def _round_trip(source: Source, settings: Settings, tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> None:
    from app.cli import cli

    target_url = f"sqlite:///{tmp_path / 'restored.sqlite'}"
    target = Target(target_url, tmp_path / "restored-storage", settings)
    current = {"settings": source.settings}
    monkeypatch.setattr(ops, "get_settings", lambda: current["settings"])
    runner = CliRunner()
    archive = tmp_path / "sqlite.tar"

    made = runner.invoke(cli, ["backup", "--to", str(archive), "--json"])
    assert made.exit_code == 0, made.output
    assert json.loads(made.stdout)["objects"] == 3
    assert archive.stat().st_mode & 0o777 == 0o600
    assert settings.master_key_value().encode() not in archive.read_bytes()
    assert NAMES[0].encode() not in archive.read_bytes()
    refused = runner.invoke(cli, ["backup", "--to", str(archive), "--json"])
    assert refused.exit_code == 1 and "exists already" in json.loads(refused.stdout)["error"]

    current["settings"] = target.settings
    restored = runner.invoke(cli, ["restore", "--from", str(archive), "--json",
                                   "--check-evidence"])
    assert restored.exit_code == 0, restored.output
    data = json.loads(restored.stdout)
    assert data["evidence"]["intact"] == 2 and data["evidence"]["key_destroyed"] == 1
    assert _counts(target_url) == source.counts
    engine = create_db_engine(target_url)
    try:
        with engine.connect() as conn:
            assert audit.verify_all(conn).ok
        with Session(engine) as db:
            for client_id, name in source.seeded.clients.items():
                record = clients_service.decrypt_record(db, source.seeded.supervisor,
                                                        db.get(Client, client_id))
                assert record.fields["legal_name"] == name
            with pytest.raises(keys.KeyDestroyed):
                keys.decrypt_field(db, org_id=source.seeded.org_id,
                                   client_id=source.seeded.purged, table="client",
                                   column="legal_name", row_id=str(source.seeded.purged),
                                   ciphertext=source.seeded.purged_ciphertext)
    finally:
        engine.dispose()

    again = runner.invoke(cli, ["restore", "--from", str(archive), "--json"])
    assert again.exit_code == 1
    assert "not empty" in json.loads(again.stdout)["error"]


# --- the PostgreSQL tools' arguments and messages ------------------------------------------


def test_the_password_goes_to_the_environment_never_to_the_command_line(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    url = ("postgresql+psycopg://fictional_user:fictional-s3cret@db.example.test:5433/"
           "advocase_prod?sslmode=verify-full&application_name=advocase")
    env = ops.pg_environment(url)
    assert (env["PGHOST"], env["PGPORT"], env["PGUSER"], env["PGDATABASE"]) == (
        "db.example.test", "5433", "fictional_user", "advocase_prod")
    assert env["PGPASSWORD"] == "fictional-s3cret" and env["PGSSLMODE"] == "verify-full"

    seen: list[list[str]] = []

    def fake_popen(argv: list[str], **kwargs: Any) -> Any:
        seen.append(argv)
        assert kwargs["env"]["PGPASSWORD"] == "fictional-s3cret"
        raise RuntimeError("stop here")

    monkeypatch.setattr(ops.subprocess, "Popen", fake_popen)

    class OneFile:
        manifest = {"database": {"file": "database.pgdump", "size": 0, "sha256": ""}}

    with pytest.raises(RuntimeError, match="stop here"):
        ops._restore_postgres(OneFile(), url)  # type: ignore[arg-type]
    assert seen and not any("s3cret" in part for part in seen[0])
    assert "--dbname=advocase_prod" in seen[0] and "--single-transaction" in seen[0]


def test_tool_errors_keep_only_the_error_lines_never_row_values() -> None:
    stderr = (b'pg_restore: error: could not execute query: ERROR:  duplicate key value '
              b'violates unique constraint "pk_client"\n'
              b"DETAIL:  Key (id)=(Fictional Client Ada Backupson) already exists.\n"
              b"CONTEXT:  COPY client, line 1: \"Fictional Client Ada Backupson\"\n"
              b"Command was: COPY public.client FROM stdin;\n")
    error = ops._tool_failure("pg_restore", 1, stderr)
    assert "pk_client" in str(error) and "exit 1" in str(error)
    assert "Fictional" not in str(error) and "COPY" not in str(error)


def test_a_backup_of_an_older_schema_is_upgraded_after_restore(settings: Settings,
                                                              tmp_path: Path) -> None:
    from alembic import command
    from alembic.script import ScriptDirectory

    from app.cli import alembic_config

    scripts = ScriptDirectory.from_config(alembic_config())
    head = scripts.get_current_head()
    older = scripts.get_revision(head).down_revision
    with services.own_database("sqlite", tmp_path, "backup_older", migrate=False) as url:
        command.upgrade(alembic_config(url), older)
        source = settings.model_copy(update={"database_url": url,
                                             "storage_dir": tmp_path / "older-storage"})
        made = ops.backup(tmp_path / "older.tar", settings=source)
        assert made.alembic_revision == older
    target = Target(f"sqlite:///{tmp_path / 'upgraded.sqlite'}", tmp_path / "upgraded-storage",
                    settings)
    restored = target.restore(tmp_path / "older.tar")
    assert (restored.alembic_revision, restored.migrated_to) == (older, head)
    assert _counts(target.url)["alembic_version"] == 1
    engine = create_db_engine(target.url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == head
    finally:
        engine.dispose()


# --- on S3-compatible storage (what the compose stack runs, with MinIO) ----------------------


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    from tests.support.s3 import running_s3_server

    yield from running_s3_server()


def test_a_round_trip_from_one_s3_prefix_to_another(settings: Settings, tmp_path: Path,
                                                    s3: Any) -> None:
    """The objects are read from the bucket into the archive and written back to another
    bucket prefix; every evidence file re-hashes there, the purged client's stays shut."""
    source_storage = s3.storage()
    with services.own_database("sqlite", tmp_path, "s3_src") as url:
        seeded = _seed_database(url, source_storage)
        source_settings = settings.model_copy(update={
            "database_url": url, **s3.settings_changes(source_storage.prefix.rstrip("/"))})
        archive = tmp_path / "s3.tar"
        made = ops.backup(archive, settings=source_settings, storage=source_storage)
        assert made.objects == 3
        counts = _counts(url)

    target_storage = s3.storage()
    target_url = f"sqlite:///{tmp_path / 's3-restored.sqlite'}"
    target_settings = settings.model_copy(update={
        "database_url": target_url, **s3.settings_changes(target_storage.prefix.rstrip("/"))})
    result = ops.restore(archive, settings=target_settings, storage=target_storage,
                         check_evidence=True)

    assert result.objects_restored == 3
    assert result.evidence == {"records": 3, "intact": 2, "mismatch": 0, "unreadable": 0,
                               "key_destroyed": 1}
    assert _counts(target_url) == counts
    assert len(s3.keys(target_storage.prefix)) == 3
    engine = create_db_engine(target_url)
    try:
        keys.clear_key_caches()
        with Session(engine) as db:
            for evidence_id, sha256 in seeded.evidence.items():
                stored = evidence_service.open_for_check(db, evidence_id)
                assert stored is not None and stored.evidence.sha256 == sha256
                assert evidence_service.hash_stored(stored, target_storage) == "intact"
            assert evidence_service.open_for_check(db, seeded.purged_evidence) is None
    finally:
        engine.dispose()
