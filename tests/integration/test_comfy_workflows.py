"""Every bundled API workflow runs on the real server with tiny models under the real file names:
the mp4 that ComfyUI's own SaveVideo writes has the right frame count and size, and the websocket
carries ComfyUI's per-step progress and the pack's per-step / per-chunk preview events."""

from __future__ import annotations

import base64
import io

import av
import pytest
from comfy_versions import assert_progress_reaches
from PIL import Image
from workflow_files import NAMES, tiny_api_prompt, with_start_image

SAMPLER, SAVE = "6", "9"
# name -> (pixel frames written, (width, height), chunks, denoising steps per chunk)
EXPECTED = {
    "t2v_self_forcing_1.3b": (21, (64, 64), 2, 4),  # 6 latent frames = 2 chunks of 3, 4 steps (Self-Forcing)
    "i2v_wan2.1_14b_480p": (9, (64, 64), 1, 40),  # base Wan2.1 I2V: whole video, 40 Euler steps
    "ti2v_wan2.2_5b": (9, (64, 64), 1, 50),  # Wan2.2 TI2V 5B: whole video, 50 Euler steps
    "long_video_prompt_switch": (69, (64, 64), 6, 4),  # LongLive, 18 latent frames, switches at chunks 2, 4
    "ti2v_longlive2_5b_ar": (61, (64, 64), 2, 4),  # LongLive 2.0 AR TI2V 5B: 2 chunks of 8, UniPC 4 steps
}


def _decode_mp4(data: bytes) -> tuple[int, tuple[int, int], float]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        frames = [f for f in container.decode(stream)]
        rate = float(stream.average_rate) if stream.average_rate else 0.0
        return len(frames), (frames[0].width, frames[0].height), rate


@pytest.mark.parametrize("name", NAMES)
def test_api_workflow_runs(comfy, comfy_server, name):
    frames, size, chunks, steps = EXPECTED[name]
    with comfy.listen() as ws:
        prompt_id = comfy.queue(tiny_api_prompt(name))
        entry = comfy.wait(prompt_id, timeout=240)
        end = ws.wait_for(
            lambda m: (
                m.type in ("execution_success", "execution_error") and m.data.get("prompt_id") == prompt_id
            ),
            timeout=30,
        )
    assert end.type == "execution_success", end.data.get("exception_message")
    assert entry["status"]["status_str"] == "success", entry["status"]

    # the mp4 written by SaveVideo
    videos = entry["outputs"][SAVE]["images"]
    assert len(videos) == 1 and videos[0]["filename"].endswith(".mp4")
    path = comfy_server.output / videos[0]["subfolder"] / videos[0]["filename"]
    assert path.is_file()
    n, wh, fps = _decode_mp4(comfy.view(videos[0]["filename"], videos[0]["subfolder"]))
    assert (n, wh) == (frames, size)
    assert fps == pytest.approx(24.0 if name.startswith("ti2v") else 16.0)

    # ComfyUI progress of the sampler node: up to the video's denoising steps (one update per step;
    # ComfyUI after 0.3.75 sends at most one message per ~100 ms of them)
    ticks = [m.data for m in ws.of("progress", prompt_id) if m.data.get("node") == SAMPLER]
    assert_progress_reaches(ticks, chunks * steps)
    # the pack's chunk/step events and the streamed preview frames (TAEHV) of every chunk
    events = [m.data for m in ws.of("wanstream.progress", prompt_id)]
    assert [(e["chunk"], e["step"]) for e in events] == [
        (c, s) for c in range(chunks) for s in range(1, steps + 1)
    ]
    previews = [m.data for m in ws.of("wanstream.preview", prompt_id)]
    assert [p["chunk"] for p in previews] == list(range(chunks))
    assert all(p["node"] == SAMPLER and p["num_chunks"] == chunks for p in previews)
    assert sum(len(p["frames"]) for p in previews) == frames  # TAEHV makes as many frames as the VAE
    # streamed: each chunk's frames arrive before the next chunk's first denoising step
    order = [
        m
        for m in ws.messages
        if m.type in ("wanstream.progress", "wanstream.preview") and m.data.get("prompt_id") == prompt_id
    ]
    for c in range(chunks - 1):
        shown = next(i for i, m in enumerate(order) if m.type == "wanstream.preview" and m.data["chunk"] == c)
        nxt = next(
            i for i, m in enumerate(order) if m.type == "wanstream.progress" and m.data["chunk"] == c + 1
        )
        assert shown < nxt, f"chunk {c} preview came after chunk {c + 1} started"
    first = Image.open(io.BytesIO(base64.b64decode(previews[0]["frames"][0])))
    assert first.format == "JPEG" and first.size == size
    assert [m.data["node"] for m in ws.of("executed", prompt_id)][-1] == SAVE


def test_prompt_switch_changes_the_video_from_its_chunk_on(comfy):
    """Same seed, with and without the switches: chunks before the first switch (chunk 2) are the same
    frames, every chunk from it on differs (the new prompt's cross-attention and the re-encoded cache)."""
    name = "long_video_prompt_switch"
    seed = {"6": {"seed": 321}}
    switched = comfy.run_for_previews(tiny_api_prompt(name, **seed))
    plain = comfy.run_for_previews(tiny_api_prompt(name, **seed, **{"2": {"prompt_switches": ""}}))
    assert len(switched) == len(plain) == 6
    assert switched[:2] == plain[:2]
    assert all(a != b for a, b in zip(switched[2:], plain[2:]))


def test_decode_chunk_with_taehv(comfy, comfy_server):
    """VAE Decode Chunk also takes the TAEHV (fast decode): same frame count and size as the VAE."""
    prompt = tiny_api_prompt("t2v_self_forcing_1.3b", **{"7": {"vae": ["4", 0], "chunk_frames": 2}})
    prompt_id = comfy.queue(prompt)
    entry = comfy.wait(prompt_id, timeout=240)
    assert entry["status"]["status_str"] == "success", entry["status"]
    video = entry["outputs"][SAVE]["images"][0]
    n, wh, _ = _decode_mp4(comfy.view(video["filename"], video["subfolder"]))
    assert (n, wh) == (21, (64, 64))


def test_start_image_with_an_autoregressive_t2v_model(comfy):
    """I2V Control Encode (Wan 2.1 VAE, no CLIP) in front of Self-Forcing: the T2V model streams from
    the start image (its first latent frame is held to the image's latent)."""
    prompt = with_start_image(tiny_api_prompt("t2v_self_forcing_1.3b"))
    prompt_id = comfy.queue(prompt)
    entry = comfy.wait(prompt_id, timeout=240)
    assert entry["status"]["status_str"] == "success", entry["status"]
    video = entry["outputs"][SAVE]["images"][0]
    assert _decode_mp4(comfy.view(video["filename"], video["subfolder"]))[:2] == (21, (64, 64))


def test_text_encoder_on_cpu_and_saved_workflows_without_the_device_input(comfy):
    """Encode UMT5 Prompt's optional ``device``: cpu runs on the real server, and a saved API workflow from
    before the input existed (no ``device`` key) still runs, with the same frames for the same seed."""
    name, seed = "t2v_self_forcing_1.3b", {"6": {"seed": 77}}
    prompt = {"2": {"positive": "a lighthouse in a storm, encoded on the cpu", "device": "cpu"}}
    on_cpu = comfy.run_for_previews(tiny_api_prompt(name, **seed, **prompt))
    old = tiny_api_prompt(name, **seed, **prompt)
    del old["2"]["inputs"]["device"]
    assert comfy.run_for_previews(old) == on_cpu and len(on_cpu) == 2
