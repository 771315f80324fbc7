"""Soak: 20 T2V jobs queued back to back on the tiny models all succeed, and the server's resident
memory does not grow job over job after a warm-up. What is measured is the anonymous resident memory
(``RssAnon``: heap and mapped tensors; the file pages of mmapped weights and libraries are left out),
with glibc's mmap threshold fixed by the server fixture so freed tensors leave the process. Each job decodes 21 frames of 128x128 (4 MB as
float32) plus its latents, KV cache and preview JPEGs, so keeping any per-job object alive would show
as >= 4 MB per job; the RSS series is kept in ``artifacts/soak_rss.json``."""

from __future__ import annotations

import json
import time

from conftest import ARTIFACTS
from workflow_files import tiny_api_prompt

JOBS = 20
WARMUP = 5
# Jobs run back to back, so a sample taken when one job ends sees the next one mid-run (+0..60 MB of
# working memory). The floor (minimum) of a window of samples is what a leak raises: one job's frames
# alone would lift it by 4 MB per job, 40 MB over the 10 jobs between the two windows.
MAX_FLOOR_GROWTH_BYTES = 16 * 2**20


def test_twenty_jobs_back_to_back_memory_flat(comfy, comfy_server):
    ids = [
        comfy.queue(
            tiny_api_prompt("t2v_self_forcing_1.3b", **{"6": {"seed": 1000 + i, "width": 128, "height": 128}})
        )
        for i in range(JOBS)
    ]
    rss, total = [], []
    for prompt_id in ids:
        entry = comfy.wait(prompt_id, timeout=240)
        assert entry["status"]["status_str"] == "success", entry["status"]
        rss.append(comfy_server.rss_bytes("RssAnon"))
        total.append(comfy_server.rss_bytes())
    time.sleep(1.0)
    idle = comfy_server.rss_bytes("RssAnon")  # nothing queued any more
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "soak_rss.json").write_text(
        json.dumps({"rss_anon_bytes_after_each_job": rss, "rss_anon_bytes_idle": idle, "vm_rss_bytes": total})
    )
    mib = [round(r / 2**20, 1) for r in rss] + [round(idle / 2**20, 1)]
    early = min(rss[WARMUP : WARMUP + 5])
    late = min(rss[-5:] + [idle])
    assert late - early < MAX_FLOOR_GROWTH_BYTES, (
        f"anonymous RSS floor grew {(late - early) / 2**20:.1f} MiB: {mib} MiB"
    )
    assert comfy_server.is_up()
