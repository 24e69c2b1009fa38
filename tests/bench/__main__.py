"""``python -m tests.bench``: throughput and latency of advocase endpoints against a baseline.

Run order: baseline, each selected scenario, baseline again. On a small shared
machine throughput drifts during a run; the mean of the two baseline runs is the
reference, and their spread says how much to trust the ratios. Absolute numbers
from such a machine mean little; ratios within one run are what to compare.

Everything is bounded: servers get 30 s to come up and 10 s to stop, each wrk run
lasts ``--warmup`` plus ``--duration`` seconds (with a hard timeout), and all
traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.bench.scenarios import (
    ADVOCASE,
    ALL_NAMES,
    BASELINE,
    BASELINE_SCENARIO,
    Context,
    Scenario,
    select,
)
from tests.bench.servers import (
    REPO_ROOT,
    START_TIMEOUT_S,
    Server,
    advocase_env,
    advocase_server,
    baseline_server,
    free_port,
    http_get,
    migrate,
    run_guarded,
)
from tests.bench.wrk import (
    WrkResult,
    ensure_wrk,
    redacted,
    run_wrk,
    wrk_command,
    wrk_version,
)

LOG_LEVEL_NOTE = (
    "advocase runs with ADVOCASE_LOG_LEVEL=WARNING so per-request log lines do not "
    "dominate; the baseline runs with --log-level warning --no-access-log"
)
NOTABLE = re.compile(r"error|exception|traceback|critical|warning|warn\b", re.IGNORECASE)


@dataclass
class Row:
    """One measured run: a scenario, its probe status and wrk's figures."""

    label: str
    scenario: Scenario
    url: str
    probe_status: int | None
    result: WrkResult
    ratio: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "scenario": self.scenario.name,
            "server": self.scenario.server,
            "path": self.scenario.path,
            "url": self.url,
            "probe_status": self.probe_status,
            "requests_per_second": self.result.requests_per_second,
            "p50_ms": self.result.p50_ms,
            "p99_ms": self.result.p99_ms,
            "non_2xx": self.result.non_2xx,
            "ratio_to_baseline": round(self.ratio, 3),
            "wrk": self.result.as_dict(),
        }


def _seconds(text: str) -> int:
    match = re.fullmatch(r"(\d+)(s|m)?", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"expected seconds like 10, 10s or 1m, got {text!r}")
    value = int(match.group(1)) * (60 if match.group(2) == "m" else 1)
    if not 0 <= value <= 600:
        raise argparse.ArgumentTypeError("must be between 0 and 600 seconds")
    return value


def _positive(limit: int) -> Any:
    def parse(text: str) -> int:
        value = int(text)
        if not 1 <= value <= limit:
            raise argparse.ArgumentTypeError(f"must be between 1 and {limit}")
        return value

    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench",
        description="Benchmark advocase endpoints with wrk against a minimal Starlette baseline.",
    )
    parser.add_argument("--duration", type=_seconds, default=10,
                        help="measured seconds per scenario (default: 10)")
    parser.add_argument("--warmup", type=_seconds, default=2,
                        help="unrecorded warm-up seconds before each measurement (default: 2)")
    parser.add_argument("--connections", type=_positive(1024), default=32,
                        help="open connections kept by wrk (default: 32)")
    parser.add_argument("--threads", type=_positive(16), default=2,
                        help="wrk threads (default: 2)")
    parser.add_argument("--workers", type=_positive(16), default=2,
                        help="uvicorn worker processes of each server (default: 2)")
    parser.add_argument("--only", action="append", metavar="NAMES",
                        help="comma-separated scenarios to run (repeatable); the baseline "
                        f"always runs first and last. Known: {', '.join(ALL_NAMES)}")
    parser.add_argument("--json", nargs="?", const="-", metavar="FILE",
                        help="also print the results as JSON (to FILE if given)")
    args = parser.parse_args(argv)
    if args.duration < 1:
        parser.error("--duration must be at least 1 second")
    if args.connections < args.threads:
        parser.error("--connections must be at least --threads (wrk's rule)")
    args.only = [n.strip() for item in args.only or [] for n in item.split(",") if n.strip()]
    return args


def command_line(argv: list[str]) -> str:
    """The command as typed from the repository root (no absolute path when avoidable)."""
    python = Path(sys.executable)
    try:
        shown = str(python.relative_to(REPO_ROOT))
    except ValueError:
        shown = str(python)
    return shlex.join([shown, "-m", "tests.bench", *argv])


def machine(wrk: str) -> dict[str, Any]:
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu_model or platform.processor() or "unknown",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
        "wrk": wrk_version(wrk),
    }


def measure(
    label: str,
    scenario: Scenario,
    server: Server,
    args: argparse.Namespace,
    wrk: str,
    env: dict[str, str],
    var_dir: Path,
) -> Row:
    """Probe the endpoint once, warm it up, then measure it with wrk."""
    url = server.base_url + scenario.path
    headers = scenario.prepare(Context(base_url=server.base_url, env=env, var_dir=var_dir))
    try:
        probe_status: int | None = http_get(url, headers=headers)[0]
    except OSError:
        probe_status = None
    if probe_status != scenario.expect_status:
        print(f"  warning: GET {scenario.path} answered {probe_status}, "
              f"expected {scenario.expect_status}", flush=True)
    common = {"threads": args.threads, "connections": args.connections, "headers": headers}
    if args.warmup:
        run_wrk(wrk_command(wrk, url, seconds=args.warmup, **common), args.warmup)
    argv = wrk_command(wrk, url, seconds=args.duration, **common)
    print(f"  {label}: {shlex.join(redacted([Path(argv[0]).name, *argv[1:]]))}", flush=True)
    result = run_wrk(argv, args.duration)
    print(f"    {result.requests_per_second:,.0f} req/s, p50 {result.p50_ms:.2f} ms, "
          f"p99 {result.p99_ms:.2f} ms, non-2xx {result.non_2xx}, "
          f"socket errors {result.errors}", flush=True)
    return Row(label, scenario, url, probe_status, result)


