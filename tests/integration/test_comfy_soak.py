"""Soak: 20 T2V jobs queued back to back on the tiny models all succeed, and the server's resident
memory does not grow job over job after a warm-up (each job decodes ~16 MB of frames, so keeping any
per-job tensors alive would show)."""

from __future__ import annotations

from workflow_files import tiny_api_prompt

JOBS = 20
WARMUP = 5
# after warm-up: allocator noise only. A leak of one job's frames alone would add ~16 MB per job.
MAX_GROWTH_BYTES = 48 * 2**20
MAX_SLOPE_BYTES_PER_JOB = 2 * 2**20


def _slope(ys: list[float]) -> float:
    n = len(ys)
    xs = range(n)
    mx, my = (n - 1) / 2, sum(ys) / n
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def test_twenty_jobs_back_to_back_memory_flat(comfy, comfy_server):
    ids = [
        comfy.queue(
            tiny_api_prompt("t2v_self_forcing_1.3b", **{"6": {"seed": 1000 + i, "width": 256, "height": 256}})
        )
        for i in range(JOBS)
    ]
    rss = []
    for prompt_id in ids:
        entry = comfy.wait(prompt_id, timeout=240)
        assert entry["status"]["status_str"] == "success", entry["status"]
        rss.append(comfy_server.rss_bytes())
    after = rss[WARMUP:]
    mib = [round(r / 2**20, 1) for r in rss]
    assert max(after) - after[0] < MAX_GROWTH_BYTES, f"RSS grew after warm-up: {mib} MiB"
    assert _slope(after) < MAX_SLOPE_BYTES_PER_JOB, (
        f"RSS trend {_slope(after) / 2**20:.2f} MiB/job: {mib} MiB"
    )
    assert comfy_server.is_up()
