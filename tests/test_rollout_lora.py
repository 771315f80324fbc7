"""LongLive-style PEFT LoRA (``{"generator_lora": {base_model.model.<layer>.lora_A/B.weight}}``) merge."""

import pytest
import torch
from official_ref import randomize_

from wan_core.checkpoint import CheckpointError
from wan_core.dit import WanDiT, WanDiTConfig
from wan_core.rollout.lora import merge_lora


def _dit():
    return randomize_(WanDiT(WanDiTConfig(dim=32, ffn_dim=32, num_heads=2, num_layers=2, text_dim=8)), 0)


def test_merge_adds_b_at_a_to_exactly_the_listed_layers(tmp_path):
    m = _dit()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    g = torch.Generator().manual_seed(1)
    layers = ["blocks.0.self_attn.q", "blocks.1.cross_attn.o", "blocks.1.ffn.0"]
    lora = {}
    for layer in layers:
        out_f, in_f = before[f"{layer}.weight"].shape
        lora[f"base_model.model.{layer}.lora_A.weight"] = torch.randn(4, in_f, generator=g)
        lora[f"base_model.model.{layer}.lora_B.weight"] = torch.randn(out_f, 4, generator=g)
    torch.save({"generator_lora": lora}, tmp_path / "lora.pt")
    assert merge_lora(m, tmp_path / "lora.pt") == 3
    after = m.state_dict()
    for k, v in before.items():
        layer = k[: -len(".weight")]
        if layer in layers:
            a, b = (
                lora[f"base_model.model.{layer}.lora_A.weight"],
                lora[f"base_model.model.{layer}.lora_B.weight"],
            )
            assert torch.allclose(after[k], v + b @ a, atol=1e-5)
        else:
            assert torch.equal(after[k], v), k


def test_bad_lora_files_are_clear(tmp_path):
    m = _dit()
    torch.save({"x": torch.zeros(1)}, tmp_path / "none.pt")
    with pytest.raises(CheckpointError, match="no LoRA tensors"):
        merge_lora(m, tmp_path / "none.pt")
    torch.save(
        {
            "blocks.9.self_attn.q.lora_A.weight": torch.zeros(2, 32),
            "blocks.9.self_attn.q.lora_B.weight": torch.zeros(32, 2),
        },
        tmp_path / "bad.pt",
    )
    with pytest.raises(CheckpointError, match="matches no Linear"):
        merge_lora(m, tmp_path / "bad.pt")
