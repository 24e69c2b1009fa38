"""Scale: seed an agency at realistic size on PostgreSQL fast, then drive a mixed workload.

    .venv/bin/python -m tests.bench.scale seed|run|all|drop [--clients 100000]
        [--incidents 1000000] [--evidence 200000] [--database-url URL] [--var-dir DIR]

``seed`` drops and creates its own database (default ``advocase_scale`` on 127.0.0.1; any
other name than ``advocase_scale`` or ``advocase_scale_<suffix>``, or any other host than
loopback, is refused before anything is touched), migrates it with ``advocase migrate``
into ``--var-dir`` (which holds the generated master and secret keys and the stored
evidence objects; it must not be a folder of real data: it is created empty or refused),
and fills it. ``run`` serves that database and drives it (``--duration`` seconds, loopback
only, it stops by itself). ``all`` does both then drops everything; ``drop`` drops the
database and the var folder.

How the seed is fast and still what the app reads (see ``docs/benchmarks.md``):

- each worker process builds its rows with the app's own code: the client's personal
  fields sealed by ``app.clients.service._write_personal`` (``app.core.keys`` under the
  client's own data key, bound to table, column and row, with the name blind indexes),
  incidents validated by the API's ``IncidentCreate`` and built by the incidents service
  (``check_occurrence``, ``_new_revision``, ``_fields``, ``_place``), evidence sealed by the
  evidence service's helpers with its file encrypted by ``app.core.storage``'s
  ``encrypting_writer`` under a fresh object keyset sealed to the client;
- a client's data key is made as ``app.core.keys._new_client_key`` makes it (a Tink AES-GCM
  keyset wrapped by the org keyset with the same associated data) but remembered in the
  session's key memo instead of being inserted and read back row by row;
- rows go in with PostgreSQL ``COPY`` (psycopg's ``cursor.copy``), one transaction per
  chunk of clients, into the tables the migrations made (nothing is dropped or altered);
- evidence objects are written by :class:`SeedingStorage`: the same folder layout and
  object bytes as ``LocalStorage`` but no fsync per object; one ``os.sync()`` at the end
  makes them durable. For seeding only: a crash midway means seeding again;
- the audit chain gets one real ``seed.batch`` event per chunk (appended through
  ``app.core.audit``, so the chain verifies) instead of a faked per-row history: the seeded
  rows never happened through the API, and the log says so.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from app.core.storage import LocalStorage
from tests.bench.servers import on_sigterm

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/advocase_scale"
OWN_NAME = re.compile(r"^advocase_scale(_[a-z0-9_]{1,40})?$")
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
DEFAULT_VAR_DIR = Path(tempfile.gettempdir()) / "advocase-scale"
VAR_MARK = ".advocase-scale"  # a var folder this benchmark made (and may delete)
CLIENTS_PER_CHUNK = 500
CASELOAD = 250  # clients per advocate
REVISED = 0.1  # share of incidents with a second revision (a correction)
SEED_TIMEOUT_S = 3_600
ORG_SLUG = "scale-agency"
TABLES = ("client", "client_data_key", "client_assignment", "incident", "incident_revision",
          "incident_revision_category", "evidence", "evidence_custody_event", "reminder",
          "audit_event")


class Refused(SystemExit):
    """The database or folder is not this benchmark's own: nothing was touched."""


def check_own_database(url: str) -> sa.URL:
    """Refuse any database that is not this benchmark's throw-away one on loopback."""
    parsed = sa.make_url(url)
    if parsed.drivername != "postgresql+psycopg":
        raise Refused(f"refused: the scale benchmark runs on PostgreSQL through psycopg "
                      f"(postgresql+psycopg://), not {parsed.drivername}")
    if parsed.host not in LOOPBACK:
        raise Refused(f"refused: the database must be on loopback, not {parsed.host!r}")
    if not OWN_NAME.fullmatch(parsed.database or ""):
        raise Refused(f"refused: {parsed.database!r} is not this benchmark's own database "
                      "(advocase_scale or advocase_scale_<suffix>); it drops and recreates it")
    return parsed


def prepare_var_dir(folder: Path, *, fresh: bool) -> Path:
    """The benchmark's var folder: made empty and marked (``fresh``), or one it made before;
    any other non-empty folder is refused (it may hold someone's keys and files)."""
    folder = folder.resolve()
    if folder.exists() and any(folder.iterdir()) and not (folder / VAR_MARK).exists():
        raise Refused(f"refused: {folder} is not empty and was not made by this benchmark")
    if fresh:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(mode=0o700, parents=True)
        (folder / VAR_MARK).write_text("made by tests/bench/scale.py; safe to delete\n")
    elif not (folder / VAR_MARK).exists():
        raise Refused(f"refused: {folder} holds no seeded data; run `seed` first")
    return folder


# --- seeding (runs in worker processes started with "spawn": the app is imported there) ---


def _use_env(env: dict[str, str]) -> None:
    for name in [k for k in os.environ if k.startswith("ADVOCASE_")]:
        del os.environ[name]
    os.environ.update(env)


