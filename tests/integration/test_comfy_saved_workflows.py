"""Workflows saved with an older version of the pack keep working: the API files of main @ 4c03527
(before the ``speed`` input, the options node, preset ``auto`` and the ``fps`` output; kept verbatim in
``saved_workflows/main_4c03527/``) run on the real server and make the same latent video as they made
then. The latents of that version were recorded once by running this file on main @ 4c03527 with
``WANSTREAM_RECORD_SAVED_LATENTS=1`` (``saved_workflows/main_4c03527/latents/<name>.safetensors``).
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
import torch
from workflow_files import TINY_OVERRIDES

SAVED = Path(__file__).resolve().parent / "saved_workflows" / "main_4c03527"
NAMES = sorted(p.stem for p in (SAVED / "api").glob("*.json"))  # the workflows main @ 4c03527 shipped
RECORD = os.environ.get("WANSTREAM_RECORD_SAVED_LATENTS") == "1"
SAMPLER, LATENT_OUT = "6", "90"


def saved_api_prompt(name: str) -> dict:
    """The saved API file with the tiny-model overrides, plus ComfyUI's SaveLatent on the sampler."""
    prompt = copy.deepcopy(json.loads((SAVED / "api" / f"{name}.json").read_text()))
    for node_id, values in TINY_OVERRIDES[name].items():
        prompt[node_id]["inputs"].update(values)
    prompt[LATENT_OUT] = {
        "class_type": "SaveLatent",
        "inputs": {"samples": [SAMPLER, 0], "filename_prefix": f"saved_workflows/{name}"},
    }
    return prompt


def _run_latent(comfy, comfy_server, prompt: dict) -> torch.Tensor:
    from safetensors.torch import load_file

    prompt_id = comfy.queue(prompt)
    entry = comfy.wait(prompt_id, timeout=300)
    assert entry["status"]["status_str"] == "success", entry["status"]
    (saved,) = entry["outputs"][LATENT_OUT]["latents"]
    return load_file(str(comfy_server.output / saved["subfolder"] / saved["filename"]))["latent_tensor"]


@pytest.mark.parametrize("name", NAMES)
def test_saved_workflow_of_main_makes_the_same_video(comfy, comfy_server, name):
    from safetensors.torch import save_file

    latent = _run_latent(comfy, comfy_server, saved_api_prompt(name))
    golden = SAVED / "latents" / f"{name}.safetensors"
    if RECORD:
        golden.parent.mkdir(parents=True, exist_ok=True)
        save_file({"latent": latent.contiguous()}, str(golden))
        pytest.skip(f"recorded {golden.name}")
    from safetensors.torch import load_file

    expected = load_file(str(golden))["latent"]
    assert latent.shape == expected.shape
    assert torch.allclose(latent, expected, rtol=0, atol=1e-5), (latent - expected).abs().max()
