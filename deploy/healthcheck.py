"""Container health checks: ``python deploy/healthcheck.py api|worker|beat``.

Exit 0 when healthy, 1 otherwise, with one line on stderr saying why (no configuration
values, no secrets). Used by the image's HEALTHCHECK (api), compose and Kubernetes.

- ``api``: GET ``/healthz`` on the local port answers 200 (touches no dependency).
- ``worker``: this container's Celery worker (``celery@<hostname>``) answers a ping
  over the broker.
- ``beat``: beat's schedule file under ``ADVOCASE_VAR_DIR`` was written recently (beat
  saves it at start and every few minutes while it ticks).
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

BEAT_SCHEDULE = "celerybeat-schedule"


def check_api(url: str, timeout: float) -> str | None:
    if not url.startswith(("http://127.0.0.1", "http://localhost", "http://[::1]")):
        return "the api check only asks a local address"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, ValueError) as exc:
        return f"no answer from {url}: {type(exc).__name__}"
    return None if status == 200 else f"{url} answered {status}"


def check_worker(timeout: float) -> str | None:
    from workers.celery_app import celery_app

    node = f"celery@{socket.gethostname()}"
    replies = celery_app.control.ping(destination=[node], timeout=timeout)
    answered = {name for reply in replies for name in reply}
    return None if node in answered else f"{node} did not answer a ping in {timeout:g} s"


def check_beat(var_dir: Path, max_age: float) -> str | None:
    files = list(var_dir.glob(BEAT_SCHEDULE + "*"))
    if not files:
        return f"no {BEAT_SCHEDULE} file under the var folder yet"
    age = time.time() - max(path.stat().st_mtime for path in files)
    if age > max_age:
        return f"{BEAT_SCHEDULE} not written for {age:.0f} s (limit {max_age:g} s)"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=["api", "worker", "beat"])
    parser.add_argument("--url", default="http://127.0.0.1:8000/healthz")
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--max-age", type=float, default=600.0,
                        help="beat: the schedule file's largest age in seconds")
    args = parser.parse_args(argv)
    if args.role == "api":
        problem = check_api(args.url, args.timeout)
    elif args.role == "worker":
        problem = check_worker(args.timeout)
    else:
        from app.settings import get_settings

        problem = check_beat(get_settings().var_dir, args.max_age)
    if problem:
        print(f"unhealthy ({args.role}): {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