class SeedingStorage(LocalStorage):
    """``LocalStorage``'s layout and object bytes without an fsync per object: the object
    is written under its final name directly (a failure removes it). Seeding only: the
    seeder calls ``os.sync()`` once at the end instead of fsyncing 200,000 files."""

    @contextmanager
    def create(self, key: str) -> Iterator[Any]:
        final = self._path(key)
        self._ensure_parent(final)
        fd = os.open(final, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        out = os.fdopen(fd, "wb")
        done = False
        try:
            yield out
            done = True
        finally:
            out.close()
            if not done:
                with suppress(FileNotFoundError):
                    os.unlink(final)


def _seed_agency(advocates: int) -> dict[str, Any]:
    """The fictional agency, its advocates and a supervisor, and the org keyset."""
    from app.core import keys
    from app.db import unit_of_work
    from app.identity import service as identity

    with unit_of_work() as db:
        org = identity.create_org(db, name="Scale Agency (fictional)", slug=ORG_SLUG)
        ids = [str(identity.create_user(
            db, None, org=org, email=f"scale.advocate.{n:04d}@scale.advocase.test",
            display_name=f"Scale Advocate {n:04d} (fictional)", role="advocate").user.id)
            for n in range(advocates)]
        supervisor = identity.create_user(
            db, None, org=org, email="scale.supervisor@scale.advocase.test",
            display_name="Scale Supervisor (fictional)", role="supervisor").user.id
        keys._org_keys(db, org.id)  # the org keyset, made as the first client would make it
        return {"org_id": str(org.id), "advocate_ids": ids, "supervisor_id": str(supervisor)}


def _share(total: int, parts: int, n: int) -> int:
    return total // parts + (1 if n < total % parts else 0)


EVIDENCE_LINES = (
    "Fictional transcript of messages, kept as evidence.",
    "[21:04] Unknown number: you think you can hide from me?",
    "[21:06] Unknown number: I know where your sister lives.",
    "[21:30] Unknown number: answer the phone.",
    "[22:15] Unknown number: fine. see you tomorrow.",
    "Fictional note: screenshot taken by the client on her own phone.",
)


def _evidence_text(rng: random.Random, n: int) -> bytes:
    lines = [f"Scale benchmark evidence {n} (fictional; no real person)."]
    lines += rng.choices(EVIDENCE_LINES, k=rng.randint(4, 40))
    return ("\n".join(lines) + "\n").encode()


def _copy(db: Any, table: sa.Table, rows: list[tuple[Any, ...]]) -> None:
    if not rows:
        return
    columns = ", ".join(f'"{c.name}"' for c in table.columns)
    raw = db.connection().connection.driver_connection
    with raw.cursor() as cur, cur.copy(f"COPY {table.name} ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


class _Rows:
    """Rows of one table as tuples in column order. Building a SQLModel object per row cost
    more than sealing its fields (40 % of the seed), so a row starts from the column values
    of one object the model made (its defaults) and every per-row value is set explicitly;
    a column the model gains later is then filled with its default, not forgotten."""

    def __init__(self, model: Any, **required: Any) -> None:
        self.table: sa.Table = model.__table__
        self.names = [c.name for c in self.table.columns]
        example = model(**required)
        self.defaults = {name: getattr(example, name) for name in self.names}
        self.rows: list[tuple[Any, ...]] = []

    def add(self, values: dict[str, Any]) -> None:
        unknown = set(values) - set(self.defaults)
        if unknown:
            raise KeyError(f"{self.table.name} has no column {sorted(unknown)}")
        merged = self.defaults | values
        self.rows.append(tuple(merged[name] for name in self.names))


class _Obj:
    """Attribute access over a dict, for the app's helpers that read ``obj.org_id`` and set
    ``obj.preferred_name`` (clients' ``_write_personal``, the services' ``_place``)."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)


def _revision_values(actor: Any, incident: dict[str, Any], number: int, window: Any,
                     data: Any) -> dict[str, Any]:
    """What ``app.incidents.service._new_revision`` sets (checked against it once per
    chunk by :func:`_check_revision_mirror`)."""
    from uuid import uuid4

    return {"id": uuid4(), "org_id": incident["org_id"], "client_id": incident["client_id"],
            "incident_id": incident["id"], "revision": number, "created_by": actor.id,
            "retracted": False, "occurred_start": window.start, "occurred_end": window.end,
            "occurred_precision": window.precision, "occurred_time_zone": window.time_zone,
            "children_present": data.children_present,
            "weapons_involved": data.weapons_involved, "content": ""}


def _check_revision_mirror(actor: Any, incident: dict[str, Any], window: Any,
                           data: Any) -> None:
    from app.incidents import service as incidents
    from app.incidents.models import Incident

    real = incidents._new_revision(actor, Incident(**incident), 2, window=window,
                                   children_present=data.children_present,
                                   weapons_involved=data.weapons_involved, retracted=False)
    mirror = _revision_values(actor, incident, 2, window, data)
    differ = [k for k, v in mirror.items() if k != "id" and getattr(real, k) != v]
    if differ:
        raise RuntimeError(f"the seeder's revision differs from the service's in {differ}")


_BODY_POOL: dict[tuple[str, date], list[tuple[Any, Any, dict[str, Any]]]] = {}
BODIES_PER_ZONE = 3_000


def _bodies(zone: str, today: date, now: datetime) -> list[tuple[Any, Any, dict[str, Any]]]:
    """Incidents as advocates send them (``tests.bench.incidents.incident_body``), each
    validated by the API's ``IncidentCreate``, its occurrence checked by the service's
    ``check_occurrence`` and its content taken by ``_fields``: made once per process and
    zone, then drawn from (each drawn incident is still sealed anew, under its own client's
    key and row). Making and validating a body cost as much as sealing it."""
    from app.incidents import service as incidents
    from app.incidents.schemas import IncidentCreate
    from tests.bench.incidents import incident_body

    pool = _BODY_POOL.get((zone, today))
    if pool is None:
        rng = random.Random(zone)  # noqa: S311 - fictional data, not secrets
        pool = []
        for _ in range(BODIES_PER_ZONE):
            data = IncidentCreate.model_validate(incident_body(rng, zone, today))
            pool.append((data, incidents.check_occurrence(data.occurred, now),
                         incidents._fields(data)))
        _BODY_POOL[(zone, today)] = pool
    return pool


def _seed_chunk(agency: dict[str, Any], lo: int, hi: int, clients_total: int,
                incidents_total: int, evidence_total: int, storage_dir: str) -> dict[str, Any]:
    """Clients ``lo``..``hi-1`` with their keys, assignments, incidents, evidence and one
    reminder each, in one transaction; returns counts and one sample to check later."""
    from uuid import UUID, uuid4

    import tink
    from tink import aead

    from app import demo
    from app.clients import service as clients
    from app.clients.models import Client, ClientAssignment
    from app.core import audit, keys
    from app.core.access import Actor
    from app.core.key_models import ClientDataKey
    from app.core.storage import encrypting_writer, new_object_keyset
    from app.core.timezones import iana_zone
    from app.db import unit_of_work, utcnow
    from app.evidence import service as evidence_service
    from app.evidence.models import CustodyEvent, Evidence
    from app.incidents import service as incidents
    from app.incidents.models import Incident, IncidentRevision, IncidentRevisionCategory
    from app.reminders import service as reminders
    from app.reminders.models import Reminder
    from tests.bench.incidents import ZONES

    rng = random.Random(lo)  # noqa: S311 - fictional data, not secrets
    storage = SeedingStorage(Path(storage_dir))
    org_id = UUID(agency["org_id"])
    advocates = [UUID(a) for a in agency["advocate_ids"]]
    now = utcnow()
    year = now.year
    nobody = uuid4()
    t = {
        "client": _Rows(Client, org_id=org_id, case_number=""),
        "key": _Rows(ClientDataKey, client_id=nobody, org_id=org_id, key_version=1),
        "assignment": _Rows(ClientAssignment, client_id=nobody, user_id=nobody, org_id=org_id),
        "incident": _Rows(Incident, org_id=org_id, client_id=nobody, created_by=nobody),
        "revision": _Rows(IncidentRevision, org_id=org_id, client_id=nobody,
                          incident_id=nobody, revision=1, created_by=nobody,
                          occurred_start=now, occurred_precision="date",
                          occurred_time_zone="UTC", content=""),
        "category": _Rows(IncidentRevisionCategory, revision_id=nobody, category="physical",
                          org_id=org_id),
        "evidence": _Rows(Evidence, org_id=org_id, client_id=nobody, incident_id=nobody,
                          storage_key="", sealed_keyset=b"", content_type="text/plain",
                          size_bytes=1, sha256="0" * 64, uploaded_by=nobody),
        "custody": _Rows(CustodyEvent, org_id=org_id, evidence_id=nobody, actor_type="user",
                         action="upload"),
        "reminder": _Rows(Reminder, org_id=org_id, assignee_id=nobody, kind="manual",
                          due_at=now),
    }
    sample: dict[str, Any] | None = None
    with unit_of_work() as db:
        org = keys._org_keys(db, org_id, create=False)
        memo = keys._memo(db)
        for i in range(lo, hi):
            advocate = advocates[(i // CASELOAD) % len(advocates)]
            actor = Actor(kind="user", id=advocate, org_id=org_id, role="advocate")
            zone = ZONES[i % len(ZONES)]
            created = now - timedelta(minutes=rng.randrange(60, 3 * 365 * 24 * 60))
            status = rng.choices(("active", "intake", "closed"), (70, 20, 10))[0]
            client = _Obj(**t["client"].defaults)
            client.__dict__.update(
                id=uuid4(), org_id=org_id, case_number=f"{year}-{i + 1:06d}", status=status,
                urgent=rng.random() < 0.05, created_by=advocate, created_at=created,
                updated_at=created, closing_reason="goals_met" if status == "closed" else None,
                closed_at=now if status == "closed" else None)
            # The client's data key, as keys._new_client_key makes it.
            handle = tink.new_keyset_handle(aead.aead_key_templates.AES256_GCM)
            t["key"].add({"client_id": client.id, "org_id": org_id, "created_at": created,
                          "key_version": org.version, "wrapped_keyset": keys._wrap(
                              handle, org.wrapping, keys._client_ad(org_id, client.id))})
            memo[("client", client.id)] = keys._ClientKey(org_id, handle.primitive(aead.Aead))
            first = demo.CLIENT_NAMES[i % len(demo.CLIENT_NAMES)]
            personal = demo.fictional_personal(rng, first) | {
                "preferred_name": f"Scale Client {first} {i:06d}"}
            clients._write_personal(db, client, personal)  # type: ignore[arg-type]
            t["client"].add(client.__dict__)
            t["assignment"].add({"client_id": client.id, "user_id": advocate, "org_id": org_id,
                                 "assigned_at": created, "assigned_by": advocate})
            reminder_id = uuid4()
            t["reminder"].add({
                "id": reminder_id, "org_id": org_id, "client_id": client.id,
                "assignee_id": advocate, "kind": "manual", "audience": "staff",
                "created_by": advocate, "created_at": created, "updated_at": created,
                "due_at": now + timedelta(minutes=rng.randrange(-3 * 1440, 30 * 1440)),
                "note": keys.encrypt_field(
                    db, plaintext="Fictional: call back about the court date", org_id=org_id,
                    client_id=client.id, table=reminders.TABLE, column="note",
                    row_id=str(reminder_id))})

            today = now.astimezone(iana_zone(zone)).date()
            heads: list[dict[str, Any]] = []
            for _ in range(_share(incidents_total, clients_total, i)):
                data, window, content = rng.choice(_bodies(zone, today, now))
                incident = {"id": uuid4(), "org_id": org_id, "client_id": client.id,
                            "created_by": advocate, "created_at": min(now, window.start + (
                                timedelta(minutes=rng.randrange(60, 7 * 24 * 60))))}
                if not heads and i == lo:
                    _check_revision_mirror(actor, incident, window, data)
                categories = incidents._ordered(data.categories)
                for number in (1, 2) if rng.random() < REVISED else (1,):
                    revision = _Obj(**_revision_values(actor, incident, number, window, data))
                    revision.created_at = incident["created_at"] + timedelta(days=number - 1)
                    reason = None
                    if number == 2:
                        content = content | {"advocate_observations": (
                            content["advocate_observations"] + " Fictional correction: the "
                            "client remembered it was the next evening.").strip()}
                        reason = "Fictional: the client corrected the date"
                    revision.content = keys.encrypt_json(
                        db, value=content, **incidents._place(revision, "content")) or ""  # type: ignore[arg-type]
                    revision.reason = keys.encrypt_field(
                        db, plaintext=reason, **incidents._place(revision, "reason"))  # type: ignore[arg-type]
                    t["revision"].add(revision.__dict__)
                    for category in categories:
                        t["category"].add({"revision_id": revision.id, "category": category,
                                           "org_id": org_id})
                t["incident"].add(incident)
                heads.append(incident)
                if sample is None:
                    sample = {"client_id": str(client.id), "advocate_id": str(advocate),
                              "preferred_name": personal["preferred_name"],
                              "incident_id": str(incident["id"]), "place": content["place"]}

            for n in range(_share(evidence_total, clients_total, i) if heads else 0):
                incident = rng.choice(heads)
                evidence_id = uuid4()
                body = _evidence_text(rng, n)
                keyset = new_object_keyset()
                key = evidence_service.storage_key(org_id, evidence_id)
                with encrypting_writer(storage, key, keyset,
                                       evidence_service.content_associated_data(evidence_id)
                                       ) as plaintext:
                    plaintext.write(body)
                uploaded = min(now, incident["created_at"] + timedelta(
                    hours=rng.randrange(1, 72)))
                digest = hashlib.sha256(body).hexdigest()
                evidence = _Obj(
                    id=evidence_id, org_id=org_id, client_id=client.id,
                    incident_id=incident["id"], storage_key=key, content_type="text/plain",
                    size_bytes=len(body), sha256=digest,
                    captured_at=uploaded - timedelta(hours=1), uploaded_by=advocate,
                    uploaded_at=uploaded, sealed_keyset=keys.seal_keyset_for_client(
                        db, org_id=org_id, client_id=client.id,
                        purpose=evidence_service.KEYSET_PURPOSE, bound_to=evidence_id,
                        keyset=keyset))
                evidence.original_filename = evidence_service._seal(
                    db, evidence, "original_filename", f"messages-{n:02d}.txt")  # type: ignore[arg-type]
                evidence.description = evidence_service._seal(
                    db, evidence, "description", "Fictional: screenshots of threats")  # type: ignore[arg-type]
                evidence.source = evidence_service._seal(
                    db, evidence, "source", {"captured_by": "client", "device": "phone",  # type: ignore[arg-type]
                                             "notes": None})
                t["evidence"].add(evidence.__dict__)
                t["custody"].add({"id": uuid4(), "org_id": org_id, "evidence_id": evidence_id,
                                  "at": uploaded, "actor_type": "user", "actor_id": advocate,
                                  "action": "upload", "purpose": "case_work"})
                if sample is not None and "evidence_id" not in sample:
                    sample |= {"evidence_id": str(evidence_id), "evidence_sha256": digest}
        for name in ("client", "key", "assignment", "incident", "revision", "category",
                     "evidence", "custody", "reminder"):
            _copy(db, t[name].table, t[name].rows)
        counts = {name: len(rows.rows) for name, rows in t.items()}
        audit.append(db, action="seed.batch", org_id=org_id, actor_type="system",
                     object_type="org", object_id=org_id,
                     details={"clients": counts["client"], "incidents": counts["incident"],
                              "evidence": counts["evidence"], "first_case": lo + 1})
    return {"counts": counts, "sample": sample}


def _finish(agency: dict[str, Any], clients_total: int) -> None:
    """The case-number counter (new clients continue after the seeded ones), and statistics."""
    from uuid import UUID

    from app.clients.models import CaseNumberCounter
    from app.db import get_engine, unit_of_work, utcnow

    with unit_of_work() as db:
        db.add(CaseNumberCounter(org_id=UUID(agency["org_id"]), year=utcnow().year,
                                 last=clients_total))
    with get_engine().connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE"))


def _row_counts() -> dict[str, int]:
    from app.db import get_engine

    with get_engine().connect() as conn:
        return {table: int(conn.scalar(sa.text(f"SELECT count(*) FROM {table}")))  # noqa: S608
                for table in TABLES}


def _verify_audit() -> dict[str, Any]:
    from app.core import audit
    from app.db import get_engine

    with get_engine().connect() as conn:
        report = audit.verify_all(conn)
    return {"ok": report.ok, "chains": report.chains, "events": report.events,
            "text": report.broken.describe() if report.broken else "intact"}


@dataclass
class Seeded:
    seconds: dict[str, float]
    rows: dict[str, int]
    agency: dict[str, Any]
    sample: dict[str, Any]
    audit_ok: bool


def seed(env: dict[str, str], args: argparse.Namespace) -> Seeded:
    start = time.perf_counter()
    stages: dict[str, float] = {}
    advocates = max(1, -(-args.clients // CASELOAD))
    storage_dir = str(Path(env["ADVOCASE_VAR_DIR"]) / "storage")
    with ProcessPoolExecutor(max_workers=args.processes, mp_context=get_context("spawn"),
                             initializer=_use_env, initargs=(env,)) as pool:
        try:
            agency = pool.submit(_seed_agency, advocates).result(timeout=600)
            stages["agency"] = time.perf_counter() - start
            futures = {pool.submit(_seed_chunk, agency, lo, min(lo + CLIENTS_PER_CHUNK,
                                                                 args.clients),
                                   args.clients, args.incidents, args.evidence,
                                   storage_dir): lo
                       for lo in range(0, args.clients, CLIENTS_PER_CHUNK)}
            done, step, sample = 0, max(args.clients // 10, 1), None
            for future in as_completed(futures, timeout=SEED_TIMEOUT_S):
                result = future.result()
                if futures[future] == 0:
                    sample = result["sample"]
                before, done = done, done + result["counts"]["client"]
                if done // step != before // step or done == args.clients:
                    print(f"  {done:,} clients with their incidents and evidence: "
                          f"{time.perf_counter() - start:.0f} s", flush=True)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        stages["rows"] = time.perf_counter() - start
        os.sync()  # the evidence objects, written without an fsync each
        stages["sync"] = time.perf_counter() - start
        pool.submit(_finish, agency, args.clients).result(timeout=1_800)
        stages["vacuum_analyze"] = time.perf_counter() - start
        rows = pool.submit(_row_counts).result(timeout=600)
        verified = pool.submit(_verify_audit).result(timeout=600)
        stages["counted_and_verified"] = time.perf_counter() - start
    assert sample is not None
    if not verified["ok"]:
        raise RuntimeError(f"the audit chain does not verify after seeding: {verified['text']}")
    return Seeded(stages, rows, agency, sample, verified["ok"])


# --- the mixed workload -------------------------------------------------------------------
#
# Two wrk processes run at once for the same duration: one sends only reads, the other only
# writes, so wrk's own latency distribution (exact, per process) is the distribution of each
# class, measured under the mixed load of both. Within a class each request is drawn from a
# weighted, shuffled list of (advocate token, route, path[, body]) items: many advocates,
# each reaching only their own caseload. Per route, the server's Prometheus histogram
# (advocase_http_request_duration_seconds, scraped before and after) gives the count, the
# mean and the share answered within 100 ms and 200 ms (bucket bounds of that histogram).

READ_WEIGHTS = {
    "caseload": 20, "client": 20, "incidents": 15, "incident": 15, "timeline": 10,
    "my_day": 10, "notifications": 10,
}
WRITE_WEIGHTS = {"contact": 50, "incident_create": 25, "reminder_create": 25}
ROUTES = {
    "caseload": ("GET", "/api/v1/clients"),
    "client": ("GET", "/api/v1/clients/{client_id}"),
    "incidents": ("GET", "/api/v1/clients/{client_id}/incidents"),
    "incident": ("GET", "/api/v1/incidents/{incident_id}"),
    "timeline": ("GET", "/api/v1/clients/{client_id}/timeline"),
    "my_day": ("GET", "/api/v1/reminders"),
    "notifications": ("GET", "/api/v1/notifications"),
    "contact": ("POST", "/api/v1/clients/{client_id}/contacts"),
    "incident_create": ("POST", "/api/v1/clients/{client_id}/incidents"),
    "reminder_create": ("POST", "/api/v1/reminders"),
}
TARGET_P99_MS = {"reads": 100.0, "writes": 200.0}
ITEMS_PER_CLASS = 4_000
CLIENTS_PER_ADVOCATE = 20
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _workload_setup(advocates: int, seed: int) -> dict[str, Any]:
    """Tokens for ``advocates`` advocates (a session row and an ES256 token each, as a
    sign-in makes them) and, for each, some clients of their caseload with an incident."""

    from app.clients.models import ClientAssignment
    from app.db import unit_of_work, utcnow
    from app.identity import tokens
    from app.identity.models import AuthSession, Org, StaffUser
    from app.incidents.models import Incident

    rng = random.Random(seed)  # noqa: S311 - fictional data, not secrets
    with unit_of_work() as db:
        org = db.scalar(sa.select(Org).where(Org.slug == ORG_SLUG))
        assert org is not None, "the database was not seeded by this benchmark"
        staff = list(db.scalars(sa.select(StaffUser.id).where(
            StaffUser.org_id == org.id, StaffUser.role == "advocate").order_by(StaffUser.email)))
        chosen = staff[:: max(1, len(staff) // advocates)][:advocates]
        out = []
        for user_id in chosen:
            session = AuthSession(org_id=org.id, user_id=user_id, kind="api",
                                  expires_at=utcnow() + timedelta(hours=3))
            db.add(session)
            db.flush()
            token = tokens.issue_staff_token(user_id=user_id, org_id=org.id, role="advocate",
                                             session_id=session.id)[0]
            client_ids = list(db.scalars(sa.select(ClientAssignment.client_id).where(
                ClientAssignment.user_id == user_id)))
            picked = rng.sample(client_ids, min(CLIENTS_PER_ADVOCATE, len(client_ids)))
            first_incident = dict(db.execute(
                sa.select(Incident.client_id, sa.func.min(Incident.id.cast(sa.Text)))
                .where(Incident.client_id.in_(picked)).group_by(Incident.client_id)).all())
            out.append({"user_id": str(user_id), "token": token, "clients": [
                {"id": str(c), "incident_id": first_incident.get(c)} for c in picked
                if first_incident.get(c)]})
        return {"org_id": str(org.id), "advocates": out}


def _lua(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal here


def _items(setup: dict[str, Any], weights: dict[str, int], rng: random.Random,
           today: date) -> list[tuple[str, str, str, str]]:
    """(route, method, path, body) x token, drawn by weight."""
    from tests.bench.incidents import incident_body

    names, chances = list(weights), list(weights.values())
    items = []
    for _ in range(ITEMS_PER_CLASS):
        route = rng.choices(names, chances)[0]
        advocate = rng.choice(setup["advocates"])
        client = rng.choice(advocate["clients"])
        method, template = ROUTES[route]
        path = template.format(client_id=client["id"], incident_id=client["incident_id"])
        body = ""
        if route in ("caseload", "incidents"):
            path += "?limit=50"
        elif route == "timeline":
            path += "?limit=50"
        elif route == "my_day":
            end = datetime.combine(today + timedelta(days=1), datetime.min.time(), UTC)
            path += "?mine=true&due_before=" + end.strftime("%Y-%m-%dT%H:%M:%SZ")
        elif route == "notifications":
            path += "?unread=true&limit=20"
        elif route == "contact":
            body = json.dumps({"kind": rng.choice(("hotline_call", "in_person", "transport")),
                               "occurred_on": today.isoformat(),
                               "duration_minutes": rng.randrange(5, 90),
                               "notes": "Fictional: talked through the safety plan."})
        elif route == "incident_create":
            body = json.dumps(incident_body(rng, "Europe/London", today))
        elif route == "reminder_create":
            due = datetime.now(UTC) + timedelta(hours=rng.randrange(1, 24 * 14))
            body = json.dumps({"due_at": due.strftime("%Y-%m-%dT%H:%M:%SZ"),
                               "client_id": client["id"],
                               "note": "Fictional: check in about the hearing"})
        items.append((route, method, path, body, advocate["token"]))
    return items


def workload_script(folder: Path, name: str, items: list[tuple[str, ...]],
                    think_ms: int = 0) -> str:
    """A wrk Lua script cycling through ``items`` (each thread from its own offset), counting
    answers that are not 2xx per thread and printing them in ``done``. With ``think_ms``,
    each connection pauses between an answer and its next request for a time drawn
    uniformly from 0 to twice that (wrk's ``delay()``; the pause is not in the latency)."""
    pause = (f"function delay()\n  return math.random(0, {2 * think_ms})\nend\n"
             if think_ms else "")
    entries = ",\n".join(
        "{" + ", ".join(_lua(v) for v in (method, path, body,
                                            f"Bearer {token}")) + "}"
        for _route, method, path, body, token in items)
    script = folder / f"{name}-think{think_ms}.lua"
    script.write_text(f"""\
local items = {{
{entries}
}}
local threads = {{}}
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("offset", counter * 7919)
  table.insert(threads, thread)
end
local i = 0
bad = 0
first_bad = ""
function init(args)
  i = tonumber(wrk.thread:get("offset")) or 0
end
request = function()
  i = i + 1
  local item = items[(i % #items) + 1]
  local headers = {{["Authorization"] = item[4], ["Accept"] = "application/json"}}
  if item[1] == "POST" then
    headers["Content-Type"] = "application/json"
    return wrk.format("POST", item[2], headers, item[3])
  end
  return wrk.format("GET", item[2], headers)
end
response = function(status, headers, body)
  if status < 200 or status > 299 then
    bad = bad + 1
    if first_bad == "" then first_bad = tostring(status) .. " " .. string.sub(body, 1, 300) end
  end
end
done = function(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + (tonumber(thread:get("bad")) or 0)
    local first = thread:get("first_bad")
    if first ~= nil and first ~= "" then io.write("first non-2xx: " .. first .. "\\n") end
  end
  io.write(string.format("non-2xx counted: %d\\n", total))
  io.write(string.format("p90: %.3fms\\n", latency:percentile(90) / 1000))
end
""" + pause)
    return str(script)


_METRIC = re.compile(r'^advocase_http_request_duration_seconds_(bucket|sum|count)\{(.*)\} '
                     r'([0-9.e+-]+)$', re.MULTILINE)


def scrape(base_url: str, token: str) -> dict[tuple[str, str], dict[str, float]]:
    """The server's request-duration histogram by (method, route): count, sum and buckets.
    (Both workers' values: the metrics are kept in multiprocess mode.)"""
    request = urllib.request.Request(base_url + "/metrics",
                                     headers={"Authorization": f"Bearer {token}"})
    with _DIRECT.open(request, timeout=30) as response:  # noqa: S310 - loopback only
        text = response.read().decode()
    out: dict[tuple[str, str], dict[str, float]] = {}
    for kind, labels, value in _METRIC.findall(text):
        fields = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        entry = out.setdefault((fields.get("method", ""), fields.get("route", "")), {})
        key = f"le={fields['le']}" if kind == "bucket" else kind
        entry[key] = entry.get(key, 0.0) + float(value)
    return out


def per_route(before: dict[tuple[str, str], dict[str, float]],
              after: dict[tuple[str, str], dict[str, float]]) -> list[dict[str, Any]]:
    rows = []
    for (method, route), values in sorted(after.items()):
        if not route.startswith("/api/"):
            continue
        old = before.get((method, route), {})
        count = values.get("count", 0) - old.get("count", 0)
        if count <= 0:
            continue
        total = values.get("sum", 0) - old.get("sum", 0)

        def within(bound: str) -> float:
            key = f"le={bound}"
            return (values.get(key, 0) - old.get(key, 0)) / count  # noqa: B023

        rows.append({"method": method, "route": route, "requests": int(count),
                     "mean_ms": round(1000 * total / count, 1),
                     "within_100ms": round(100 * within("0.1"), 2),
                     "within_200ms": round(100 * within("0.2"), 2)})
    return rows


def _get(url: str, token: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with _DIRECT.open(request, timeout=30) as response:  # noqa: S310 - loopback only
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def check_seeded(base_url: str, sample: dict[str, Any], token: str) -> list[str]:
    """Seeded rows read back through the API: a client's name, the client found by that
    name (in other letter case: the blind index), an incident's place, an evidence file's
    bytes (their SHA-256). Returns the problems found."""
    problems = []
    status, body = _get(f"{base_url}/api/v1/clients/{sample['client_id']}", token)
    if status != 200 or json.loads(body).get("preferred_name") != sample["preferred_name"]:
        problems.append(f"client record: HTTP {status}, name not as seeded")
    search = urllib.request.Request(
        f"{base_url}/api/v1/clients/search", method="POST",
        data=json.dumps({"name": sample["preferred_name"].upper()}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with _DIRECT.open(search, timeout=30) as response:  # noqa: S310 - loopback only
        found = [item["id"] for item in json.load(response)["items"]]
    if found != [sample["client_id"]]:
        problems.append("name search (blind index): the seeded client is not found by name")
    status, body = _get(f"{base_url}/api/v1/incidents/{sample['incident_id']}", token)
    if status != 200 or json.loads(body).get("place") != sample["place"]:
        problems.append(f"incident: HTTP {status}, place not as seeded")
    if "evidence_id" in sample:
        status, body = _get(f"{base_url}/api/v1/evidence/{sample['evidence_id']}/content"
                            "?purpose=integrity_check", token)
        if status != 200 or hashlib.sha256(body).hexdigest() != sample["evidence_sha256"]:
            problems.append(f"evidence content: HTTP {status}, SHA-256 not as recorded")
    return problems


def _sample_token(sample: dict[str, Any]) -> str:
    from uuid import UUID

    from app.db import unit_of_work, utcnow
    from app.identity import tokens
    from app.identity.models import AuthSession, StaffUser

    with unit_of_work() as db:
        user = db.get(StaffUser, UUID(sample["advocate_id"]))
        assert user is not None
        session = AuthSession(org_id=user.org_id, user_id=user.id, kind="api",
                              expires_at=utcnow() + timedelta(hours=1))
        db.add(session)
        db.flush()
        return tokens.issue_staff_token(user_id=user.id, org_id=user.org_id, role="advocate",
                                        session_id=session.id)[0]


def _load_sampler(stop_at: float) -> list[float]:
    samples = []
    while time.monotonic() < stop_at:
        samples.append(os.getloadavg()[0])
        time.sleep(5)
    return samples


def _run_pair(wrk: str, base_url: str, scripts: dict[str, str], connections: dict[str, int],
              seconds: int) -> tuple[dict[str, str], dict[str, str]]:
    """Both wrk processes at once for ``seconds``; their reports and (redacted) commands."""
    from tests.bench.wrk import redacted, wrk_command

    procs, commands = {}, {}
    for name, script in scripts.items():
        argv = wrk_command(wrk, base_url, threads=1, connections=connections[name],
                           seconds=seconds, script=script)
        commands[name] = " ".join(redacted(argv)).replace(str(Path(script).parent) + "/", "")
        procs[name] = subprocess.Popen(argv, stdout=subprocess.PIPE,  # noqa: S603
                                       stderr=subprocess.PIPE, text=True)
    out = {}
    try:
        for name, proc in procs.items():
            stdout, stderr = proc.communicate(timeout=seconds + 30)
            if proc.returncode != 0:
                raise RuntimeError(f"wrk ({name}) exited {proc.returncode}: {stderr}")
            out[name] = stdout
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return out, commands


def _class_figures(text: str, target: float) -> dict[str, Any]:
    from tests.bench.wrk import parse_wrk_output

    parsed = parse_wrk_output(text)
    counted = re.search(r"non-2xx counted: (\d+)", text)
    p90 = re.search(r"p90: ([\d.]+)ms", text)
    first_bad = re.search(r"first non-2xx: (.*)", text)
    return {"requests": parsed.requests, "requests_per_second": parsed.requests_per_second,
            "p50_ms": parsed.p50_ms, "p90_ms": float(p90.group(1)) if p90 else None,
            "p99_ms": parsed.p99_ms,
            "non_2xx": max(parsed.non_2xx, int(counted.group(1)) if counted else 0),
            "socket_errors": parsed.socket_errors,
            "first_non_2xx": first_bad.group(1)[:200] if first_bad else None,
            "target_p99_ms": target}


def run_workload(env: dict[str, str], args: argparse.Namespace, wrk: str,
                 sample: dict[str, Any]) -> dict[str, Any]:
    from tests.bench.incidents import lock_waits
    from tests.bench.servers import START_TIMEOUT_S, advocase_server, free_port

    var_dir = Path(env["ADVOCASE_VAR_DIR"])
    log_dir = Path(tempfile.mkdtemp(prefix="advocase-scale-run-"))
    metrics_token = os.urandom(16).hex()
    redis = f"redis://127.0.0.1:6379/{args.redis_db}"
    env = env | {"ADVOCASE_BROKER_URL": redis, "ADVOCASE_RATE_LIMIT_URL": redis,
                 "ADVOCASE_METRICS_TOKEN": metrics_token,
                 # A connection for every request a worker may have in flight (as
                 # tests/bench/clients.py's POOL_NOTE explains), plus a few.
                 "ADVOCASE_DB_POOL_SIZE": str(args.read_connections + args.write_connections),
                 "ADVOCASE_DB_MAX_OVERFLOW": "4"}
    if args.threadpool_size:
        env["ADVOCASE_THREADPOOL_SIZE"] = str(args.threadpool_size)
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"),
                             initializer=_use_env, initargs=(env,)) as pool:
        setup = pool.submit(_workload_setup, args.advocates, 7).result(timeout=600)
        sample_token = pool.submit(_sample_token, sample).result(timeout=600)
    rng = random.Random(11)  # noqa: S311 - fictional data, not secrets
    today = datetime.now(UTC).date()
    items = {"reads": _items(setup, READ_WEIGHTS, rng, today),
             "writes": _items(setup, WRITE_WEIGHTS, rng, today)}
    connections = {"reads": args.read_connections, "writes": args.write_connections}
    server = advocase_server(free_port(), 2, env, var_dir, log_dir)
    results: dict[str, Any] = {"advocates": len(setup["advocates"]),
                               "connections": connections, "phases": []}
    try:
        server.start()
        deadline = server.started_at + START_TIMEOUT_S
        server.wait_for("/healthz", "healthz", deadline)
        server.wait_for("/readyz", "ready", deadline)
        problems = check_seeded(server.base_url, sample, sample_token)
        if problems:
            raise RuntimeError("seeded data does not read back: " + "; ".join(problems))
        print("  a seeded client (also found by name), incident and evidence file read back "
              "as seeded", flush=True)
        for think in args.think_ms:
            scripts = {name: workload_script(log_dir, name, items[name], think)
                       for name in items}
            label = (f"think {think} ms" if think
                     else "no think time (saturation: capacity, not judged)")
            print(f"  {label}: warm-up {args.warmup} s, then {args.duration} s of reads "
                  f"-c{connections['reads']} and writes -c{connections['writes']} at once …",
                  flush=True)
            if args.warmup:
                _run_pair(wrk, server.base_url, scripts, connections, args.warmup)
            before = scrape(server.base_url, metrics_token)
            load_before = os.getloadavg()
            with lock_waits(args.database_url) as waits:
                outputs, commands = _run_pair(wrk, server.base_url, scripts, connections,
                                              args.duration)
            load_after = os.getloadavg()
            after = scrape(server.base_url, metrics_token)
            phase = {"think_ms": think, "label": label, "commands": commands,
                     "load_average": {"before": load_before, "after": load_after},
                     "routes": per_route(before, after), "database": waits}
            for name, text in outputs.items():
                phase[name] = _class_figures(text, TARGET_P99_MS[name])
            results["phases"].append(phase)
        results["server_exit"] = server.stop()
        results["server_log_errors"] = [line for line in server.output().splitlines()
                                        if re.search(r"error|traceback", line, re.I)][:10]
    finally:
        server.stop()
        shutil.rmtree(log_dir, ignore_errors=True)
    return results


def judged(phase: dict[str, Any]) -> bool:
    """Whether the targets apply to a phase: a paced one, advocates at work. Without think
    time the same connections measure the server's capacity, and its p99 is mostly the
    wait in front of the two workers: reported, not judged."""
    return bool(phase["think_ms"])


def report(phase: dict[str, Any], connections: dict[str, int]) -> tuple[str, bool, bool]:
    """A text table of one phase; whether any request failed; whether a target was missed
    (in a judged phase)."""
    waits = phase["database"]
    lines = [f"{phase['label']}; load average 1/5/15 min before "
             f"{'/'.join(f'{v:.2f}' for v in phase['load_average']['before'])}, after "
             f"{'/'.join(f'{v:.2f}' for v in phase['load_average']['after'])}; the "
             f"server's database connections, mean of samples every 0.2 s: "
             f"{waits.get('waiting_for_a_lock', 0):.1f} waiting for a lock, "
             f"{waits.get('idle_in_transaction', 0):.1f} idle in a transaction",
             f"{'class':8} {'conns':>5} {'req/s':>8} {'p50 ms':>8} {'p90 ms':>8} "
             f"{'p99 ms':>8} {'target':>7} {'non-2xx':>7} {'sock err':>8}"]
    failed = False
    for name in ("reads", "writes"):
        r = phase[name]
        errors = sum(r["socket_errors"].values())
        failed |= bool(r["non_2xx"] or errors)
        lines.append(f"{name:8} {connections[name]:>5} "
                     f"{r['requests_per_second']:>8.1f} {r['p50_ms']:>8.1f} "
                     f"{(r['p90_ms'] or 0):>8.1f} {r['p99_ms']:>8.1f} "
                     f"{r['target_p99_ms']:>7.0f} {r['non_2xx']:>7} {errors:>8}")
        if r["first_non_2xx"]:
            lines.append(f"  first non-2xx answer: {r['first_non_2xx']}")
    over = [name for name in ("reads", "writes")
            if phase[name]["p99_ms"] >= phase[name]["target_p99_ms"]]
    missed = judged(phase) and bool(over)
    if not judged(phase):
        lines.append("targets: not judged (capacity)")
    else:
        lines.append("targets: " + ("missed by " + " and ".join(over) if over else "met"))
    lines.append(f"{'route (server side)':52} {'requests':>8} {'mean ms':>8} "
                 f"{'<=100ms':>8} {'<=200ms':>8}")
    for row in phase["routes"]:
        lines.append(f"{row['method'] + ' ' + row['route']:52} {row['requests']:>8} "
                     f"{row['mean_ms']:>8.1f} {row['within_100ms']:>7.2f}% "
                     f"{row['within_200ms']:>7.2f}%")
    return "\n".join(lines), failed, missed


# --- command line --------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("seed", "run", "all", "drop"))
    parser.add_argument("--clients", type=int, default=100_000)
    parser.add_argument("--incidents", type=int, default=1_000_000)
    parser.add_argument("--evidence", type=int, default=200_000)
    parser.add_argument("--processes", type=int, default=len(os.sched_getaffinity(0)),
                        help="seeding processes (default: the cores this process may use)")
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--var-dir", type=Path, default=DEFAULT_VAR_DIR)
    parser.add_argument("--redis-db", type=int, default=9, choices=range(16), metavar="0-15")
    parser.add_argument("--advocates", type=int, default=50,
                        help="advocates signed in for the load (default 50)")
    parser.add_argument("--read-connections", type=int, default=12)
    parser.add_argument("--write-connections", type=int, default=4)
    parser.add_argument("--think-ms", type=lambda text: [int(v) for v in text.split(",")],
                        default=[1000, 0], help="each connection's mean pause between "
                        "requests, one phase per value (default 1000,0: paced, then saturated)")
    parser.add_argument("--threadpool-size", type=int, default=0,
                        help="ADVOCASE_THREADPOOL_SIZE of each API worker (default: the app's)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--duration", type=int, default=60)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if not (1 <= args.clients and args.incidents >= args.clients and args.evidence >= 0):
        parser.error("--clients must be at least 1 and --incidents at least --clients")
    if not (1 <= args.duration <= 600 and 0 <= args.warmup <= 60):
        parser.error("--duration must be 1..600 s and --warmup 0..60 s")
    return args


def _env(args: argparse.Namespace, var_dir: Path) -> dict[str, str]:
    from tests.bench.servers import advocase_env

    return advocase_env(var_dir) | {"ADVOCASE_DATABASE_URL": args.database_url,
                                    "ADVOCASE_ACCESS_TOKEN_MINUTES": "60"}


def _machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cpu = platform.processor() or platform.machine()
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (f"{len(os.sched_getaffinity(0))} cores ({cpu}), {mem:.0f} GiB RAM, "
            f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.2f}")


def _postgres_version(url: str) -> str:
    engine = sa.create_engine(sa.make_url(url).set(database="postgres"),
                              poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return str(conn.scalar(sa.text("SHOW server_version")))
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, on_sigterm)
    from tests.support import services

    try:
        check_own_database(args.database_url)
        state_file = args.var_dir.resolve() / "seeded.json"
        if args.command == "drop":
            prepare_var_dir(args.var_dir, fresh=False)
            services.drop_postgres_database(args.database_url)
            shutil.rmtree(args.var_dir.resolve())
            print("dropped the database and the var folder")
            return 0
        services.require_postgres(args.database_url)
        print(f"machine: {_machine()}; PostgreSQL {_postgres_version(args.database_url)}")
        print(f"command: {shlex.join(['.venv/bin/python', '-m', 'tests.bench.scale', *argv])}",
              flush=True)
        if args.command in ("seed", "all"):
            from tests.bench.servers import migrate

            var_dir = prepare_var_dir(args.var_dir, fresh=True)
            env = _env(args, var_dir)
            services.recreate_postgres_database(args.database_url)
            print(f"migrate: {migrate(env, var_dir)}", flush=True)
            print(f"seeding {args.clients:,} clients, {args.incidents:,} incidents, "
                  f"{args.evidence:,} evidence files in {args.processes} processes …",
                  flush=True)
            seeded = seed(env, args)
            state_file.write_text(json.dumps({"sample": seeded.sample}))
            print(f"seeded in {seeded.seconds['counted_and_verified']:.0f} s: stages (cumulative"
                  f" s) {json.dumps({k: round(v, 1) for k, v in seeded.seconds.items()})}")
            print(f"rows: {json.dumps(seeded.rows)}; audit chain verifies", flush=True)
        if args.command in ("run", "all"):
            from tests.bench.wrk import ensure_wrk, wrk_version

            wrk = ensure_wrk()
            var_dir = prepare_var_dir(args.var_dir, fresh=False)
            env = _env(args, var_dir)
            sample = json.loads(state_file.read_text())["sample"]
            print(f"{wrk_version(wrk)}; 2 API workers; {args.advocates} advocates; reads "
                  f"{READ_WEIGHTS}; writes {WRITE_WEIGHTS}", flush=True)
            results = run_workload(env, args, wrk, sample)
            failed = missed = False
            for phase in results["phases"]:
                text, phase_failed, phase_missed = report(phase, results["connections"])
                failed |= phase_failed
                missed |= phase_missed
                print(text)
            print(f"server exit {results['server_exit']}")
            for line in results["server_log_errors"]:
                print(f"  server log: {line[:200]}")
            if args.json:
                args.json.write_text(json.dumps(results, indent=2))
            if failed:
                print("FAILED: some requests did not answer 2xx")
                return 1
            if missed:
                print("target missed in a paced phase: p99 of reads >= 100 ms or of writes "
                      ">= 200 ms")
                return 1
        return 0
    except Refused as exc:
        print(exc, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; server stopped", file=sys.stderr)
        return 130
    finally:
        if args.command == "all" and (args.var_dir / VAR_MARK).exists():
            services.drop_postgres_database(args.database_url)
            shutil.rmtree(args.var_dir.resolve(), ignore_errors=True)
            print("dropped the database and the var folder")


if __name__ == "__main__":
    sys.exit(main())
