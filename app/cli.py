"""The ``advocase`` command: migrate, serve, worker, beat, dev, version."""

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

    settings = get_settings()
    settings.ensure_dirs()
    command.upgrade(alembic_config(str(settings.database_url)), revision)
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

    _configure_logging("api")
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
    from workers.celery_app import celery_app

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

    celery_app.start(["beat", "--loglevel", settings.log_level])


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


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def dev(host: str, port: int) -> None:
    """Migrate, then run API + worker + beat as one supervised process group."""
    settings = _configure_logging("dev")
    revision = run_migrations()
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
