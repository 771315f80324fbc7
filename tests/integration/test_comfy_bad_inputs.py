"""Bad inputs end as an ``execution_error`` whose message names the problem and the fix, and the
server stays up and keeps working: a file of the wrong kind, frames that do not fit the VAE, a start
image whose size does not fit the model's stride, an image / sampler size mismatch, a known
model file that is not downloaded (download off), and prompt switches with a one-pass preset."""

from __future__ import annotations

import pytest
from tiny_models import ODD_IMAGE, WRONG_KIND_DIT
from workflow_files import tiny_api_prompt

CASES = {
    # a VAE file placed in models/diffusion_models and picked in Load Wan DiT
    "wrong_file_kind": (
        "t2v_self_forcing_1.3b",
        {"1": {"model_name": WRONG_KIND_DIT}},
        "1",
        ["Load Wan DiT", WRONG_KIND_DIT, "Wan VAE"],
    ),
    # prompt switches with a preset that makes the whole video in one pass
    "switch_on_bidirectional_preset": (
        "long_video_prompt_switch",
        {"6": {"preset": "wan2.1-t2v-1.3b"}},
        "6",
        ["generates the whole video at once", "prompt_switches", "autoregressive preset"],
    ),
    # a known model that is not downloaded yet, with download off
    "missing_known_file": (
        "t2v_self_forcing_1.3b",
        {"1": {"model_name": "wan2.1_t2v_1.3B_fp16.safetensors"}},
        "1",
        [
            "wan2.1_t2v_1.3B_fp16.safetensors is not in models/diffusion_models",
            "Turn on 'download'",
            "huggingface.co",
        ],
    ),
    # 20 frames: the Wan VAE makes 1 + 4k frames
    "frames_do_not_fit": (
        "t2v_self_forcing_1.3b",
        {"6": {"frames": 20}},
        "6",
        ["20 frames do not fit", "17 or 21 frames"],
    ),
    # a 72x40 start image for Wan2.1 I2V (needs multiples of 16)
    "image_not_multiple_of_stride": (
        "i2v_wan2.1_14b_480p",
        {"10": {"image": ODD_IMAGE}},
        "5",
        ["72x40", "multiples of 16", "64x32"],
    ),
    # sampler size typed in instead of taken from I2V Control Encode
    "image_size_mismatch": (
        "i2v_wan2.1_14b_480p",
        {"6": {"width": 96, "height": 64}},
        "6",
        ["encoded at 64x64", "set to 96x64", "width and height outputs"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_a_clear_execution_error(comfy, comfy_server, case):
    name, overrides, node, phrases = CASES[case]
    with comfy.listen() as ws:
        prompt_id = comfy.queue(tiny_api_prompt(name, **overrides))
        err = ws.wait_for(
            lambda m: (
                m.type in ("execution_error", "execution_success") and m.data.get("prompt_id") == prompt_id
            ),
            timeout=180,
        )
    assert err.type == "execution_error", f"{case}: expected an execution_error"
    assert err.data["node_id"] == node
    message = err.data["exception_message"]
    for phrase in phrases:
        assert phrase in message, f"{case}: {phrase!r} not in {message!r}"
    assert comfy_server.is_up(), comfy_server.log_tail()


def test_server_still_runs_jobs_after_errors(comfy):
    prompt_id = comfy.queue(tiny_api_prompt("t2v_self_forcing_1.3b", **{"6": {"seed": 3}}))
    assert comfy.wait(prompt_id, timeout=180)["status"]["status_str"] == "success"
