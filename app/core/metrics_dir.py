"""Where the processes of a host keep their metric values (prometheus_client multiprocess mode).

Deliberately free of ``prometheus_client``: that library chooses between in-memory and
file-backed values when it is first imported, so the folder must be set up (and the
environment variable exported) by the parent process before anything imports it.
"""

from __future__ import annotations

import os
from pathlib import Path

from app.settings import Settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
API_SUBDIR = "api"
WORKER_SUBDIR = "worker"


def metrics_root(settings: Settings) -> Path:
    return (settings.metrics_dir or settings.var_dir / "metrics").resolve()


def prepare_multiprocess_dir(settings: Settings, subdir: str) -> Path:
    """Empty (or create) this service's folder and point prometheus_client at it.

    Run by the parent of a group of processes (``advocase serve``, ``advocase worker``)
    before any of them starts, as the prometheus_client documentation asks: the values of
    an earlier run must not be summed in. API processes write under ``api/``, workers
    under ``worker/``; a scrape of ``/metrics`` sums both.
    """
    path = metrics_root(settings) / subdir
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)
    os.environ[MULTIPROC_ENV] = str(path)
    return path
