"""The sampler's ``gpus`` input on the real server: the T2V API workflow with gpus=2 runs the rollout on
2 local worker processes (gloo on this CPU-only ComfyUI, started from inside ComfyUI's process) and
still streams a preview per chunk; the progress bar advances per chunk; a bad split is a clear error."""

from __future__ import annotations

import pytest
from comfy_versions import assert_progress_reaches
from workflow_files import tiny_api_prompt

SAMPLER, SAVE = "6", "9"
NAME = "t2v_self_forcing_1.3b"  # tiny: 2 chunks of 3 latent frames, 4 steps each, 21 frames 64x64


def _queue(comfy, prompt):
    with comfy.listen() as ws:
        prompt_id = comfy.queue(prompt)
        entry = comfy.wait(prompt_id, timeout=240)
        end = ws.wait_for(
            lambda m: (
                m.type in ("execution_success", "execution_error") and m.data.get("prompt_id") == prompt_id
            ),
            timeout=30,
        )
    return prompt_id, entry, end, ws


@pytest.mark.timeout(300)
def test_t2v_workflow_on_two_workers(comfy):
    prompt = tiny_api_prompt(NAME, **{SAMPLER: {"gpus": 2, "context_parallel": "ring"}})
    prompt_id, entry, end, ws = _queue(comfy, prompt)
    assert end.type == "execution_success", end.data.get("exception_message")
    assert entry["status"]["status_str"] == "success", entry["status"]
    assert entry["outputs"][SAVE]["images"][0]["filename"].endswith(".mp4")
    # the workers hand back whole chunks: progress by chunk (to its last step), up to 2 chunks x 4 steps
    ticks = [m.data for m in ws.of("progress", prompt_id) if m.data.get("node") == SAMPLER]
    assert_progress_reaches(ticks, 8, step=4)
    previews = [m.data for m in ws.of("wanstream.preview", prompt_id)]
    assert [p["chunk"] for p in previews] == [0, 1] and all(len(p["frames"]) for p in previews)


def test_api_workflow_saved_before_the_inputs_existed_still_runs(comfy):
    prompt = tiny_api_prompt(NAME, **{SAMPLER: {"seed": 7}})
    for key in ("gpus", "context_parallel"):
        del prompt[SAMPLER]["inputs"][key]  # optional: the node's defaults (1 GPU, in-process) apply
    _, entry, end, _ = _queue(comfy, prompt)
    assert end.type == "execution_success", end.data.get("exception_message")
    assert entry["status"]["status_str"] == "success", entry["status"]


def test_ulysses_with_indivisible_heads_is_a_clear_error(comfy):
    prompt = tiny_api_prompt(NAME, **{SAMPLER: {"gpus": 2, "context_parallel": "ulysses", "seed": 99}})
    _, _, end, _ = _queue(comfy, prompt)
    assert end.type == "execution_error"
    assert "context_parallel 'ring'" in end.data["exception_message"]
