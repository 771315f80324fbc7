"""Progress and preview through ComfyUI's own API, on the real server, for a client that says it reads
preview metadata (as the current front end does): the sampler node gets progress text (binary TEXT
frames naming the node) and, per finished chunk, its last frame as the node's preview image
(PREVIEW_IMAGE_WITH_METADATA for that node), beside the pack's own events for the player."""

from __future__ import annotations

import io
import json
import struct

from comfy_client import binary_event_type
from PIL import Image
from workflow_files import tiny_api_prompt

SAMPLER = "6"
TEXT, PREVIEW_WITH_METADATA = 3, 4  # protocol.BinaryEventTypes


def _text_frames(ws) -> list[tuple[str, str]]:
    out = []
    for m in ws.of("binary"):
        if binary_event_type(m.data) == TEXT:
            (n,) = struct.unpack(">I", m.data[4:8])
            out.append((m.data[8 : 8 + n].decode(), m.data[8 + n :].decode()))
    return out


def _previews(ws) -> list[tuple[dict, Image.Image]]:
    out = []
    for m in ws.of("binary"):
        if binary_event_type(m.data) == PREVIEW_WITH_METADATA:
            (n,) = struct.unpack(">I", m.data[4:8])
            meta = json.loads(m.data[8 : 8 + n])
            out.append((meta, Image.open(io.BytesIO(m.data[8 + n :]))))
    return out


def test_progress_text_and_chunk_preview_through_comfyuis_api(comfy):
    with comfy.listen() as ws:
        ws._ws.send(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
        prompt_id = comfy.queue(tiny_api_prompt("t2v_self_forcing_1.3b"))
        entry = comfy.wait(prompt_id, timeout=240)
        ws.wait_for(
            lambda m: m.type == "execution_success" and m.data.get("prompt_id") == prompt_id, timeout=30
        )
    assert entry["status"]["status_str"] == "success", entry["status"]
    texts = [text for node, text in _text_frames(ws) if node == SAMPLER]
    assert "chunk 1/2 denoised · 0 frames" in texts
    assert texts[-1] == "chunk 2/2 done · 21 frames at 16 fps", texts
    previews = [(meta, img) for meta, img in _previews(ws) if meta.get("node_id") == SAMPLER]
    assert len(previews) == 2  # one per chunk (2 chunks)
    assert all(meta["prompt_id"] == prompt_id and meta["image_type"] == "image/jpeg" for meta, _ in previews)
    assert all(img.format == "JPEG" and img.size == (64, 64) for _, img in previews)
    # the player's own events are still sent
    assert [m.data["chunk"] for m in ws.of("wanstream.preview", prompt_id)] == [0, 1]
    states = [m.data for m in ws.of("progress_state", prompt_id)]
    assert any(n.get("value") == 8 and n.get("max") == 8 for s in states for n in s["nodes"].values())
