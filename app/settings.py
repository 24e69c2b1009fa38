"""Configuration: one pydantic-settings class, environment variables prefixed ``ADVOCASE_``.

With nothing set, everything runs on embedded defaults under ``var/``: a SQLite
database, a SQLite-backed Celery broker and result backend, a storage folder, and
secrets generated on first use and kept in files readable only by their owner.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import threading
import time
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
)

SECRET_FILE_MODE = 0o600
# Container secrets (compose `secrets:`, Kubernetes secret volumes) are mounted here.
DEFAULT_SECRETS_DIR = Path("/run/secrets")


class ConfigurationError(RuntimeError):
    """The configuration cannot work (reported at start-up, never with secret values)."""


def normalise_database_url(url: str) -> str:
    """PostgreSQL URLs of any common spelling use psycopg 3."""
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def read_or_create_secret(path: Path, nbytes: int = 32) -> str:
    """Return the secret kept in ``path``, creating it (0600) on first use.

    Several processes may start at once (``advocase dev``); ``O_EXCL`` makes exactly
    one of them write the file and the others read what it wrote.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    value = base64.urlsafe_b64encode(secrets.token_bytes(nbytes)).decode().rstrip("=")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_FILE_MODE)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as handle:
            handle.write(value + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return value
    if path.stat().st_mode & 0o077:
        os.chmod(path, SECRET_FILE_MODE)
    for _ in range(50):
        stored = path.read_text().strip()
        if stored:
            return stored
        # Another process created the file a moment ago and is still writing it.
        time.sleep(0.02)
    raise ConfigurationError(f"secret file {path.name} under the var folder is empty")


def secrets_dir() -> Path | None:
    """Folder of secret files: ``ADVOCASE_SECRETS_DIR``, else ``/run/secrets`` when it exists.

    A file there named like the variable, lower case (``advocase_master_key``), sets that
    setting; a variable in the environment takes precedence over the file.
    """
    configured = os.environ.get("ADVOCASE_SECRETS_DIR")
    if configured:
        return Path(configured)
    return DEFAULT_SECRETS_DIR if DEFAULT_SECRETS_DIR.is_dir() else None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ADVOCASE_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The folder is looked up at each instantiation, not fixed when the module loads.
        files = SecretsSettingsSource(settings_cls, secrets_dir=secrets_dir())
        return init_settings, env_settings, dotenv_settings, files

    env: Literal["development", "test", "production"] = "development"
    var_dir: Path = Field(default=Path("var"), description="Folder for embedded defaults")

    database_url: str | None = None
    broker_url: str | None = None
    result_backend: str | None = None
    storage_dir: Path | None = None
    storage_url: str | None = Field(
        default=None,
        description="s3://bucket or s3://bucket/prefix: keep stored files in that S3 bucket "
        "(Amazon S3, MinIO); unset: the local folder ADVOCASE_STORAGE_DIR")
    s3_endpoint_url: str | None = Field(
        default=None, pattern=r"^https?://[^/?#]+/?$",
        description="An S3-compatible server (MinIO): http(s)://host:port; unset: Amazon S3")
    s3_region: str | None = Field(default=None, pattern=r"^[a-z0-9-]{1,32}$")
    s3_secret_access_key: SecretStr | None = Field(
        default=None,
        description="With ADVOCASE_S3_ACCESS_KEY_ID; both unset: the standard AWS "
        "credential chain (environment, shared files, container or instance role)")
    # After the secret, whose presence its validator checks (an error then shows the key id
    # as its input, never the secret).
    s3_access_key_id: str | None = Field(default=None, validate_default=True)
    secret_key: SecretStr | None = None
    master_key: SecretStr | None = None

    rate_limit_url: str | None = Field(
        default=None,
        description="Redis URL for rate limits and login throttling; default: the broker's "
        "Redis when the broker is Redis, otherwise in-process memory",
    )

    public_url: str = Field(
        default="http://127.0.0.1:8000", pattern=r"^https?://[^/?#]+(/[^?#]*)?$",
        description="The address users and partner apps reach; the OAuth issuer. "
        "Set it to the https address in production.")
    access_token_minutes: int = Field(default=15, ge=1, le=60)
    refresh_idle_hours: float = Field(default=12, gt=0)
    session_absolute_hours: float = Field(default=168, gt=0)
    dashboard_idle_minutes: float = Field(default=15, gt=0)
    dashboard_absolute_hours: float = Field(default=8, gt=0)
    dashboard_bell_poll_seconds: float = Field(
        default=15, ge=1, le=3600,
        description="How often an open dashboard page asks for the unread notification count")
    partner_token_minutes: int = Field(default=10, ge=1, le=60)
    invitation_hours: float = Field(default=72, gt=0)
    reauth_minutes: float = Field(default=5, gt=0)

    log_level: str = "INFO"
    log_format: Literal["json", "console"] | None = None

    threadpool_size: int = Field(default=40, ge=1, le=1000)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    evidence_max_bytes: int = Field(
        default=100 * 1024 * 1024, ge=1024,
        description="Largest evidence upload (the whole multipart body), enforced while it streams")
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)
    db_connect_timeout: int = Field(default=3, ge=1)
    broker_check_timeout: float = Field(default=2.0, gt=0)

    task_queue: str = Field(default="advocase", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    heartbeat_interval: float = Field(default=10.0, gt=0)
    heartbeat_stale_after: float = Field(default=60.0, gt=0)
    broker_cleanup_interval: float = Field(default=300.0, gt=0)
    task_soft_time_limit: int = Field(default=240, ge=1)
    task_time_limit: int = Field(default=300, ge=1)
    embedded_broker_polling_interval: float = Field(default=0.1, gt=0, le=1.0)

    # Webhooks (development and tests only): a partner's endpoint must be https and every
    # address its host resolves to must be public. These let a test deliver to a receiver
    # on 127.0.0.1 over plain http; production refuses to start with either set.
    webhook_allow_http: bool = Field(
        default=False, description="Accept http:// webhook URLs (never in production)")
    webhook_allow_private_targets: bool = Field(
        default=False, description="Accept loopback/private webhook targets (never in production)")

    # Reports (court summaries): how long a built report can be downloaded before its stored
    # files are deleted, and the largest file `POST /api/v1/reports/verify` accepts.
    report_ttl_hours: float = Field(
        default=72, gt=0, le=24 * 365,
        description="Hours a built report stays downloadable; then its files are deleted")
    report_verify_max_bytes: int = Field(
        default=1024 * 1024 * 1024, ge=1024,
        description="Largest upload to the report verification endpoint (a whole bundle)")
    report_split_from_pages: float = Field(
        default=80, ge=0, le=1_000_000,
        description="A court summary estimated at this many pages or more is rendered in "
                    "two processes and joined (0: every one; a huge number: never)")
    report_suppression_threshold: int = Field(
        default=5, ge=1, le=100,
        description="Funder reports hide every count from 1 to this many (small-cell "
                    "suppression)")

    # Email (reminders and notifications to staff; a client's email only where their
    # safe-contact preferences allow it). No host: no email is sent, in-app only.
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_from: str = Field(default="advocase@localhost", max_length=254)
    smtp_starttls: bool = True
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None

    # Observability (README "Observability"): Prometheus metrics at /metrics, optional tracing.
    metrics_dir: Path | None = Field(
        default=None, description="Folder where API and worker processes keep their metric "
        "values (prometheus_client multiprocess mode); default: var/metrics")
    metrics_token: SecretStr | None = Field(
        default=None, description="Bearer token a scrape of /metrics must carry when set")
    metrics_allow_unauthenticated: bool = Field(
        default=False, description="Serve /metrics without a token in production (only "
        "behind a network policy or private listener)")
    worker_metrics_port: int | None = Field(
        default=None, ge=1, le=65535,
        description="A worker serves its own metrics on this port (a worker on another host)")
    worker_metrics_host: str = Field(
        default="0.0.0.0", description="Address the worker's metrics listener binds")  # noqa: S104
    otel_enabled: bool = Field(default=False, description="Export OpenTelemetry traces")
    otel_endpoint: str | None = Field(
        default=None, pattern=r"^https?://[^?#]+$",
        description="OTLP/HTTP traces endpoint (e.g. http://collector:4318/v1/traces); "
        "default: the OTEL_EXPORTER_OTLP_* variables")
    otel_service_name: str = Field(default="advocase", pattern=r"^[A-Za-z0-9_.-]{1,64}$")

    @field_validator("webhook_allow_http", "webhook_allow_private_targets")
    @classmethod
    def _webhook_relaxations_not_in_production(cls, value: bool, info: ValidationInfo) -> bool:
        if value and info.data.get("env") == "production":
            raise ValueError("webhook targets are https and public only in production")
        return value

    @field_validator("var_dir")
    @classmethod
    def _absolute_var_dir(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("database_url")
    @classmethod
    def _psycopg3(cls, value: str | None) -> str | None:
        return normalise_database_url(value) if value else value

    @field_validator("storage_url")
    @classmethod
    def _s3_url(cls, value: str | None) -> str | None:
        if value:
            split_storage_url(value)
        return value or None

    @field_validator("s3_access_key_id")
    @classmethod
    def _s3_key_pair(cls, value: str | None, info: ValidationInfo) -> str | None:
        secret = info.data.get("s3_secret_access_key")
        if bool(secret and secret.get_secret_value()) != bool(value):
            raise ValueError("ADVOCASE_S3_ACCESS_KEY_ID and ADVOCASE_S3_SECRET_ACCESS_KEY "
                             "are set together (or neither, for the AWS credential chain)")
        return value or None

    def model_post_init(self, __context: object) -> None:
        var = self.var_dir
        if self.database_url is None:
            self.database_url = f"sqlite:///{var / 'advocase.sqlite'}"
        if self.broker_url is None:
            self.broker_url = f"sqla+sqlite:///{var / 'broker.sqlite'}"
        if self.result_backend is None:
            self.result_backend = f"db+sqlite:///{var / 'results.sqlite'}"
        if self.storage_dir is None:
            self.storage_dir = var / "storage"
        if self.log_format is None:
            self.log_format = "json" if self.env == "production" else "console"

    # Secrets are resolved lazily: reading settings must not create files.
    def _secret(self, name: str) -> str:
        configured: SecretStr | None = getattr(self, name)
        if configured is not None and configured.get_secret_value():
            return configured.get_secret_value()
        if self.env == "production":
            raise ConfigurationError(
                f"ADVOCASE_{name.upper()} must be set in production: a generated key kept "
                "on local disk would be lost with the container"
            )
        value = read_or_create_secret(self.var_dir / name)
        setattr(self, name, SecretStr(value))
        return value

    def secret_key_value(self) -> str:
        return self._secret("secret_key")

    def master_key_value(self) -> str:
        return self._secret("master_key")

    @property
    def is_sqlite(self) -> bool:
        return str(self.database_url).startswith("sqlite")

    @property
    def issuer(self) -> str:
        """The OAuth issuer identifier: our public address (RFC 8414, RFC 9068 ``iss``)."""
        return self.public_url.rstrip("/")

    @property
    def rate_limit_storage_url(self) -> str | None:
        """Redis URL shared by all processes for rate limits, or None for in-process memory."""
        if self.rate_limit_url:
            return self.rate_limit_url
        if str(self.broker_url).startswith(("redis://", "rediss://")):
            return str(self.broker_url)
        return None

    @property
    def storage_bucket_and_prefix(self) -> tuple[str, str]:
        """The bucket and key prefix of ``storage_url`` (which must be set)."""
        assert self.storage_url
        return split_storage_url(self.storage_url)

    @property
    def broker_is_embedded(self) -> bool:
        return str(self.broker_url).startswith(("sqla+", "filesystem:", "memory:"))

    def ensure_dirs(self) -> None:
        self.var_dir.mkdir(parents=True, exist_ok=True)
        assert self.storage_dir is not None
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        for url in (self.database_url, self.broker_url, self.result_backend):
            path = sqlite_path(str(url))
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX_PART = re.compile(r"^[A-Za-z0-9._-]+$")


def split_storage_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix")``."""
    if not url.startswith("s3://"):
        raise ValueError("ADVOCASE_STORAGE_URL is s3://bucket or s3://bucket/prefix")
    bucket, _, prefix = url[len("s3://"):].partition("/")
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise ValueError("ADVOCASE_STORAGE_URL: a bucket name is 3-63 lower-case letters, "
                         "digits, dots and hyphens")
    prefix = prefix.strip("/")
    if prefix and any(not _PREFIX_PART.match(p) or p in (".", "..")
                      for p in prefix.split("/")):
        raise ValueError("ADVOCASE_STORAGE_URL: the prefix is folder names of letters, "
                         "digits, '.', '_' and '-' separated by '/'")
    return bucket, prefix


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL (``sqlite:///x``, ``sqla+sqlite:///x``, ``db+sqlite:///x``)."""
    for prefix in ("sqlite:///", "sqla+sqlite:///", "db+sqlite:///"):
        if url.startswith(prefix):
            rest = url[len(prefix) :].split("?", 1)[0]
            if rest in ("", ":memory:"):
                return None
            return Path(rest)
    return None


_current: Settings | None = None
_current_lock = threading.Lock()


def get_settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    global _current
    settings = _current
    if settings is None:
        with _current_lock:
            if _current is None:
                _current = Settings()
            settings = _current
    return settings


def reset_settings_cache(to: Settings | None = None) -> Settings | None:
    """Read the environment again on next use (or use ``to`` from now on); returns the
    settings in use until now, so that a test can put them back as they were (the very
    same object: other fixtures hold it and patch its attributes)."""
    global _current
    with _current_lock:
        previous, _current = _current, to
    return previous
