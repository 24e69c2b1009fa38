"""The compose stack's `demo` one-shot runs `advocase demo-data --skip-if-filled` at every
start: the first run fills the agency, later runs change nothing and exit 0."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from app.cli import cli
from app.db import dispose_engines
from app.settings import get_settings, reset_settings_cache


@pytest.fixture
def var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    import os

    for name in [n for n in os.environ if n.startswith("ADVOCASE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("ADVOCASE_VAR_DIR", str(tmp_path / "var"))
    suite_settings = reset_settings_cache()
    # The command would point this process's logging at the runner's stream; the
    # session's logging stays as it is.
    monkeypatch.setattr("app.cli._configure_logging", lambda process: get_settings())
    yield tmp_path / "var"
    # Only the engine of this test's folder: the suite's own stays the one its fixtures hold.
    dispose_engines(str(get_settings().database_url))
    reset_settings_cache(to=suite_settings)  # the very object other fixtures hold


def demo_data(*args: str) -> Result:
    return CliRunner().invoke(cli, ["demo-data", "--json", "--clients", "1", *args])


def test_a_filled_agency_is_refused_without_the_flag_and_skipped_with_it(var: Path) -> None:
    first = demo_data("--skip-if-filled")
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["clients"] == 1

    refused = demo_data()
    assert refused.exit_code == 1
    assert "fills an agency once" in json.loads(refused.stdout)["error"]

    again = demo_data("--skip-if-filled")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout) == {"org": "demo", "filled": False}
    assert "password" not in again.stdout
    assert (var / "advocase.sqlite").exists()
