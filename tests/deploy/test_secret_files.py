"""Settings read secrets from files (compose `secrets:`, Kubernetes secret volumes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app import settings as settings_module
from app.settings import Settings


@pytest.fixture
def secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("ADVOCASE_MASTER_KEY", "ADVOCASE_SECRET_KEY", "ADVOCASE_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "secrets"
    folder.mkdir()
    monkeypatch.setenv("ADVOCASE_SECRETS_DIR", str(folder))
    return folder


def test_without_a_secrets_folder_nothing_is_read_and_nothing_warns(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, recwarn: pytest.WarningsRecorder) -> None:
    monkeypatch.delenv("ADVOCASE_SECRETS_DIR", raising=False)
    monkeypatch.delenv("ADVOCASE_MASTER_KEY", raising=False)
    monkeypatch.setattr(settings_module, "DEFAULT_SECRETS_DIR", tmp_path / "absent")
    assert settings_module.secrets_dir() is None
    assert Settings(var_dir=tmp_path).master_key is None
    assert [str(w.message) for w in recwarn] == []


def test_production_still_refuses_to_start_without_the_key(
        secrets: Path, tmp_path: Path) -> None:
    (secrets / "advocase_secret_key").write_text("not-the-master-key\n")
    configured = Settings(env="production", var_dir=tmp_path)
    with pytest.raises(settings_module.ConfigurationError, match="ADVOCASE_MASTER_KEY"):
        configured.master_key_value()


def test_a_file_named_like_the_variable_sets_the_secret_without_its_newline(
        secrets: Path, tmp_path: Path) -> None:
    (secrets / "advocase_master_key").write_text("master-from-file\n")
    (secrets / "advocase_database_url").write_text(
        "postgresql://advocase:pw@postgres:5432/advocase\n")
    configured = Settings(env="production", var_dir=tmp_path)
    assert configured.master_key_value() == "master-from-file"
    # Validators run on values from files too (psycopg 3 driver).
    assert configured.database_url == "postgresql+psycopg://advocase:pw@postgres:5432/advocase"
    assert "master-from-file" not in repr(configured)
    assert not (tmp_path / "master_key").exists()  # nothing generated on disk


def test_the_environment_wins_over_a_file(
        secrets: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (secrets / "advocase_master_key").write_text("from-file")
    monkeypatch.setenv("ADVOCASE_MASTER_KEY", "from-env")
    assert Settings(var_dir=tmp_path).master_key_value() == "from-env"


def test_run_secrets_is_the_default_folder_when_it_exists(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ADVOCASE_SECRETS_DIR", raising=False)
    monkeypatch.delenv("ADVOCASE_SECRET_KEY", raising=False)
    default = tmp_path / "run-secrets"
    default.mkdir()
    (default / "advocase_secret_key").write_text("signing-key")
    monkeypatch.setattr(settings_module, "DEFAULT_SECRETS_DIR", default)
    assert Settings(var_dir=tmp_path).secret_key_value() == "signing-key"
