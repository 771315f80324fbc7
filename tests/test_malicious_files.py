"""Malicious pickles of several shapes through every loader (DiT, Wan VAE, TAEHV, UMT5, CLIP vision,
LoRA): none runs, each message names the file and the global it refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from checkpoint_payloads import ENV_FLAG, PAYLOADS, SHAPES
from tiny_models import make_tiny_models

from wan_core.checkpoint import CheckpointError, load_state_dict
from wan_core.dit.loader import load_dit
from wan_core.rollout.lora import load_lora_state
from wan_core.text import load_clip_vision, load_umt5
from wan_core.vae import load_taehv, load_vae

LOADERS = {
    "dit": (load_dit, "diffusion_models/self_forcing_dmd.pt"),
    "vae": (load_vae, "vae/wan_2.1_vae.safetensors"),
    "taehv": (load_taehv, "vae_approx/taew2_1.pth"),
    "umt5": (load_umt5, "text_encoders/umt5_xxl_fp16.safetensors"),
    "clip_vision": (load_clip_vision, "clip_vision/clip_vision_h.safetensors"),
    "lora": (load_lora_state, "loras/longlive_lora.pt"),
}


@pytest.fixture(scope="module")
def real_states(tmp_path_factory):
    """Tensors of a real-layout tiny file of each kind (the payloads hide among them)."""
    root = tmp_path_factory.mktemp("models")
    make_tiny_models(root, families=("t2v", "i2v"))
    g = torch.Generator().manual_seed(0)
    lora = {  # LongLive's PEFT layout
        "base_model.model.blocks.0.self_attn.q.lora_A.weight": torch.randn(2, 8, generator=g),
        "base_model.model.blocks.0.self_attn.q.lora_B.weight": torch.randn(8, 2, generator=g),
    }
    states = {kind: load_state_dict(root / rel) for kind, (_, rel) in LOADERS.items() if kind != "lora"}
    return {**states, "lora": lora}


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("kind", sorted(LOADERS))
def test_malicious_file_is_refused_by_every_loader(real_states, tmp_path, monkeypatch, kind, shape):
    monkeypatch.delenv(ENV_FLAG, raising=False)
    loader, rel = LOADERS[kind]
    for payload_name, (payload_cls, global_name) in PAYLOADS.items():
        marker = tmp_path / f"ran_{payload_name}"
        path = tmp_path / payload_name / Path(rel).name  # the name a user would give it
        path.parent.mkdir()
        SHAPES[shape](path, real_states[kind], payload_cls(marker))
        with pytest.raises(CheckpointError) as e:
            loader(path)
        msg = str(e.value)
        assert str(path) in msg, msg
        assert global_name in msg and "not a plain weights file" in msg, msg
        assert "weights_only=False unless you trust" in msg  # never a bare "load it unsafely"
        assert not marker.exists() and ENV_FLAG not in os.environ


def test_the_payloads_do_run_when_unpickled_unsafely(tmp_path, monkeypatch):
    """The test's payloads are live: pickle.loads runs them (so the refusals above are meaningful)."""
    import pickle

    monkeypatch.delenv(ENV_FLAG, raising=False)
    for name, (payload_cls, _) in PAYLOADS.items():
        marker = tmp_path / name
        pickle.loads(pickle.dumps(payload_cls(marker)))
        assert marker.exists()
    assert os.environ.get(ENV_FLAG) == "1"
