"""Benchmark: evidence upload and download through a real server, against a plain file copy.

    .venv/bin/python -m tests.bench.evidence [--mib 200] [--rounds 3]

Starts ``advocase serve`` on a free loopback port with a throw-away var folder (SQLite,
local storage), uploads a generated file as multipart/form-data and downloads it again,
each streamed on both sides. Throughput is reported in MB/s and as a ratio to copying a
file of the same size on the same disk in the same run (``shutil.copyfile``: read and
write, no HTTP, no hashing, no encryption), with the server's peak RSS over its settled
RSS. Also timed in-process: Tink streaming encryption alone (AES256_GCM_HKDF_1MB).
Absolute numbers drift between runs; compare the ratios.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from tests.evidence.live import (
    MIB,
    RssSampler,
    live_server,
    multipart_stream,
    peak_rss_bytes,
    reset_peak_rss,
    rss_bytes,
)

BOUNDARY = "fictional-bench-boundary-41d2"


def _mb_per_s(size: int, seconds: float) -> float:
    return size / seconds / 1e6


def _file_copy(folder: Path, size: int) -> float:
    source, target = folder / "copy-source.bin", folder / "copy-target.bin"
    with source.open("wb") as out:
        block = os.urandom(MIB)
        for _ in range(size // MIB):
            out.write(block)
    start = time.perf_counter()
    shutil.copyfile(source, target)
    with target.open("rb+") as handle:
        os.fsync(handle.fileno())  # evidence writes are fsynced too
    elapsed = time.perf_counter() - start
    source.unlink()
    target.unlink()
    return elapsed


def _tink_encrypt(folder: Path, size: int) -> float:
    from app.core.storage import LocalStorage, encrypting_writer, new_object_keyset

    storage = LocalStorage(folder / "tink")
    block = os.urandom(MIB)
    start = time.perf_counter()
    with encrypting_writer(storage, "bench/object", new_object_keyset(), b"bench") as out:
        for _ in range(size // MIB):
            out.write(block)
    elapsed = time.perf_counter() - start
    shutil.rmtree(folder / "tink")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=200, help="file size in MiB")
    parser.add_argument("--rounds", type=int, default=3, help="uploads and downloads timed")
    args = parser.parse_args(argv)
    size = args.mib * MIB
    folder = Path(tempfile.mkdtemp(prefix="advocase-bench-evidence-"))
    results: dict[str, list[float]] = {"copy": [], "tink": [], "upload": [], "download": []}
    growth = {"upload": 0, "download": 0}
    try:
        with live_server(folder, evidence_max_bytes=size + 16 * MIB) as live:
            headers = live.headers() | {
                "content-type": f"multipart/form-data; boundary={BOUNDARY}"}
            warm, _ = multipart_stream(2 * MIB, BOUNDARY, seed=10**9)
            assert live.client.post(live.evidence_url(), content=warm,
                                    headers=headers).status_code == 201
            for round_number in range(args.rounds):
                results["copy"].append(_file_copy(folder, size))
                results["tink"].append(_tink_encrypt(folder, size))

                baseline = rss_bytes(live.pid)
                exact = reset_peak_rss(live.pid)
                body, sent = multipart_stream(size, BOUNDARY, seed=round_number * 10**6)
                with RssSampler(live.pid) as sampler:
                    start = time.perf_counter()
                    response = live.client.post(live.evidence_url(), content=body,
                                                headers=headers)
                    results["upload"].append(time.perf_counter() - start)
                response.raise_for_status()
                evidence = response.json()
                assert evidence["sha256"] == sent["sha256"]
                peak = max(sampler.peak, peak_rss_bytes(live.pid) if exact else 0)
                growth["upload"] = max(growth["upload"], peak - baseline)

                baseline = rss_bytes(live.pid)
                exact = reset_peak_rss(live.pid)
                digest = hashlib.sha256()
                with RssSampler(live.pid) as sampler:
                    start = time.perf_counter()
                    with live.client.stream(
                            "GET", f"{live.base_url}/api/v1/evidence/{evidence['id']}/content",
                            headers=live.headers()) as download:
                        for chunk in download.iter_bytes(MIB):
                            digest.update(chunk)
                    results["download"].append(time.perf_counter() - start)
                assert digest.hexdigest() == sent["sha256"]
                peak = max(sampler.peak, peak_rss_bytes(live.pid) if exact else 0)
                growth["download"] = max(growth["download"], peak - baseline)
            server_rss = rss_bytes(live.pid)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    median = {name: statistics.median(times) for name, times in results.items()}
    copy_rate = _mb_per_s(size, median["copy"])
    report = {
        "file_mib": args.mib, "rounds": args.rounds,
        "file_copy_mb_s": round(copy_rate, 1),
        "tink_encrypt_mb_s": round(_mb_per_s(size, median["tink"]), 1),
        "upload_mb_s": round(_mb_per_s(size, median["upload"]), 1),
        "download_mb_s": round(_mb_per_s(size, median["download"]), 1),
        "upload_ratio_to_copy": round(_mb_per_s(size, median["upload"]) / copy_rate, 3),
        "download_ratio_to_copy": round(_mb_per_s(size, median["download"]) / copy_rate, 3),
        "server_rss_mib": round(server_rss / MIB, 1),
        "upload_peak_rss_growth_mib": round(growth["upload"] / MIB, 1),
        "download_peak_rss_growth_mib": round(growth["download"] / MIB, 1),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
