"""The bundled workflows (UI graph + API twin) and how the tests shrink them for tiny models."""

from __future__ import annotations

import copy
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / "workflows"
NAMES = [
    "t2v_self_forcing_1.3b",
    "i2v_wan2.1_14b_480p",
    "ti2v_wan2.2_5b",
    "long_video_prompt_switch",
    "ti2v_longlive2_5b_ar",
]
LIVE = "live_stream_self_forcing"  # runs until stopped: tested by test_comfy_live*.py, not with NAMES
TEMPLATES = [*NAMES, LIVE]  # every UI workflow in workflows/

# Widget values the tests change so that the tiny models run in seconds on a CPU: video size and
# length (the tiny models keep the real strides and chunk sizes), and the prompt-switch chunks of
# the long-video workflow (LongLive; its real switches are at chunks 7 and 14 of 20).
TINY_SIZE = {"width": 64, "height": 64}
TINY_OVERRIDES: dict[str, dict[str, dict]] = {
    "t2v_self_forcing_1.3b": {"6": {**TINY_SIZE, "frames": 21}},  # 6 latent frames = 2 chunks of 3
    "i2v_wan2.1_14b_480p": {"6": {"frames": 9}},  # size comes from the 64x64 start image
    "ti2v_wan2.2_5b": {"6": {"frames": 9}},
    "ti2v_longlive2_5b_ar": {"6": {"frames": 61}},  # 16 latent frames = 2 chunks of 8 (LongLive 2.0)
    LIVE: {"6": {**TINY_SIZE}},
    "long_video_prompt_switch": {
        # 18 latent frames = 6 chunks: more than LongLive's sink + window, so the cache rolls
        "6": {**TINY_SIZE, "frames": 69},
        "2": {
            "prompt_switches": "2: a balloon over a river valley\n4: a balloon landing in a village square"
        },
    },
}


def ui_graph(name: str) -> dict:
    return json.loads((WORKFLOWS / f"{name}.json").read_text())


def api_prompt(name: str) -> dict:
    return json.loads((WORKFLOWS / "api" / f"{name}.json").read_text())


def tiny_api_prompt(name: str, **extra: dict) -> dict:
    """The API twin with the tiny-model overrides (plus ``extra``: node id -> {input: value})."""
    prompt = copy.deepcopy(api_prompt(name))
    for overrides in (TINY_OVERRIDES[name], extra):
        for node_id, values in overrides.items():
            prompt[node_id]["inputs"].update(values)
    return prompt


def with_start_image(prompt: dict) -> dict:
    """The T2V API prompt with I2V Control Encode (Wan 2.1 VAE, no CLIP) in front of the sampler: the
    start image (``tiny_models.START_IMAGE``) conditions it and sets its width / height."""
    from tiny_models import START_IMAGE

    prompt["10"] = {"class_type": "LoadImage", "inputs": {"image": START_IMAGE}}
    prompt["5"] = {
        "class_type": "WanStreamI2VControlEncode",
        "inputs": {
            "conditioning": ["2", 0],
            "vae": ["3", 0],
            "image": ["10", 0],
            "clip_vision": "none",
            "download": False,
        },
    }
    prompt["6"]["inputs"].update(conditioning=["5", 0], width=["5", 1], height=["5", 2])
    return prompt
