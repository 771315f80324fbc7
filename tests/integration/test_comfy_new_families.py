"""The new-family presets without a workflow of their own (Causal Forcing++ 2-step / 1-step, Reward
Forcing) run end to end on the real server: the T2V workflow with the family's DiT file (the tiny
Self-Forcing-layout DiT under the family's published file name, so preset ``auto`` finds the family
from the name) makes an mp4 with the frames of the requested length."""

from __future__ import annotations

import io
import shutil

import av
import pytest
from workflow_files import TINY_SIZE, tiny_api_prompt

from wan_core.rollout.presets import get_preset

SAVE = "9"


@pytest.mark.parametrize(
    "preset", ["causal-forcing-pp-2step-1.3b", "causal-forcing-pp-1step-1.3b", "reward-forcing-1.3b"]
)
@pytest.mark.parametrize("chosen", ["auto", "explicit"])
def test_new_family_preset_runs_through_the_t2v_workflow(comfy, comfy_server, preset, chosen):
    folder = comfy_server.models / "diffusion_models"
    name = get_preset(preset).dit.name
    if not (folder / name).exists():
        shutil.copyfile(folder / "self_forcing_dmd.pt", folder / name)
    frames = 21  # 6 latent frames: whole chunks of 1 (frame-wise) and of 3 (Reward Forcing)
    prompt = tiny_api_prompt(
        "t2v_self_forcing_1.3b",
        **{
            "1": {"model_name": name},
            "6": {**TINY_SIZE, "frames": frames, "preset": "auto" if chosen == "auto" else preset},
        },
    )
    entry = comfy.wait(comfy.queue(prompt), timeout=240)
    assert entry["status"]["status_str"] == "success", entry["status"]
    video = entry["outputs"][SAVE]["images"][0]
    with av.open(io.BytesIO(comfy.view(video["filename"], video["subfolder"]))) as container:
        decoded = list(container.decode(container.streams.video[0]))
    assert len(decoded) == frames and (decoded[0].width, decoded[0].height) == (64, 64)
