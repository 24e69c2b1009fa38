"""The ``advocase`` command: migrate, serve, worker, beat, dev, version, backup, restore."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

from app import __version__
from app.settings import ConfigurationError, Settings, get_settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _emit(data: dict[str, Any], as_json: bool, text: str) -> None:
    click.echo(json.dumps(data, default=str) if as_json else text)


def _configure_logging(process: str) -> Settings:
    from app.core.logging import configure_logging

    settings = get_settings()
    configure_logging(settings, process)
    return settings


def alembic_config(database_url: str | None = None) -> Any:
    from alembic.config import Config

    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    if database_url:
        config.attributes["database_url"] = database_url
    return config


def run_migrations(revision: str = "head") -> str | None:
    """Upgrade the configured database to ``revision``; returns the revision now current."""
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    from app.db import get_engine
    from workers.embedded_broker import prepare_embedded_broker

    settings = get_settings()
    settings.ensure_dirs()
    command.upgrade(alembic_config(str(settings.database_url)), revision)
    # Before the API, workers and beat start together on it (see the module).
    prepare_embedded_broker(settings)
    with get_engine(settings).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """advocase — case management for advocates."""


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def version(as_json: bool) -> None:
    """Print the version."""
    _emit({"name": "advocase", "version": __version__}, as_json, f"advocase {__version__}")


@cli.command()
@click.option("--revision", default="head", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def migrate(revision: str, as_json: bool) -> None:
    """Upgrade the database schema (to head by default)."""
    _configure_logging("migrate")
    current = run_migrations(revision)
    _emit({"revision": current}, as_json, f"database at revision {current}")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int,
              help="API processes sharing the port.")
def serve(host: str, port: int, workers: int) -> None:
    """Run the HTTP API and dashboard."""
    import uvicorn

    from app.core.metrics_dir import API_SUBDIR, prepare_multiprocess_dir

    settings = _configure_logging("api")
    if workers > 1 and settings.rate_limit_storage_url is None:
        # Each process would count login failures and rate limits on its own.
        raise click.UsageError(
            "several API processes must share rate limits and login throttling: set "
            "ADVOCASE_RATE_LIMIT_URL (or use a Redis ADVOCASE_BROKER_URL)")
    # Before any API process imports prometheus_client: they all write their metrics here.
    prepare_multiprocess_dir(settings, API_SUBDIR)
    from workers.embedded_broker import prepare_embedded_broker

    prepare_embedded_broker(settings)
    uvicorn.run(
        "app.asgi:app_factory",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        server_header=False,
        timeout_graceful_shutdown=10,
    )


@cli.command()
@click.option("--concurrency", default=None, type=int, help="Worker processes (default: cores).")
@click.option("--pool", default="prefork", show_default=True,
              type=click.Choice(["prefork", "solo", "threads"]))
@click.option("--hostname", default=None, help="Worker node name (default: celery@host).")
def worker(concurrency: int | None, pool: str, hostname: str | None) -> None:
    """Run a Celery worker."""
    settings = _configure_logging("worker")
    from app.core.metrics_dir import WORKER_SUBDIR, prepare_multiprocess_dir

    # Before Celery forks its children (and before prometheus_client is imported).
    prepare_multiprocess_dir(settings, WORKER_SUBDIR)
    from workers.celery_app import celery_app
    from workers.embedded_broker import prepare_embedded_broker

    prepare_embedded_broker(settings)

    if settings.worker_metrics_port:
        from celery import signals

        from workers.observability import serve_worker_metrics

        # Once the pool's children exist, so they do not inherit the listening socket.
        signals.worker_ready.connect(lambda **_: serve_worker_metrics(settings), weak=False)
    argv = ["worker", "--loglevel", settings.log_level, "--pool", pool]
    if concurrency:
        argv += ["--concurrency", str(concurrency)]
    if hostname:
        argv += ["--hostname", hostname]
    celery_app.worker_main(argv)


@cli.command()
def beat() -> None:
    """Run Celery beat (exactly one per deployment)."""
    settings = _configure_logging("beat")
    from workers.celery_app import celery_app
    from workers.embedded_broker import prepare_embedded_broker

    prepare_embedded_broker(settings)

    celery_app.start(["beat", "--loglevel", settings.log_level])


def _read_password(prompt: str) -> str:
    """Password from stdin when piped, else prompted twice without echo."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    return click.prompt(prompt, hide_input=True, confirmation_prompt=True)


