"""UMT5 encoder: parity with transformers and the official Wan T5Encoder, every file layout, fp8,
real-size key layouts on the meta device, wrong-file errors."""

import pytest
import torch
from official_ref import max_rel_err, official, randomize_
from safetensors.torch import save_file

from wan_core.checkpoint import Checkpoint, CheckpointError
from wan_core.quant import ScaledFP8Linear
from wan_core.text import UMT5_PRESETS, UMT5Encoder, load_umt5
from wan_core.text.loader import umt5_config_from_shapes, umt5_key_map

VOCAB, DIM, DKV, HEADS, FF, LAYERS = 300, 64, 16, 4, 128, 2
TOL = 1e-4


def _hf_model(seed=0):
    from transformers import UMT5Config, UMT5EncoderModel

    cfg = UMT5Config(
        vocab_size=VOCAB,
        d_model=DIM,
        d_kv=DKV,
        num_heads=HEADS,
        d_ff=FF,
        num_layers=LAYERS,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        feed_forward_proj="gated-gelu",
        dropout_rate=0.0,
    )
    m = UMT5EncoderModel(cfg).eval()
    randomize_(m, seed, std=0.1)
    with torch.no_grad():  # large position biases so a wrong bucket would show
        for i in range(LAYERS):
            m.encoder.block[i].layer[0].SelfAttention.relative_attention_bias.weight.mul_(30)
    return m


