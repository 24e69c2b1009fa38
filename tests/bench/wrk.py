"""The load generator: make sure ``wrk`` is installed, run it bounded, parse its report.

``wrk`` is used rather than a Python client because a Python load generator on a
2-core machine saturates itself long before uvicorn does, and would measure itself.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

SENSITIVE_HEADERS = frozenset({"authorization", "cookie", "x-api-key"})

_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_PERCENTILE = re.compile(r"^\s*(\d+(?:\.\d+)?)%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)\s*$", re.MULTILINE)
_TOTAL = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)", re.MULTILINE)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET_ERRORS = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"
)


class WrkError(RuntimeError):
    """wrk is missing, failed, or printed something this parser does not understand."""


def ensure_wrk() -> str:
    """Return the path of ``wrk``, installing the Debian package first if it is missing.

    The harness runs as root on the development and CI machines, where Debian's
    package registry is reachable; anywhere else the message says what to install.
    """
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk not found: installing it with apt-get (Debian package 'wrk')…", flush=True)
    try:
        for argv in (["apt-get", "update"], ["apt-get", "install", "-y", "wrk"]):
            subprocess.run(
                argv,
                check=True,
                timeout=600,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            )
    except FileNotFoundError as exc:
        raise WrkError("wrk is not installed and apt-get is not available; install wrk") from exc
    except subprocess.CalledProcessError as exc:
        tail = (exc.stderr or "").strip().splitlines()[-3:]
        raise WrkError(
            f"wrk is not installed and `{' '.join(exc.cmd)}` failed (exit {exc.returncode}): "
            + " | ".join(tail)
            + " — install wrk (Debian/Ubuntu: apt-get install wrk) and try again"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise WrkError(f"`{' '.join(exc.cmd)}` timed out; install wrk by hand") from exc
    found = shutil.which("wrk")
    if not found:
        raise WrkError("apt-get install wrk succeeded but wrk is still not on PATH")
    return found


def wrk_version(wrk: str) -> str:
    """First line of ``wrk -v`` (wrk prints its version and usage, exiting non-zero)."""
    proc = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=10)
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    return lines[0].split(" Copyright")[0].strip() if lines else "unknown"


@dataclass
class WrkResult:
    """The figures of one wrk run; latencies in milliseconds."""

    requests_per_second: float
    requests: int
    seconds: float
    latency_ms: dict[str, float]  # "50" -> p50, "99" -> p99, ...
    non_2xx: int
    socket_errors: dict[str, int]

    @property
    def p50_ms(self) -> float:
        return self.latency_ms["50"]

    @property
    def p99_ms(self) -> float:
        return self.latency_ms["99"]

    @property
    def errors(self) -> int:
        return sum(self.socket_errors.values())

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _to_ms(value: str, unit: str) -> float:
    return float(value) * _UNIT_MS[unit]


def parse_wrk_output(text: str) -> WrkResult:
    """Parse a ``wrk --latency`` report.

    Reads ``Requests/sec:``, the ``Latency Distribution`` block (``50%  1.23ms``,
    units us/ms/s/m/h), the ``N requests in Ts`` line, and the optional
    ``Non-2xx or 3xx responses:`` and ``Socket errors:`` lines (absent means 0).
    """
    rps = _RPS.search(text)
    total = _TOTAL.search(text)
    if "Latency Distribution" not in text or rps is None or total is None:
        raise WrkError("unexpected wrk output (was --latency given?):\n" + text.strip())
    distribution = text.split("Latency Distribution", 1)[1]
    latency = {
        _percentile_key(pct): _to_ms(value, unit)
        for pct, value, unit in _PERCENTILE.findall(distribution)
    }
    if "50" not in latency or "99" not in latency:
        raise WrkError("wrk output has no p50/p99 in its latency distribution:\n" + text.strip())
    non_2xx = _NON_2XX.search(text)
    sockets = _SOCKET_ERRORS.search(text)
    socket_errors = dict.fromkeys(("connect", "read", "write", "timeout"), 0)
    if sockets:
        socket_errors = dict(zip(socket_errors, map(int, sockets.groups()), strict=True))
    return WrkResult(
        requests_per_second=float(rps.group(1)),
        requests=int(total.group(1)),
        seconds=_to_ms(total.group(2), total.group(3)) / 1000,
        latency_ms=latency,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=socket_errors,
    )


def _percentile_key(pct: str) -> str:
    number = float(pct)
    return str(int(number)) if number.is_integer() else str(number)


def wrk_command(
    wrk: str,
    url: str,
    *,
    threads: int,
    connections: int,
    seconds: int,
    headers: Mapping[str, str] | None = None,
    timeout_s: int = 5,
    script: str | None = None,
) -> list[str]:
    """wrk's argv; ``script`` is a Lua file (``-s``) that shapes the requests."""
    argv = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        f"--timeout={timeout_s}s",
        "--latency",
    ]
    if script:
        argv += ["-s", script]
    for name, value in (headers or {}).items():
        argv += ["-H", f"{name}: {value}"]
    return [*argv, url]


def redacted(argv: Sequence[str]) -> list[str]:
    """The command with credential header values masked, for printing."""
    out: list[str] = []
    for arg in argv:
        name, sep, _ = arg.partition(":")
        if sep and name.strip().lower() in SENSITIVE_HEADERS:
            arg = f"{name}: [redacted]"
        out.append(arg)
    return out


def run_wrk(argv: list[str], seconds: int) -> WrkResult:
    """Run wrk and parse its report; the run is bounded by its duration plus a margin."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
    except subprocess.TimeoutExpired as exc:
        raise WrkError(f"wrk did not finish within {seconds + 30} s") from exc
    if proc.returncode != 0:
        raise WrkError(f"wrk exited with {proc.returncode}: {proc.stderr.strip() or proc.stdout}")
    return parse_wrk_output(proc.stdout)