def _fail(message: str, as_json: bool, code: int = 1) -> None:
    if as_json:
        click.echo(json.dumps({"error": message}))
    click.echo(f"advocase: {message}", err=True)
    sys.exit(code)


@cli.command("create-org")
@click.option("--name", required=True)
@click.option("--slug", default=None, help="Default: derived from the name.")
@click.option("--require-mfa-for-all", is_flag=True, help="MFA for every role, not only admins.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def create_org_command(name: str, slug: str | None, require_mfa_for_all: bool,
                       as_json: bool) -> None:
    """Create an agency; prints its slug and id."""
    _configure_logging("cli")
    from app.core.errors import DomainError
    from app.db import unit_of_work
    from app.identity import service

    try:
        with unit_of_work() as db:
            org = service.create_org(db, name=name, slug=slug,
                                     require_mfa_for_all=require_mfa_for_all)
            data = {"slug": org.slug, "id": str(org.id)}
    except DomainError as exc:
        _fail(exc.detail, as_json)
    _emit(data, as_json, f"created agency {data['slug']} ({data['id']})")


@cli.command("create-user")
@click.option("--org", "org_slug", required=True, help="The agency's slug.")
@click.option("--email", required=True)
@click.option("--role", required=True,
              type=click.Choice(["admin", "supervisor", "advocate", "auditor"]))
@click.option("--name", "display_name", default=None, help="Display name (default: the email).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def create_user_command(org_slug: str, email: str, role: str, display_name: str | None,
                        as_json: bool) -> None:
    """Create a staff account; the password is read from stdin or prompted."""
    _configure_logging("cli")
    from app.core.errors import DomainError
    from app.db import unit_of_work
    from app.identity import service

    password = _read_password("Password")
    try:
        with unit_of_work() as db:
            org = service.get_org_by_slug(db, org_slug)
            user = service.create_user(db, None, org=org, email=email, role=role,
                                       display_name=display_name or email,
                                       password=password).user
            data = {"id": str(user.id), "email": user.email, "role": user.role,
                    "org": org.slug}
    except DomainError as exc:
        problems = "; ".join(e.get("message", "") for e in (exc.errors or []))
        _fail(exc.detail + (f" ({problems})" if problems else ""), as_json)
    _emit(data, as_json, f"created {data['role']} {data['email']} in {data['org']}")


@cli.command("create-partner-app")
@click.option("--org", "org_slug", required=True, help="The agency's slug.")
@click.option("--name", required=True)
@click.option("--scopes", required=True,
              help='Space-separated, from "referrals:read referrals:write resources:read '
                   'resources:write".')
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def create_partner_app_command(org_slug: str, name: str, scopes: str, as_json: bool) -> None:
    """Register a partner app; prints client_id and client_secret (the secret only now)."""
    _configure_logging("cli")
    from app.core.errors import DomainError
    from app.db import unit_of_work
    from app.identity import partners, service

    try:
        with unit_of_work() as db:
            org = service.get_org_by_slug(db, org_slug)
            app, secret = partners.create_partner_app(db, None, org=org, name=name,
                                                      scopes=scopes.split())
            data = {"id": str(app.id), "client_id": app.client_id, "client_secret": secret,
                    "scopes": app.scopes.split(), "org": org.slug}
    except DomainError as exc:
        problems = "; ".join(e.get("message", "") for e in (exc.errors or []))
        _fail(exc.detail + (f" ({problems})" if problems else ""), as_json)
    _emit(data, as_json,
          f"partner app {data['client_id']} created in {data['org']}\n"
          f"client_secret: {data['client_secret']}   (shown this once; store it now)")


