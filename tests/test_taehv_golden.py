"""TAEHV matches the reference madebyollin/taehv on stored golden outputs (tests/data/taehv/README.md)."""

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from wan_core.vae.taehv import TAEHV, TAEHVConfig

DATA = Path(__file__).parent / "data" / "taehv"
NAMES = ["taew2_1", "taew2_2", "taew2_2_super"]


def _golden(name):
    with safe_open(str(DATA / f"{name}.safetensors"), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    cfg = json.loads(meta["config"])
    cfg["decoder_widths"] = tuple(cfg["decoder_widths"])
    model = TAEHV(TAEHVConfig(**cfg)).eval()
    sd = {k[len("state_dict.") :]: v.float() for k, v in tensors.items() if k.startswith("state_dict.")}
    model.load_state_dict(sd, strict=True)
    return model, tensors, meta


@pytest.mark.parametrize("name", NAMES)
def test_decode_matches_reference(name):
    model, g, meta = _golden(name)
    assert meta["command"].startswith("python tools/make_taehv_goldens.py")
    latents = g["latents"].float().transpose(1, 2)  # NTCHW -> [B, C, T, h, w]
    ref = g["decoded"].transpose(1, 2) * 2 - 1  # [0, 1] NTCHW -> [-1, 1] [B, 3, F, H, W]
    out = model.decode(latents)
    assert out.shape == ref.shape
    err = (out - ref).abs().max().item()
    print(f"{name} decode vs reference: max abs err {err:.2e}")
    assert err < 1e-5
    # streaming: one latent frame at a time gives the same frames
    state = model.new_decode_state()
    parts = [model.decode_chunk(latents[:, :, i : i + 1], state) for i in range(latents.shape[2])]
    assert [p.shape[2] for p in parts] == [1] + [4] * (latents.shape[2] - 1)
    assert (torch.cat(parts, 2) - ref).abs().max().item() < 1e-5


@pytest.mark.parametrize("name", NAMES)
def test_encode_matches_reference(name):
    model, g, _ = _golden(name)
    frames = g["frames"].float().transpose(1, 2) * 2 - 1  # [B, 3, F, H, W] in [-1, 1]
    ref = g["encoded"].transpose(1, 2)
    out = model.encode(frames)
    assert out.shape == ref.shape
    err = (out - ref).abs().max().item() / ref.abs().max().item()
    print(f"{name} encode vs reference: max rel err {err:.2e}")
    assert err < 1e-5
