"""A 300 MiB file through a real server process: uploaded and downloaded as streams, with the
server's memory growing by far less than the file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.evidence.live import (
    MIB,
    RssSampler,
    live_server,
    multipart_stream,
    peak_rss_bytes,
    reset_peak_rss,
    rss_bytes,
)

SIZE = 300 * MIB
GROWTH_LIMIT = 64 * MIB
BOUNDARY = "fictional-large-boundary-5c1e"


@pytest.mark.timeout(600)
def test_a_300_mib_upload_and_download_stream_through_a_real_server(tmp_path: Path) -> None:
    with live_server(tmp_path, evidence_max_bytes=400 * MIB) as live:
        headers = live.headers() | {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
        # Warm up (imports, first-use allocations), then measure from a settled baseline.
        warm, _ = multipart_stream(2 * MIB, BOUNDARY, seed=10**9)
        assert live.client.post(live.evidence_url(), content=warm,
                                headers=headers).status_code == 201
        baseline = rss_bytes(live.pid)
        exact_peak = reset_peak_rss(live.pid)

        body, sent = multipart_stream(SIZE, BOUNDARY)
        with RssSampler(live.pid) as sampler:
            response = live.client.post(live.evidence_url(), content=body, headers=headers)
        assert response.status_code == 201, response.text
        uploaded = response.json()
        assert uploaded["size_bytes"] == SIZE
        assert uploaded["content_type"] == "video/mp4"
        assert uploaded["sha256"] == sent["sha256"]
        peak = max(sampler.peak, peak_rss_bytes(live.pid) if exact_peak else 0)
        growth = peak - baseline
        print(f"\nupload of {SIZE // MIB} MiB: server RSS baseline {baseline / MIB:.1f} MiB, "
              f"peak {peak / MIB:.1f} MiB, growth {growth / MIB:.1f} MiB"
              f" ({'VmHWM' if exact_peak else 'sampled'})")
        assert growth < GROWTH_LIMIT

        baseline = rss_bytes(live.pid)
        exact_peak = reset_peak_rss(live.pid)
        digest, received = hashlib.sha256(), 0
        with RssSampler(live.pid) as sampler, live.client.stream(
                "GET", f"{live.base_url}/api/v1/evidence/{uploaded['id']}/content",
                headers=live.headers()) as download:
            assert download.status_code == 200
            for chunk in download.iter_bytes():
                digest.update(chunk)
                received += len(chunk)
        assert received == SIZE
        assert digest.hexdigest() == sent["sha256"]
        peak = max(sampler.peak, peak_rss_bytes(live.pid) if exact_peak else 0)
        print(f"download: growth {(peak - baseline) / MIB:.1f} MiB")
        assert peak - baseline < GROWTH_LIMIT