@cli.command("reset-mfa")
@click.option("--email", required=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def reset_mfa_command(email: str, as_json: bool) -> None:
    """Turn MFA off for an account (it must enrol again); its sessions end. Audited."""
    _configure_logging("cli")
    from app.core.errors import DomainError
    from app.db import unit_of_work
    from app.identity import service

    try:
        with unit_of_work() as db:
            user = service.reset_mfa_by_email(db, email)
            data = {"id": str(user.id), "mfa_enabled": False}
    except DomainError as exc:
        _fail(exc.detail, as_json)
    _emit(data, as_json, "MFA reset; the account must enrol again at its next sign-in")


@cli.group()
def audit() -> None:
    """The hash-chained audit log."""


@audit.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def audit_verify_command(as_json: bool) -> None:
    """Exit 0 when every chain is intact; otherwise non-zero, naming the first broken event."""
    _configure_logging("cli")
    from app.core import audit as audit_log
    from app.db import get_engine, read_only

    start = time.perf_counter()
    with read_only(get_engine()) as conn:
        report = audit_log.verify_all(conn)
    data: dict[str, Any] = {"ok": report.ok, "chains": report.chains, "events": report.events,
                            "anchors": report.anchors,
                            "seconds": round(time.perf_counter() - start, 3)}
    if report.broken:
        data["broken"] = {"chain_id": str(report.broken.chain_id), "seq": report.broken.seq,
                          "event_id": str(report.broken.event_id) if report.broken.event_id
                          else None, "reason": report.broken.reason}
        _emit(data, as_json, f"audit chain BROKEN: {report.broken.describe()}")
        sys.exit(1)
    _emit(data, as_json, f"audit chain intact: {report.events} events in {report.chains} "
                         f"chains, {report.anchors} anchors checked")


@audit.command("anchor")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def audit_anchor_command(as_json: bool) -> None:
    """Record a signed anchor of every chain head now (beat does this daily)."""
    _configure_logging("cli")
    from app.core import audit as audit_log
    from app.db import unit_of_work

    with unit_of_work() as db:
        anchors = audit_log.anchor_heads(db)
        data = {"anchored": [{"chain_id": str(a.chain_id), "seq": a.seq} for a in anchors]}
    _emit(data, as_json, f"anchored {len(data['anchored'])} chains")


@cli.group("report")
def report_group() -> None:
    """Reports: check a court summary's PDF, manifest or bundle."""


@report_group.command("verify")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--signature", "signature_file", default=None,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="manifest.sig, when FILE is a manifest on its own.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def report_verify_command(file: Path, signature_file: Path | None, as_json: bool) -> None:
    """Exit 0 when FILE (a report PDF, manifest.json or the ZIP bundle) is exactly what
    advocase produced here and every exhibit still matches; 1 otherwise, saying what
    failed."""
    _configure_logging("cli")
    from app.core.storage import get_storage
    from app.db import unit_of_work
    from app.reports import verification

    signature = signature_file.read_text().strip() if signature_file else None
    with file.open("rb") as handle, unit_of_work(reading=True) as db:
        result = verification.verify_file(db, handle, storage=get_storage(),
                                          signature=signature)
    data = result.as_dict()
    lines = [f"{'ok' if c.ok else 'FAILED'}: {c.check}: {c.detail}" for c in result.checks]
    for e in result.exhibits:
        good = e.in_file in ("match", "not_included") and e.stored == "intact"
        lines.append(f"{'ok' if good else 'FAILED'}: exhibit {e.number}: in file {e.in_file}, "
                     f"stored {e.stored}")
    verdict = "verified" if result.ok else "NOT verified"
    _emit(data, as_json, "\n".join([f"{file.name}: {result.file_kind}, {verdict}", *lines]))
    if not result.ok:
        sys.exit(1)


@cli.group("keys")
def keys_group() -> None:
    """Encryption keys: org keysets and client data keys."""


@keys_group.command("rotate")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def keys_rotate_command(as_json: bool) -> None:
    """Add a new primary key to every org keyset; client keys are re-wrapped in the background."""
    _configure_logging("cli")
    from app.core import keys
    from app.db import unit_of_work

    with unit_of_work() as db:
        rotations = keys.rotate_all_org_keys(db)
        data = {"rotated": [{"org_id": str(r.org_id), "from_version": r.from_version,
                             "to_version": r.to_version} for r in rotations]}
    lines = [f"org {r['org_id']}: keyset v{r['from_version']} -> v{r['to_version']}"
             for r in data["rotated"]]
    _emit(data, as_json, "\n".join([*lines, f"rotated {len(lines)} org keysets; client keys "
                                              "are re-wrapped by the worker (see keys status)"]))


@keys_group.command("rewrap")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def keys_rewrap_command(as_json: bool) -> None:
    """Re-wrap now, in this process, every client key still on an older org key version."""
    _configure_logging("cli")
    from app.core import keys
    from app.db import unit_of_work

    with unit_of_work(reading=True) as db:
        org_ids = [status.org_id for status in keys.key_status(db)]
    rewrapped: dict[str, int] = {}
    for org_id in org_ids:
        after, total = None, 0
        while True:
            with unit_of_work() as db:
                batch = keys.rewrap_client_keys(db, org_id=org_id, after_client_id=after)
            total += batch.rewrapped
            if batch.done:
                break
            after = batch.next_after
        rewrapped[str(org_id)] = total
    _emit({"rewrapped": rewrapped}, as_json,
          f"re-wrapped {sum(rewrapped.values())} client keys in {len(rewrapped)} orgs")


@keys_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def keys_status_command(as_json: bool) -> None:
    """Per org: keyset version and how many client keys are on it."""
    _configure_logging("cli")
    import sqlalchemy as sa

    from app.core import keys
    from app.db import unit_of_work
    from app.identity.models import Org

    with unit_of_work(reading=True) as db:
        report = keys.key_status(db)
        slugs = dict(db.execute(sa.select(Org.id, Org.slug)).all())  # type: ignore[call-overload]
    orgs = [status.as_dict() | {"slug": slugs.get(status.org_id)} for status in report]
    lines = [
        f"{o['slug'] or o['org_id']}: keyset v{o['version']} ({o['aead_keys']} AEAD keys, "
        f"{o['prf_keys']} PRF key{'s' if o['prf_keys'] != 1 else ''}); client keys: "
        f"{o['on_current_version']} on v{o['version']}, {o['on_older_versions']} older, "
        f"{o['destroyed']} destroyed"
        + ("; re-wrap in progress" if o["rotation_pending"] else "")
        + ("" if o["kek_current"] else "; WRAPPED BY ANOTHER MASTER KEY")
        for o in orgs
    ]
    _emit({"orgs": orgs}, as_json, "\n".join(lines) if lines else "no org keys yet")


@cli.command("backup")
@click.option("--to", "target", required=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="The archive to write (a new file; one tar, created 0600).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def backup_command(target: Path, as_json: bool) -> None:
    """Back up the database, every storage object and the wrapped keysets into one
    archive. Never the master key or the secret key: keep those elsewhere."""
    _configure_logging("cli")
    from app.ops import backup as ops

    try:
        result = ops.backup(target)
    except ops.BackupError as exc:
        _fail(str(exc), as_json)
    data = result.as_dict()
    _emit(data, as_json,
          f"backup written to {target}: {data['dialect']} at revision "
          f"{data['alembic_revision']}, {data['rows']} rows in {data['tables']} tables, "
          f"{data['objects']} stored objects ({data['object_bytes']} bytes), "
          f"{data['archive_bytes']} bytes in all, {data['seconds']} s")


@cli.command("restore")
@click.option("--from", "source", required=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="An archive written by `advocase backup`.")
@click.option("--force", is_flag=True,
              help="Restore over a database or storage that is not empty.")
@click.option("--check-evidence", is_flag=True,
              help="Also decrypt and re-hash every evidence file against its recorded SHA-256.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def restore_command(source: Path, force: bool, check_evidence: bool, as_json: bool) -> None:
    """Restore a backup into the configured database and storage, then verify it: row
    counts, schema revision (upgraded to this version's), audit chains, keysets, objects."""
    _configure_logging("cli")
    from app.ops import backup as ops

    try:
        result = ops.restore(source, force=force, check_evidence=check_evidence)
    except ops.BackupError as exc:
        _fail(f"restore failed: {exc}", as_json)
    data = result.as_dict()
    evidence = data["evidence"]
    checked = (f", {evidence['intact']} evidence files re-hashed intact "
               f"({evidence['key_destroyed']} of shredded clients skipped)"
               if "intact" in evidence else "")
    _emit(data, as_json,
          f"restored {data['rows']} rows in {data['tables']} tables (counts match the "
          f"manifest) and {data['objects_restored'] + data['objects_kept']} stored objects "
          f"(SHA-256 checked); schema {data['alembic_revision']}"
          + (f" upgraded to {data['migrated_to']}" if data["migrated_to"] else "")
          + f"; audit chain intact ({data['audit']['events']} events); "
          f"{data['org_keysets']} org keysets open{checked}"
          + (f"; {data['erasures_replayed']} clients purged there since the backup purged "
             "again" if data["erasures_replayed"] else ""))


@cli.command("demo-data")
@click.option("--org", "org_slug", default="demo", show_default=True,
              help="The agency to fill (created when missing).")
@click.option("--clients", "clients_count", default=30, show_default=True,
              type=click.IntRange(1, 40), help="How many fictional clients.")
@click.option("--seed", default=1, show_default=True, type=int,
              help="The same seed gives the same demo.")
@click.option("--skip-if-filled", is_flag=True,
              help="Exit 0, changing nothing, when the agency is already filled (a one-shot "
                   "container that runs at every start).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def demo_data_command(org_slug: str, clients_count: int, seed: int, skip_if_filled: bool,
                      as_json: bool) -> None:
    """Fill a clearly fictional demo agency, once: staff, clients, safety plans, risk
    assessments, releases, service log. Prints the new staff passwords this once."""
    settings = _configure_logging("cli")
    if settings.env == "production":
        _fail("demo-data is for development and demonstration instances, not production "
              "(ADVOCASE_ENV=production)", as_json)
    from app import demo
    from app.core.errors import DomainError
    from app.db import unit_of_work

    run_migrations()
    try:
        with unit_of_work() as db:
            summary = demo.fill_demo_agency(db, seed=seed, clients_count=clients_count,
                                            slug=org_slug)
            data = summary.as_dict()
    except demo.AlreadyFilled as exc:
        if not skip_if_filled:
            _fail(exc.detail, as_json)
        _emit({"org": org_slug, "filled": False}, as_json,
              f"The agency '{org_slug}' is already filled; demo-data changed nothing.")
        return
    except DomainError as exc:
        _fail(exc.detail, as_json)
    statuses = ", ".join(f"{n} {status}" for status, n in data["statuses"].items())
    releases = ", ".join(f"{n} {fate}" for fate, n in data["consents"].items())
    width = max(len(account["email"]) for account in data["staff"])
    accounts = [f"    {a['role']:<10}  {a['email']:<{width}}  {a['password']}"
                for a in data["staff"]]
    _emit(data, as_json, "\n".join([
        f"Filled the {'new' if data['created_org'] else 'existing'} agency '{data['org']}' "
        f"with fictional data (seed {data['seed']}):",
        f"  {data['clients']} clients ({statuses}; {data['urgent']} urgent), "
        f"{data['households']} households, {data['other_parties']} other parties",
        f"  {data['safety_plan_versions']} safety-plan versions, {data['risk_assessments']} "
        f"risk assessments, releases: {releases or 'none'}, "
        f"{data['service_contacts']} service-log contacts",
        "  Staff accounts (passwords shown this once; admins and supervisors set up MFA at "
        "first sign-in):",
        *accounts,
        "  Sign in at /dashboard/login.",
    ]))


def _die_with_parent() -> None:
    # Children stop when `advocase dev` dies, even by SIGKILL (Linux only).
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Supervisor:
    """Runs child processes as one group: all stop together, cleanly, or not at all."""

    def __init__(self, commands: dict[str, list[str]], grace: float = 15.0) -> None:
        self.commands = commands
        self.grace = grace
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.stopping = False

    def _on_signal(self, signum: int, _: Any) -> None:
        self.stopping = True

    def start(self) -> None:
        for name, argv in self.commands.items():
            self.children[name] = subprocess.Popen(argv, preexec_fn=_die_with_parent)  # noqa: S603

    def stop(self) -> None:
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        for child in self.children.values():
            remaining = max(0.1, deadline - time.monotonic())
            try:
                child.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

    def run(self) -> int:
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        self.start()
        try:
            while not self.stopping:
                for name, child in self.children.items():
                    code = child.poll()
                    if code is not None:
                        click.echo(
                            f"advocase dev: the {name} process exited with code {code}; "
                            "stopping the others.",
                            err=True,
                        )
                        self.stop()
                        return code or 1
                time.sleep(0.2)
        finally:
            if self.stopping:
                click.echo("advocase dev: stopping api, worker and beat…", err=True)
            self.stop()
        return 0


def _first_run(host: str, port: int) -> None:
    """On an empty database: a fictional demo agency and its admin, the password shown once."""
    from app.core.crypto import new_token
    from app.db import unit_of_work
    from app.identity import service

    with unit_of_work() as db:
        created = service.bootstrap_demo_agency(db, password=new_token(12))
    if created is None:
        return
    org, email, password = created
    click.echo(
        "\n  First run: created the demo agency "
        f"'{org}' and its admin.\n"
        f"    sign in at http://{host}:{port}/dashboard/login\n"
        f"    email:    {email}\n"
        f"    password: {password}   (shown this once; admins set up MFA at first sign-in)\n",
        err=True,
    )


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def dev(host: str, port: int) -> None:
    """Migrate, then run API + worker + beat as one supervised process group."""
    settings = _configure_logging("dev")
    revision = run_migrations()
    _first_run(host, port)
    me = [sys.executable, "-m", "app.cli"]
    click.echo(
        f"advocase {__version__} (database revision {revision})\n"
        f"  API and dashboard: http://{host}:{port}  (health: /healthz, readiness: /readyz, "
        f"API docs: /docs)\n"
        f"  data kept in: {settings.var_dir}\n"
        "  Ctrl-C stops everything.",
        err=True,
    )
    supervisor = Supervisor(
        {
            "api": [*me, "serve", "--host", host, "--port", str(port)],
            "worker": [*me, "worker", "--concurrency", "2"],
            "beat": [*me, "beat"],
        }
    )
    sys.exit(supervisor.run())


def main() -> None:
    from pydantic import ValidationError

    try:
        cli()
    except ConfigurationError as exc:
        click.echo(f"advocase: configuration error: {exc}", err=True)
        sys.exit(2)
    except ValidationError as exc:
        # Name the variable and the rule, never the value (it may be a secret).
        for error in exc.errors():
            name = "ADVOCASE_" + "_".join(str(p) for p in error["loc"]).upper()
            click.echo(f"advocase: configuration error: {name}: {error['msg']}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