def table(rows: list[Row]) -> str:
    lines = [
        "| scenario | requests/s | p50 ms | p99 ms | non-2xx | ratio to baseline |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        r = row.result
        lines.append(
            f"| {row.label} | {r.requests_per_second:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} "
            f"| {r.non_2xx} | {row.ratio:.2f} |"
        )
    return "\n".join(lines)


def server_output_summary(server: Server, exit_code: int | None) -> dict[str, Any]:
    lines = server.output().splitlines()
    notable = [line for line in lines if NOTABLE.search(line)]
    return {"lines": len(lines), "exit_code": exit_code, "notable": notable[:20],
            "notable_count": len(notable)}


def run(args: argparse.Namespace, argv: list[str], wrk: str) -> int:
    scenarios = select(args.only)
    info = machine(wrk)
    command = command_line(argv)
    print(f"machine: {info['nproc']} cores ({info['cpu']}), {info['python']}, "
          f"{info['platform']}, {info['wrk']}")
    print(f"command: {command}")
    print(f"settings: {args.workers} uvicorn workers per server; wrk -t{args.threads} "
          f"-c{args.connections}, {args.warmup} s warm-up + {args.duration} s per scenario")
    print(f"note: {LOG_LEVEL_NOTE}", flush=True)

    var_dir = Path(tempfile.mkdtemp(prefix="advocase-bench-"))
    log_dir = var_dir / "bench-logs"
    log_dir.mkdir()
    servers: dict[str, Server] = {}
    exit_codes: dict[str, int | None] = {}
    rows: list[Row] = []
    try:
        env = advocase_env(var_dir)
        print(f"migrate: {migrate(env, var_dir)}", flush=True)
        if any(s.server == ADVOCASE for s in scenarios):
            # Started first and alone, so its start-up time is not shared with another boot.
            adv = advocase_server(free_port(), args.workers, env, var_dir, log_dir)
            servers[ADVOCASE] = adv
            adv.start()
            deadline = adv.started_at + START_TIMEOUT_S
            adv.wait_for("/healthz", "healthz", deadline)
            adv.wait_for("/readyz", "ready", deadline)
            print(f"advocase: startup to healthy {adv.startup_s['healthz']:.2f} s, "
                  f"startup to ready {adv.startup_s['ready']:.2f} s", flush=True)
        base = baseline_server(free_port(), args.workers, env, log_dir)
        servers[BASELINE] = base
        base.start()
        base.wait_for("/", "ready", base.started_at + START_TIMEOUT_S)
        print(f"baseline: startup to ready {base.startup_s['ready']:.2f} s", flush=True)

        plan = [("baseline (first)", BASELINE_SCENARIO)]
        plan += [(s.name, s) for s in scenarios]
        plan += [("baseline (last)", BASELINE_SCENARIO)]
        print(f"running {len(plan)} measurements:", flush=True)
        for label, scenario in plan:
            rows.append(measure(label, scenario, servers[scenario.server], args, wrk, env, var_dir))
            time.sleep(1)  # let sockets and CPU settle between runs

        for name, server in servers.items():
            exit_codes[name] = server.stop()
    finally:
        for name, server in servers.items():
            if name not in exit_codes:
                exit_codes[name] = server.stop()
        outputs = {
            name: server_output_summary(s, exit_codes.get(name)) for name, s in servers.items()
        }
        shutil.rmtree(var_dir, ignore_errors=True)

    baselines = [r.result.requests_per_second for r in rows if r.scenario.name == BASELINE]
    reference = statistics.fmean(baselines)
    for row in rows:
        row.ratio = row.result.requests_per_second / reference if reference else 0.0
    spread = (max(baselines) - min(baselines)) / reference * 100 if reference else 0.0

    print()
    print(table(rows))
    print()
    print(f"reference: baseline mean {reference:,.0f} req/s "
          f"(first {baselines[0]:,.0f}, last {baselines[-1]:,.0f}; spread {spread:.1f} %)")
    if ADVOCASE in servers:
        adv = servers[ADVOCASE]
        print(f"advocase startup to ready: {adv.startup_s['ready']:.2f} s "
              f"(healthy after {adv.startup_s['healthz']:.2f} s)")
    errors = {r.label: r.result.socket_errors for r in rows if r.result.errors}
    if errors:
        print(f"socket errors: {errors}")
    for name, out in outputs.items():
        print(f"{name} server: {out['lines']} output lines, exit code {out['exit_code']}, "
              f"{out['notable_count']} notable (error/warning) lines")
        for line in out["notable"]:
            print(f"    {line}")

    if args.json:
        document = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": command,
            "machine": info,
            "settings": {
                "duration_s": args.duration,
                "warmup_s": args.warmup,
                "connections": args.connections,
                "threads": args.threads,
                "workers": args.workers,
                "advocase_log_level": "WARNING",
            },
            "startup_s": {
                name: {k: round(v, 3) for k, v in s.startup_s.items()}
                for name, s in servers.items()
            },
            "baseline_mean_rps": round(reference, 2),
            "baseline_spread_percent": round(spread, 2),
            "results": [row.as_dict() for row in rows],
            "server_output": outputs,
        }
        text = json.dumps(document, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
            print(f"JSON written to {args.json}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    return run_guarded(lambda: run(args, argv, ensure_wrk()), "servers stopped")


if __name__ == "__main__":
    sys.exit(main())
