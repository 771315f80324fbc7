"""Helpers of the live-stream tests: the tiny live workflow (with a SaveLatent of the sampler's
output), steering calls that return (status, JSON) instead of raising, and the saved latents."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from workflow_files import LIVE, tiny_api_prompt

SAMPLER, SAVE, SAVE_LATENT = "6", "9", "10"


def live_prompt(prefix: str, max_seconds: float = 0.0, seed: int = 42) -> dict:
    """The tiny live workflow; the sampler's latent also saved (``SaveLatent``) under ``prefix``."""
    prompt = tiny_api_prompt(LIVE, **{SAMPLER: {"max_seconds": max_seconds, "seed": seed}})
    prompt[SAVE]["inputs"]["filename_prefix"] = f"wan_stream/{prefix}"
    prompt[SAVE_LATENT] = {
        "class_type": "SaveLatent",
        "inputs": {"samples": [SAMPLER, 0], "filename_prefix": f"latents/{prefix}"},
    }
    return prompt


def seconds_for_chunks(chunks: int, latent_per_chunk: int = 3, fps: int = 16) -> float:
    """``max_seconds`` that makes exactly ``chunks`` chunks (``live_job.max_chunks_for``)."""
    return (4 * (chunks * latent_per_chunk - 1) + 1) / fps


def steer(
    url: str, prompt_id: str, action: str, body: dict | bytes | None = None, headers: dict | None = None
):
    """POST /wanstream/live/<id>/<action> -> (HTTP status, JSON reply)."""
    data = body if isinstance(body, bytes) else json.dumps(body or {}).encode()
    req = urllib.request.Request(f"{url}/wanstream/live/{prompt_id}/{action}", data=data, method="POST")
    req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def saved_latent(output_dir, entry: dict):
    """The ``[1, C, T, h, w]`` latent SaveLatent wrote for this history entry."""
    from safetensors.torch import load_file

    item = entry["outputs"][SAVE_LATENT]["latents"][0]
    return load_file(str(output_dir / item["subfolder"] / item["filename"]))["latent_tensor"]
