"""wan_core.checkpoint: containers, training wrappers, kind detection, clear errors."""

import json

import pytest
import torch
from safetensors.torch import save_file

from wan_core.checkpoint import CheckpointError, detect_kind, expect_kind, load_into, open_checkpoint
from wan_core.quant import ScaledFP8Linear, split_quant_keys, swap_fp8_linears


def test_safetensors_and_pt_roundtrip(tmp_path):
    sd = {"a.weight": torch.randn(3, 4), "b": torch.arange(5)}
    save_file(sd, tmp_path / "x.safetensors")
    torch.save(sd, tmp_path / "x.pt")
    for name in ("x.safetensors", "x.pt"):
        ck = open_checkpoint(tmp_path / name)
        assert sorted(ck.keys()) == ["a.weight", "b"]
        assert ck.shape("a.weight") == (3, 4)
        assert torch.equal(ck.get("a.weight"), sd["a.weight"])
        assert ck.get("a.weight", dtype=torch.bfloat16).dtype == torch.bfloat16


def test_training_wrapper_prefers_ema_and_demangles(tmp_path):
    gen = {"model._fsdp_wrapped_module.blocks.0.w": torch.zeros(2)}
    ema = {"model._fsdp_wrapped_module.blocks.0.w": torch.ones(2)}
    torch.save({"generator": gen, "critic": {"x": torch.zeros(1)}, "generator_ema": ema}, tmp_path / "sf.pt")
    ck = open_checkpoint(tmp_path / "sf.pt")
    assert ck.keys() == ["model.blocks.0.w"]
    assert ck.source == "['generator_ema']"
    assert torch.equal(ck.get("model.blocks.0.w"), torch.ones(2))


def test_sharded_folder_with_index(tmp_path):
    save_file({"a": torch.ones(2)}, tmp_path / "m-00001-of-00002.safetensors")
    save_file({"b": torch.zeros(3)}, tmp_path / "m-00002-of-00002.safetensors")
    idx = {
        "metadata": {},
        "weight_map": {"a": "m-00001-of-00002.safetensors", "b": "m-00002-of-00002.safetensors"},
    }
    (tmp_path / "m.safetensors.index.json").write_text(json.dumps(idx))
    for p in (tmp_path, tmp_path / "m.safetensors.index.json"):
        ck = open_checkpoint(p)
        assert sorted(ck.keys()) == ["a", "b"]
    (tmp_path / "m-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match="shard 'm-00002-of-00002.safetensors'.*missing"):
        open_checkpoint(tmp_path / "m.safetensors.index.json")


def test_missing_truncated_and_pickled_code(tmp_path):
    with pytest.raises(CheckpointError, match="file not found"):
        open_checkpoint(tmp_path / "nope.safetensors")
    save_file({"a": torch.randn(1000)}, tmp_path / "t.safetensors")
    data = (tmp_path / "t.safetensors").read_bytes()
    (tmp_path / "t.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated|corrupt"):
        open_checkpoint(tmp_path / "t.safetensors")
    torch.save({"a": torch.randn(1000)}, tmp_path / "t.pt")
    data = (tmp_path / "t.pt").read_bytes()
    (tmp_path / "t.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        open_checkpoint(tmp_path / "t.pt")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"a": torch.ones(1), "evil": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refusing to unpickle"):
        open_checkpoint(tmp_path / "evil.pt")


def test_detect_kind():
    assert (
        detect_kind(["model.diffusion_model.head.modulation", "model.diffusion_model.patch_embedding.weight"])
        == "wan_dit"
    )
    assert detect_kind(["condition_embedder.time_proj.weight"]) == "wan_dit"
    assert detect_kind(["decoder.middle.0.residual.0.gamma"]) == "wan_vae"
    assert detect_kind(["decoder.22.bias"]) == "taehv"
    assert detect_kind(["encoder.block.0.layer.1.DenseReluDense.wi_1.weight"]) == "umt5"
    assert (
        detect_kind(
            ["vision_model.encoder.layers.0.layer_norm1.weight", "vision_model.embeddings.class_embedding"]
        )
        == "clip_vision"
    )
    assert detect_kind(["foo"]) == "unknown"


def test_expect_kind_names_file_and_fix(tmp_path):
    save_file({"decoder.middle.0.residual.0.gamma": torch.ones(4, 1, 1, 1)}, tmp_path / "vae.safetensors")
    ck = open_checkpoint(tmp_path / "vae.safetensors")
    with pytest.raises(CheckpointError) as e:
        expect_kind(ck, "wan_dit", "Load Wan DiT")
    msg = str(e.value)
    assert "vae.safetensors" in msg and "Wan VAE" in msg and "Wan DiT" in msg and "models/vae" in msg


def test_load_into_meta_strict_and_fp8(tmp_path):
    with torch.device("meta"):
        m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    w0 = torch.randn(3, 4)
    sd = {
        "0.weight": w0.to(torch.float8_e4m3fn),
        "0.scale_weight": torch.tensor(0.5),
        "0.bias": torch.randn(3),
        "1.weight": torch.randn(2, 3),
        "1.bias": torch.randn(2),
        "scaled_fp8": torch.zeros(2, dtype=torch.float8_e4m3fn),
    }
    scales, drop = split_quant_keys(list(sd))
    assert scales == {"0": "0.scale_weight"} and drop == ["scaled_fp8"]
    assert swap_fp8_linears(m, ["0"]) == 1
    readers = {k: (lambda k=k: sd[k]) for k in sd if k not in drop and k not in scales.values()}
    readers["0.weight_scale"] = lambda: sd["0.scale_weight"]
    load_into(
        m,
        readers,
        "x.safetensors",
        dtype=torch.float32,
        keep_dtype=lambda n, t: t.dtype == torch.float8_e4m3fn,
    )
    assert isinstance(m[0], ScaledFP8Linear) and m[0].weight.dtype == torch.float8_e4m3fn
    x = torch.randn(5, 4)
    ref = torch.nn.functional.linear(x, sd["0.weight"].float() * 0.5, sd["0.bias"])
    assert torch.allclose(m[0](x), ref, atol=1e-6)
    del readers["1.bias"]
    with torch.device("meta"):
        m2 = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    with pytest.raises(CheckpointError, match="1 missing"):
        load_into(m2, readers, "x.safetensors")