def _batch():
    """Two prompts, 150 and 37 tokens (distances past max_distance 128 and key padding in play)."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, VOCAB, (2, 150), generator=g)
    mask = torch.ones(2, 150, dtype=torch.long)
    mask[1, 37:] = 0
    ids[1, 37:] = 0
    ids[:, 149] = 1
    ids[1, 36] = 1
    return ids, mask


def _hf_file_dict(m):
    return {k: v.detach().clone().contiguous() for k, v in m.state_dict().items()}


def test_parity_with_transformers(tmp_path):
    hf = _hf_model()
    save_file(_hf_file_dict(hf), tmp_path / "umt5_hf.safetensors")
    ours = load_umt5(tmp_path / "umt5_hf.safetensors", dtype=torch.float32)
    assert isinstance(ours, UMT5Encoder) and ours.cfg.num_heads == HEADS and ours.cfg.num_layers == LAYERS
    ids, mask = _batch()
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask).last_hidden_state
        out = ours(ids, mask)
    err = max_rel_err(out, ref)
    print(f"UMT5 vs transformers UMT5EncoderModel: max rel err {err:.2e}")
    assert err <= TOL
    # kept rows (what Wan uses) of the padded prompt equal an unpadded run
    with torch.no_grad():
        alone = ours(ids[1:, :37], mask[1:, :37])
    assert max_rel_err(out[1, :37], alone[0]) <= TOL


def test_parity_with_official_t5_encoder(tmp_path):
    t5 = official("t5")
    ref_model = t5.T5Encoder(
        vocab=VOCAB,
        dim=DIM,
        dim_attn=HEADS * DKV,
        dim_ffn=FF,
        num_heads=HEADS,
        num_layers=LAYERS,
        num_buckets=32,
        shared_pos=False,
        dropout=0.0,
    ).eval()
    randomize_(ref_model, 3, std=0.1)
    with torch.no_grad():
        for b in ref_model.blocks:
            b.pos_embedding.embedding.weight.mul_(30)
    torch.save(ref_model.state_dict(), tmp_path / "models_t5_umt5-xxl-enc-bf16.pth")
    ours = load_umt5(tmp_path / "models_t5_umt5-xxl-enc-bf16.pth", dtype=torch.float32)
    ids, mask = _batch()
    with torch.no_grad():
        ref = ref_model(ids, mask)
        out = ours(ids, mask)
    err = max_rel_err(out, ref)
    print(f"UMT5 vs official wan T5Encoder: max rel err {err:.2e}")
    assert err <= TOL


def test_bf16_and_fp16_as_accurate_as_official_bf16(tmp_path):
    """Half-precision runs (the real use) stay as close to fp32 as the official bf16 run does."""
    t5 = official("t5")
    ref_model = t5.T5Encoder(
        vocab=VOCAB,
        dim=DIM,
        dim_attn=HEADS * DKV,
        dim_ffn=FF,
        num_heads=HEADS,
        num_layers=LAYERS,
        num_buckets=32,
        shared_pos=False,
        dropout=0.0,
    ).eval()
    randomize_(ref_model, 11, std=0.1)
    torch.save(ref_model.state_dict(), tmp_path / "t5.pth")
    ids, mask = _batch()
    with torch.no_grad():
        ref32 = ref_model(ids, mask)
        official_bf16 = max_rel_err(ref_model.to(torch.bfloat16)(ids, mask), ref32)
        ours_bf16 = max_rel_err(load_umt5(tmp_path / "t5.pth", dtype=torch.bfloat16)(ids, mask), ref32)
        ours_fp16 = max_rel_err(load_umt5(tmp_path / "t5.pth", dtype=torch.float16)(ids, mask), ref32)
    print(
        f"UMT5 vs fp32: official bf16 {official_bf16:.2e}, ours bf16 {ours_bf16:.2e}, ours fp16 {ours_fp16:.2e}"
    )
    assert ours_bf16 <= 2 * official_bf16 and ours_fp16 <= 2 * official_bf16


def _quantize(w):
    scale = w.abs().max().float() / 448.0
    return (w / scale).to(torch.float8_e4m3fn), scale.reshape(())


@pytest.mark.parametrize("convention", ["scale_weight", "weight_scale"])
def test_fp8_scaled_file_stays_fp8(tmp_path, convention):
    hf = _hf_model(5)
    sd = _hf_file_dict(hf)
    fp8_sd, deq_sd = {"scaled_fp8": torch.empty(0, dtype=torch.float8_e4m3fn)}, {}
    for k, v in sd.items():
        linear = (".SelfAttention." in k or ".DenseReluDense." in k) and "relative" not in k
        # the weight_scale variant also stores the embedding in fp8 with a scale (folded in at load)
        if k.endswith(".weight") and (linear or (convention == "weight_scale" and k == "shared.weight")):
            q, s = _quantize(v)
            fp8_sd[k] = q
            fp8_sd[k[: -len("weight")] + convention] = s
            deq_sd[k] = q.float() * s
        else:
            fp8_sd[k] = v.half()  # ComfyUI keeps embeddings and norms in fp16
            deq_sd[k] = v.half().float()
    if convention == "weight_scale":
        del fp8_sd["encoder.embed_tokens.weight"]
        deq_sd["encoder.embed_tokens.weight"] = deq_sd["shared.weight"]
    fp8_sd["spiece_model"] = torch.frombuffer(bytearray(b"not used here"), dtype=torch.uint8)
    save_file(fp8_sd, tmp_path / "umt5_xxl_fp8_e4m3fn_scaled.safetensors")
    ours = load_umt5(tmp_path / "umt5_xxl_fp8_e4m3fn_scaled.safetensors", dtype=torch.float32)
    lin = ours.blocks[1].ffn.down_proj
    assert isinstance(lin, ScaledFP8Linear) and lin.weight.dtype == torch.float8_e4m3fn
    assert ours.token_embedding.weight.dtype == torch.float32
    hf.load_state_dict(deq_sd)
    ids, mask = _batch()
    with torch.no_grad():
        err = max_rel_err(ours(ids, mask), hf(input_ids=ids, attention_mask=mask).last_hidden_state)
    print(f"UMT5 fp8 scaled ({convention}) vs dequantized transformers: {err:.2e}")
    assert err <= TOL
    # default dtype: the file's (fp16 here), fp8 weights still fp8
    half = load_umt5(tmp_path / "umt5_xxl_fp8_e4m3fn_scaled.safetensors")
    assert half.compute_dtype == torch.float16
    assert half.blocks[0].attn.q.weight.dtype == torch.float8_e4m3fn


def test_sharded_transformers_folder_with_decoder_ignored(tmp_path):
    import json

    hf = _hf_model(7)
    sd = _hf_file_dict(hf)
    sd["decoder.block.0.layer.0.SelfAttention.q.weight"] = torch.zeros(4, 4)
    sd["lm_head.weight"] = torch.zeros(3, 4)
    names = sorted(sd)
    half = len(names) // 2
    shards = {
        "model-00001-of-00002.safetensors": names[:half],
        "model-00002-of-00002.safetensors": names[half:],
    }
    for fname, ks in shards.items():
        save_file({k: sd[k] for k in ks}, tmp_path / fname)
    weight_map = {k: f for f, ks in shards.items() for k in ks}
    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map})
    )
    ours = load_umt5(tmp_path, dtype=torch.float32)
    ids, mask = _batch()
    with torch.no_grad():
        err = max_rel_err(ours(ids, mask), hf(input_ids=ids, attention_mask=mask).last_hidden_state)
    assert err <= TOL


# ------------------------------------------------------------------------------------------------
# real-size key layouts (meta device)


def _manifest(name):
    shapes = {}
    for line in open(f"tests/data/keys/{name}.txt"):
        if line.startswith("#") or not line.strip():
            continue
        k, s = line.rstrip("\n").split("\t")
        shapes[k] = tuple(int(x) for x in s.strip("[]").split(",") if x.strip())
    return shapes


def _official_to_hf(name):
    """Independent (test-side) rename official Wan -> transformers/ComfyUI."""
    if name == "token_embedding.weight":
        return "shared.weight"
    if name == "norm.weight":
        return "encoder.final_layer_norm.weight"
    _, i, rest = name.split(".", 2)
    table = {
        "norm1.weight": "layer.0.layer_norm.weight",
        "attn.q.weight": "layer.0.SelfAttention.q.weight",
        "attn.k.weight": "layer.0.SelfAttention.k.weight",
        "attn.v.weight": "layer.0.SelfAttention.v.weight",
        "attn.o.weight": "layer.0.SelfAttention.o.weight",
        "pos_embedding.embedding.weight": "layer.0.SelfAttention.relative_attention_bias.weight",
        "norm2.weight": "layer.1.layer_norm.weight",
        "ffn.gate.0.weight": "layer.1.DenseReluDense.wi_0.weight",
        "ffn.fc1.weight": "layer.1.DenseReluDense.wi_1.weight",
        "ffn.fc2.weight": "layer.1.DenseReluDense.wo.weight",
    }
    return f"encoder.block.{i}.{table[rest]}"


class _MetaCheckpoint(Checkpoint):
    """A checkpoint of the given key -> (shape, dtype) whose tensors live on the meta device."""

    def __init__(self, spec, path="real_layout"):
        from pathlib import Path

        self.path, self.metadata, self.source = Path(path), {}, ""
        self._shapes = {k: s for k, (s, _) in spec.items()}
        self._dtypes = {k: d for k, (_, d) in spec.items()}
        self._readers = {k: None for k in spec}

    def get(self, key, dtype=None, device="cpu"):
        return torch.empty(self._shapes[key], dtype=dtype or self._dtypes[key], device="meta")


def _real_formats():
    off = _manifest("umt5_xxl_encoder_official")
    assert len(off) == 242
    fp16 = {_official_to_hf(k): s for k, s in off.items()}
    fp16["spiece_model"] = (4_548_313,)
    fp8 = dict(fp16)
    linear = [
        k
        for k in fp16
        if k.endswith(
            (
                ".q.weight",
                ".k.weight",
                ".v.weight",
                ".o.weight",
                "DenseReluDense.wi_0.weight",
                "DenseReluDense.wi_1.weight",
                "DenseReluDense.wo.weight",
            )
        )
    ]
    assert len(linear) == 24 * 7
    for k in linear:
        fp8[k[: -len("weight")] + "scale_weight"] = ()
    fp8["scaled_fp8"] = (0,)
    return {
        "official": ({k: (s, torch.bfloat16) for k, s in off.items()}, set()),
        "comfy_fp16": (
            {k: (s, torch.uint8 if k == "spiece_model" else torch.float16) for k, s in fp16.items()},
            set(),
        ),
        "comfy_fp8_scaled": (
            {
                k: (
                    s,
                    torch.float8_e4m3fn
                    if k in linear or k == "scaled_fp8"
                    else torch.float32
                    if k.endswith("scale_weight")
                    else torch.uint8
                    if k == "spiece_model"
                    else torch.float16,
                )
                for k, s in fp8.items()
            },
            set(linear),
        ),
    }


@pytest.mark.parametrize("fmt", ["official", "comfy_fp16", "comfy_fp8_scaled"])
def test_real_layouts_map_with_right_shapes(fmt):
    spec, fp8_keys = _real_formats()[fmt]
    key_map, _ = umt5_key_map(list(spec))
    with torch.device("meta"):
        ref = UMT5Encoder(UMT5_PRESETS["umt5-xxl"])
    expected = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    weights = {k: f for k, f in key_map.items() if not k.endswith("weight_scale")}
    assert set(weights) == set(expected)
    assert all(tuple(spec[f][0]) == expected[k] for k, f in weights.items())
    assert umt5_config_from_shapes({k: spec[f][0] for k, f in key_map.items()}) == UMT5_PRESETS["umt5-xxl"]
    # and the full loader, strict, on meta: 5.68 B parameters, fp8 Linears as ScaledFP8Linear
    model = load_umt5(_MetaCheckpoint(spec, f"{fmt}.safetensors"), device="meta")
    n = sum(p.numel() for name, p in model.named_parameters() if not name.endswith("weight_scale"))
    assert n == 5_680_910_336
    n_fp8 = sum(isinstance(m, ScaledFP8Linear) for m in model.modules())
    assert n_fp8 == len(fp8_keys)
    if fp8_keys:
        assert model.blocks[23].ffn.up_proj.weight.dtype == torch.float8_e4m3fn
    assert model.compute_dtype == (torch.bfloat16 if fmt == "official" else torch.float16)


# ------------------------------------------------------------------------------------------------
# wrong files


def test_dit_file_as_text_encoder_is_a_clear_error(tmp_path):
    save_file(
        {
            "head.modulation": torch.zeros(1, 2, 8),
            "patch_embedding.weight": torch.zeros(8, 16, 1, 2, 2),
            "blocks.0.self_attn.q.weight": torch.zeros(8, 8),
        },
        tmp_path / "wan2.1_t2v_1.3B_fp16.safetensors",
    )
    with pytest.raises(CheckpointError, match=r"Encode UMT5 Prompt.*not a UMT5-XXL text encoder.*Wan DiT"):
        load_umt5(tmp_path / "wan2.1_t2v_1.3B_fp16.safetensors")


def test_t5_v1_1_is_rejected_with_a_hint(tmp_path):
    sd = _hf_file_dict(_hf_model())
    del sd["encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight"]  # T5 v1.1: shared bias
    save_file(sd, tmp_path / "t5xxl_fp16.safetensors")
    with pytest.raises(CheckpointError, match="T5 v1.1.*not UMT5"):
        load_umt5(tmp_path / "t5xxl_fp16.safetensors")


def test_missing_tensor_is_named(tmp_path):
    sd = _hf_file_dict(_hf_model())
    del sd["encoder.block.1.layer.1.DenseReluDense.wo.weight"]
    save_file(sd, tmp_path / "broken.safetensors")
    with pytest.raises(CheckpointError, match=r"missing.*blocks\.1\.ffn\.down_proj\.weight"):
        load_umt5(tmp_path / "broken.safetensors")
