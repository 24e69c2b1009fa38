"""Every data file the app reads at run time ships in the wheel (package-data), so a
non-editable install (the container image) finds its templates, lists and instruments."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app"


def _globs() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return list(config["tool"]["setuptools"]["package-data"]["app"])


def test_every_data_file_under_app_is_package_data() -> None:
    globs = _globs()
    data_files = [path.relative_to(APP).as_posix() for path in APP.rglob("*")
                  if path.is_file() and path.suffix not in {".py", ".pyc"}
                  and "__pycache__" not in path.parts]
    assert data_files, "expected templates and data files under app/"
    missing = [name for name in data_files
               if not any(fnmatch.fnmatch(name, pattern) for pattern in globs)]
    assert missing == [], f"not in [tool.setuptools.package-data]: {missing}"
