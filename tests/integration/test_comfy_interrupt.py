"""POST /interrupt during a long streaming run stops it within a denoising step (the pack checks
ComfyUI's interrupt flag before every step), and the next job runs normally."""

from __future__ import annotations

import statistics
import time

from workflow_files import tiny_api_prompt

RUN = "t2v_self_forcing_1.3b"
CHUNKS = 1000


def test_interrupt_mid_run_then_next_job_runs(comfy, comfy_server):
    # 1000 chunks x 4 steps without preview: many seconds of work if the interrupt were not honoured
    long_job = tiny_api_prompt(RUN, **{"6": {"chunks": CHUNKS, "seed": 7}})
    del long_job["6"]["inputs"]["preview_vae"]
    with comfy.listen() as ws:
        prompt_id = comfy.queue(long_job)
        ws.wait_for(
            lambda m: (
                m.type == "wanstream.progress"
                and m.data.get("prompt_id") == prompt_id
                and m.data["chunk"] >= 2
            ),
            timeout=180,
        )
        steps = ws.of("wanstream.progress", prompt_id)
        step_s = statistics.median(b.at - a.at for a, b in zip(steps, steps[1:]))
        t0 = time.monotonic()
        comfy.interrupt()
        stopped = ws.wait_for(
            lambda m: (
                m.type in ("execution_interrupted", "execution_success", "execution_error")
                and m.data.get("prompt_id") == prompt_id
            ),
            timeout=60,
        )
        elapsed = stopped.at - t0
        done = ws.of("wanstream.progress", prompt_id)
    assert stopped.type == "execution_interrupted", stopped.data
    assert stopped.data["node_id"] == "6"
    total = CHUNKS * 4
    assert len(done) < total // 4, f"{len(done)} of {total} steps ran"
    # within one step: the step in flight finishes, the next one does not start (generous slack for CI)
    assert elapsed < 1.5 + 3 * step_s, (
        f"stopped {elapsed:.2f} s after /interrupt; a step takes {step_s:.3f} s"
    )
    entry = comfy.wait(prompt_id, timeout=30)
    assert entry["status"]["status_str"] == "error"  # ComfyUI records interrupted prompts as not successful

    # the server is fine and the next job runs to the end
    assert comfy_server.is_up()
    nxt = comfy.queue(tiny_api_prompt(RUN, **{"6": {"seed": 8}}))
    assert comfy.wait(nxt, timeout=180)["status"]["status_str"] == "success"
