"""Configuration: embedded defaults, generated secrets kept private, URLs chosen by scheme."""

from __future__ import annotations

import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from app.settings import ConfigurationError, Settings, read_or_create_secret


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch) -> None:
    """These tests read settings from nothing but what each one sets."""
    for name in list(os.environ):
        if name.startswith("ADVOCASE_"):
            monkeypatch.delenv(name)


def make(tmp_path: Path, **env: str) -> Settings:
    return Settings(_env_file=None, var_dir=tmp_path / "var", **env)  # type: ignore[call-arg]


def test_embedded_defaults_live_under_var(tmp_path: Path) -> None:
    s = make(tmp_path)
    var = (tmp_path / "var").resolve()
    assert s.database_url == f"sqlite:///{var / 'advocase.sqlite'}"
    assert s.broker_url == f"sqla+sqlite:///{var / 'broker.sqlite'}"
    assert s.result_backend == f"db+sqlite:///{var / 'results.sqlite'}"
    assert s.storage_dir == var / "storage"
    assert s.broker_is_embedded and s.is_sqlite


def test_reading_settings_creates_no_secret(tmp_path: Path) -> None:
    make(tmp_path)
    assert not (tmp_path / "var" / "secret_key").exists()


def test_generated_secrets_are_0600_stable_and_distinct(tmp_path: Path) -> None:
    s = make(tmp_path)
    secret, master = s.secret_key_value(), s.master_key_value()
    assert len(secret) >= 43 and secret != master
    for name in ("secret_key", "master_key"):
        mode = stat.S_IMODE(os.stat(tmp_path / "var" / name).st_mode)
        assert mode == 0o600
    again = make(tmp_path)
    assert again.secret_key_value() == secret
    assert again.master_key_value() == master


def test_loose_permissions_on_a_secret_file_are_tightened(tmp_path: Path) -> None:
    path = tmp_path / "secret_key"
    path.write_text("existing-secret-value\n")
    os.chmod(path, 0o644)
    assert read_or_create_secret(path) == "existing-secret-value"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_concurrent_first_runs_agree_on_one_secret(tmp_path: Path) -> None:
    path = tmp_path / "var" / "secret_key"
    with ThreadPoolExecutor(8) as pool:
        values = set(pool.map(lambda _: read_or_create_secret(path), range(32)))
    assert len(values) == 1


def test_secrets_never_appear_in_repr(tmp_path: Path) -> None:
    s = make(tmp_path, secret_key="fictional-secret-value-1234", master_key="another-fictional-key")
    assert "fictional-secret-value-1234" not in repr(s)
    assert "another-fictional-key" not in str(s.model_dump())


def test_production_refuses_generated_keys(tmp_path: Path) -> None:
    s = make(tmp_path, env="production")
    with pytest.raises(ConfigurationError, match="ADVOCASE_SECRET_KEY"):
        s.secret_key_value()
    assert not (tmp_path / "var" / "secret_key").exists()
    assert s.log_format == "json"


@pytest.mark.parametrize(
    "given",
    ["postgres://u@db/x", "postgresql://u@db/x", "postgresql+psycopg2://u@db/x"],
)
def test_postgres_urls_use_psycopg3(tmp_path: Path, given: str) -> None:
    assert make(tmp_path, database_url=given).database_url == "postgresql+psycopg://u@db/x"


def test_environment_prefix_and_env_file(tmp_path: Path, monkeypatch) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("ADVOCASE_BROKER_URL=redis://127.0.0.1:6379/3\nADVOCASE_LOG_LEVEL=DEBUG\n")
    monkeypatch.setenv("ADVOCASE_LOG_LEVEL", "ERROR")
    s = Settings(_env_file=str(env_file), var_dir=tmp_path)  # type: ignore[call-arg]
    assert s.broker_url == "redis://127.0.0.1:6379/3"
    assert s.log_level == "ERROR"  # the environment wins over the file
    assert not s.broker_is_embedded


def test_invalid_values_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_body_bytes"):
        make(tmp_path, max_body_bytes="12")
    with pytest.raises(ValueError, match="task_queue"):
        make(tmp_path, task_queue="bad queue name")
