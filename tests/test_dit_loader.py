"""DiT loading: every real key layout (manifests, meta device) and small real files in every format."""

import json
from pathlib import Path

import pytest
import torch
from official_ref import max_rel_err, randomize_
from safetensors.torch import save_file

from wan_core.checkpoint import CheckpointError
from wan_core.dit import PRESETS, DualExpertDiT, WanDiT, WanDiTConfig
from wan_core.dit.keymap import official_to_diffusers
from wan_core.dit.loader import build_meta_dit, load_dit, plan_dit_load
from wan_core.quant import ScaledFP8Linear

KEYS = Path(__file__).parent / "data" / "keys"
FP8 = torch.float8_e4m3fn
MANIFESTS = {
    "wan21_t2v_1.3B": "wan2.1-t2v-1.3b",
    "wan21_t2v_14B": "wan2.1-t2v-14b",
    "wan21_i2v_14B": "wan2.1-i2v-14b",
    "wan21_flf2v_14B": "wan2.1-flf2v-14b",
    "wan22_ti2v_5B": "wan2.2-ti2v-5b",
    "wan22_t2v_A14B_each_expert": "wan2.2-t2v-a14b",
    "wan22_i2v_A14B_each_expert": "wan2.2-i2v-a14b",
}
_LINEARS = ("q", "k", "v", "o", "k_img", "v_img")


def read_manifest(name):
    shapes = {}
    for line in (KEYS / f"{name}.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            k, s = line.split("\t")
            shapes[k] = tuple(json.loads(s))
    return shapes


def is_block_linear_weight(k):
    parts = k.split(".")
    return (
        k.endswith(".weight")
        and parts[0] == "blocks"
        and ((parts[2] in ("self_attn", "cross_attn") and parts[3] in _LINEARS) or (parts[2] == "ffn"))
    )


def rename(shapes, fmt):
    """The checkpoint a given format would hold for official ``shapes``: {key: (shape, dtype)}."""
    bf = torch.bfloat16
    if fmt == "official":
        return {k: (s, bf) for k, s in shapes.items()}
    if fmt == "comfyui":
        return {"model.diffusion_model." + k: (s, torch.float16) for k, s in shapes.items()}
    if fmt == "self_forcing":
        return {"model." + k: (s, torch.float32) for k, s in shapes.items()}
    if fmt == "diffusers":
        return {official_to_diffusers(k): (s, bf) for k, s in shapes.items()}
    out = {}
    if fmt == "fp8_scaled_legacy":
        out["scaled_fp8"] = ((0,), FP8)
    for k, s in shapes.items():
        p = "model.diffusion_model." + k
        if fmt.startswith("fp8") and is_block_linear_weight(k):
            out[p] = (s, FP8)
            layer = p[: -len(".weight")]
            if fmt == "fp8_scaled_legacy":
                out[layer + ".scale_weight"] = ((), torch.float32)
            elif fmt == "fp8_scaled_new":
                out[layer + ".weight_scale"] = ((), torch.float32)
                out[layer + ".input_scale"] = ((), torch.float32)
                out[layer + ".comfy_quant"] = ((48,), torch.uint8)
        else:
            out[p] = (s, bf)
    return out


FORMATS = [
    "official",
    "comfyui",
    "self_forcing",
    "diffusers",
    "fp8_plain",
    "fp8_scaled_legacy",
    "fp8_scaled_new",
]


@pytest.mark.parametrize("manifest", sorted(MANIFESTS))
def test_real_layouts_map_every_key_on_meta(manifest):
    shapes = read_manifest(manifest)
    want = PRESETS[MANIFESTS[manifest]]
    for fmt in FORMATS:
        ck = rename(shapes, fmt)
        plan = plan_dit_load({k: s for k, (s, _) in ck.items()}, {k: d for k, (_, d) in ck.items()})
        assert plan.config == want, (manifest, fmt)
        assert not plan.unexpected, (manifest, fmt, plan.unexpected[:3])
        model = build_meta_dit(plan)
        sd = model.state_dict()
        assert set(plan.mapping) | {f"{x}.weight_scale" for x in plan.unit_scales} == set(sd), (manifest, fmt)
        for name, key in plan.mapping.items():
            assert tuple(sd[name].shape) == tuple(ck[key][0]), (manifest, fmt, name, key)
        used = set(plan.mapping.values()) | set(plan.ignored)
        assert used == set(ck), (manifest, fmt, sorted(set(ck) - used)[:3])
        n_fp8 = sum(isinstance(m, ScaledFP8Linear) for m in model.modules())
        if fmt.startswith("fp8"):
            per_block = 8 + 2 + (2 if want.image_cross_attn else 0)  # q,k,v,o x2, ffn x2, img k,v
            assert n_fp8 == want.num_layers * per_block, (manifest, fmt)
        else:
            assert n_fp8 == 0
    print(f"\n{manifest}: {len(shapes)} tensors x {len(FORMATS)} formats mapped onto {MANIFESTS[manifest]}")


# ------------------------------------------------------------------------------------------------
# small real files

SMALL = dict(dim=64, ffn_dim=128, num_heads=2, num_layers=2, text_dim=64, freq_dim=64)
HD = 32  # released Wan DiTs all use head_dim 128 (the default); these small files pass theirs


def small_model(seed=0, **kw):
    m = WanDiT(WanDiTConfig(**{**SMALL, **kw})).eval()
    return randomize_(m, seed, std=0.05)


def run(model, seed=0):
    cfg = model.config
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, cfg.out_dim, 2, 4, 4, generator=g)
    y = torch.randn(1, cfg.cond_dim, 2, 4, 4, generator=g) if cfg.cond_dim else None
    clip = torch.randn(1, cfg.image_tokens, cfg.clip_dim, generator=g) if cfg.image_cross_attn else None
    ctx = torch.randn(1, 6, cfg.text_dim, generator=g)
    with torch.no_grad():
        return model(x.float(), torch.tensor([700.0]), ctx, clip_fea=clip, y=y)


def same(a, b):
    """Equal up to float summation order (loaded tensors may take another matmul path)."""
    return max_rel_err(a, b) < 1e-6


def sd_of(model):
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def quantize(sd, legacy, prefix="model.diffusion_model."):
    """fp8-scaled file as ComfyUI writes it; returns (file dict, dequantized reference state dict)."""
    out, ref = {}, {}
    if legacy:
        out["scaled_fp8"] = torch.zeros(2, dtype=FP8)
    for k, v in sd.items():
        if is_block_linear_weight(k):
            scale = v.abs().max() / 448.0
            w8 = (v / scale).to(FP8)
            layer = prefix + k[: -len(".weight")]
            out[prefix + k] = w8
            if legacy:
                out[layer + ".scale_weight"] = scale.reshape(())
            else:
                out[layer + ".weight_scale"] = scale.reshape(())
                out[layer + ".input_scale"] = torch.tensor(1.0)
                conf = json.dumps({"format": "float8_e4m3fn"}).encode()
                out[layer + ".comfy_quant"] = torch.tensor(list(conf), dtype=torch.uint8)
            ref[k] = w8.float() * scale
        else:
            out[prefix + k] = v.to(torch.bfloat16)
            ref[k] = v.to(torch.bfloat16).float()
    return out, ref


@pytest.mark.parametrize("kind", ["t2v", "i2v", "flf2v"], ids=["t2v", "i2v-clip", "flf2v"])
def test_small_files_every_format_load_and_match(tmp_path, kind):
    kw = {"t2v": {}, "i2v": dict(in_dim=36, model_type="i2v", image_cross_attn=True)}.get(kind)
    if kind == "flf2v":
        kw = dict(in_dim=36, model_type="flf2v", image_cross_attn=True)
    src = small_model(1, **kw)
    sd = sd_of(src)
    want = run(src)

    def check(path, tol=1e-5, ref_model=None, **load_kw):
        m = load_dit(path, dtype=torch.float32, **load_kw, head_dim=HD)
        assert isinstance(m, WanDiT) and m.config == src.config
        err = max_rel_err(run(m), want if ref_model is None else run(ref_model))
        assert err <= tol, (path.name, err)
        return m

    save_file(sd, tmp_path / "bare.safetensors")
    check(tmp_path / "bare.safetensors", tol=1e-6)

    fp16 = {"model.diffusion_model." + k: v.half() for k, v in sd.items()}
    save_file(fp16, tmp_path / "comfy_fp16.safetensors")
    rounded = WanDiT(src.config).eval()
    rounded.load_state_dict({k: v.half().float() for k, v in sd.items()})
    check(tmp_path / "comfy_fp16.safetensors", ref_model=rounded)
    assert (
        load_dit(tmp_path / "comfy_fp16.safetensors", head_dim=HD).patch_embedding.weight.dtype
        == torch.float16
    )

    save_file({official_to_diffusers(k): v for k, v in sd.items()}, tmp_path / "diffusers.safetensors")
    check(tmp_path / "diffusers.safetensors", tol=1e-6)

    # ComfyUI all-in-one checkpoint: DiT + VAE + text encoder in one file (only the DiT is read)
    aio = {"model.diffusion_model." + k: v.half() for k, v in sd.items()}
    aio.update({"first_stage_model.decoder.middle.0.residual.0.gamma": torch.ones(4, 1, 1, 1)})
    aio.update({"text_encoders.umt5xxl.transformer.shared.weight": torch.ones(8, 4)})
    save_file(aio, tmp_path / "aio.safetensors")
    check(tmp_path / "aio.safetensors", ref_model=rounded)

    # Krea realtime 14B / wrapper exports: safetensors with "model." prefix
    save_file({"model." + k: v for k, v in sd.items()}, tmp_path / "krea.safetensors")
    check(tmp_path / "krea.safetensors", tol=1e-6)

    # plain fp8_e4m3fn: every >=2-D tensor fp8, no scales (Linears stay fp8 with scale 1, others upcast)
    plain = {k: (v.to(FP8) if v.dim() >= 2 else v.half()) for k, v in sd.items()}
    save_file(plain, tmp_path / "fp8_plain.safetensors")
    exact = WanDiT(src.config).eval()
    exact.load_state_dict({k: v.float() for k, v in plain.items()})
    m = check(tmp_path / "fp8_plain.safetensors", ref_model=exact)
    assert m.blocks[1].ffn[2].weight.dtype == FP8 and m.patch_embedding.weight.dtype == torch.float32
    assert m.head.modulation.dtype == torch.float32
    assert load_dit(tmp_path / "fp8_plain.safetensors", head_dim=HD).compute_dtype == torch.float16

    for legacy in (True, False):
        q, deq = quantize(sd, legacy)
        name = f"fp8_{'legacy' if legacy else 'new'}.safetensors"
        save_file(q, tmp_path / name)
        exact = WanDiT(src.config).eval()
        exact.load_state_dict(deq)
        m = check(tmp_path / name, ref_model=exact)  # scale applied exactly as dequantization
        lin = m.blocks[0].self_attn.q
        assert isinstance(lin, ScaledFP8Linear) and lin.weight.dtype == FP8
        assert max_rel_err(run(m), want) < 5e-2  # and close to the unquantized source


def test_self_forcing_pt_prefers_ema_and_sharded_folder(tmp_path):
    gen, ema = small_model(2), small_model(3)
    mangle = {"model._fsdp_wrapped_module." + k: v for k, v in sd_of(gen).items()}
    ema_sd = {"model." + k: v for k, v in sd_of(ema).items()}
    torch.save(
        {"generator": mangle, "critic": {"w": torch.zeros(1)}, "generator_ema": ema_sd}, tmp_path / "sf.pt"
    )
    m = load_dit(tmp_path / "sf.pt", dtype=torch.float32, head_dim=HD)
    assert same(run(m), run(ema)) and not same(run(m), run(gen))
    assert "wrapper" in m.load_format
    torch.save({"generator": mangle}, tmp_path / "causvid.pt")  # CausVid: generator only
    assert same(run(load_dit(tmp_path / "causvid.pt", dtype=torch.float32, head_dim=HD)), run(gen))

    # official sharded folder: config.json + index + shards
    sd = sd_of(ema)
    names = sorted(sd)
    folder = tmp_path / "official"
    folder.mkdir()
    shards = {n: f"diffusion_pytorch_model-0000{1 + i % 2}-of-00002.safetensors" for i, n in enumerate(names)}
    for f in set(shards.values()):
        save_file({n: sd[n] for n in names if shards[n] == f}, folder / f)
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps({"weight_map": shards}))
    c = ema.config
    (folder / "config.json").write_text(
        json.dumps({"_class_name": "WanModel", "dim": c.dim, "num_heads": c.num_heads, "model_type": "t2v"})
    )
    assert same(run(load_dit(folder, dtype=torch.float32)), run(ema))


def test_a14b_two_experts(tmp_path):
    hi, lo = small_model(4), small_model(5)
    root = tmp_path / "Wan2.2-T2V-A14B"
    for sub, m in (("high_noise_model", hi), ("low_noise_model", lo)):
        (root / sub).mkdir(parents=True)
        save_file(sd_of(m), root / sub / "diffusion_pytorch_model.safetensors")
    dual = load_dit(root, dtype=torch.float32, head_dim=HD)
    assert isinstance(dual, DualExpertDiT) and dual.boundary == 0.875
    assert same(run(dual.select(900.0)), run(hi)) and same(run(dual.select(100.0)), run(lo))
    files = [root / "low_noise_model" / "diffusion_pytorch_model.safetensors"]
    files.insert(0, root / "high_noise_model" / "diffusion_pytorch_model.safetensors")
    dual2 = load_dit(
        list(reversed(files)), dtype=torch.float32, head_dim=HD
    )  # told apart by 'high'/'low' in names
    assert same(run(dual2.high_noise_model), run(hi))
    # diffusers pipeline folder: transformer (high noise) + transformer_2 (low noise), boundary in model_index
    pipe = tmp_path / "Wan2.2-T2V-A14B-Diffusers"
    for sub, m in (("transformer", hi), ("transformer_2", lo)):
        (pipe / sub).mkdir(parents=True)
        save_file(
            {official_to_diffusers(k): v for k, v in sd_of(m).items()}, pipe / sub / "model.safetensors"
        )
    (pipe / "model_index.json").write_text(json.dumps({"_class_name": "WanPipeline", "boundary_ratio": 0.85}))
    d4 = load_dit(pipe, dtype=torch.float32, head_dim=HD)
    assert (
        d4.boundary == 0.85 and same(run(d4.select(860.0)), run(hi)) and same(run(d4.select(840.0)), run(lo))
    )
    hi_i2v, lo_i2v = small_model(6, in_dim=36, model_type="i2v"), small_model(7, in_dim=36, model_type="i2v")
    save_file(sd_of(hi_i2v), tmp_path / "wan2.2_i2v_high_noise.safetensors")
    save_file(sd_of(lo_i2v), tmp_path / "wan2.2_i2v_low_noise.safetensors")
    d3 = load_dit(
        [tmp_path / "wan2.2_i2v_low_noise.safetensors", tmp_path / "wan2.2_i2v_high_noise.safetensors"],
        head_dim=HD,
    )
    assert d3.boundary == 0.9 and same(run(d3.high_noise_model), run(hi_i2v))


# ------------------------------------------------------------------------------------------------
# bad input


class NotATensor:  # pickling this needs code execution to load
    pass


def _manifest_file(tmp_path, manifest, name, n=12):
    shapes = read_manifest(manifest)
    sd = {k: torch.zeros(1) for k in list(shapes)[:n]}
    save_file(sd, tmp_path / name)
    return tmp_path / name


def test_bad_inputs_give_clear_errors(tmp_path):
    vae = _manifest_file(tmp_path, "wan21_vae", "wan_2.1_vae.safetensors", n=200)
    with pytest.raises(
        CheckpointError, match=r"Load Wan DiT: .*wan_2.1_vae.safetensors is not a Wan DiT.*detected a Wan VAE"
    ):
        load_dit(vae, head_dim=HD)
    te = _manifest_file(tmp_path, "umt5_xxl_encoder_official", "umt5.safetensors", n=50)
    with pytest.raises(CheckpointError, match=r"umt5.safetensors is not a Wan DiT.*detected a UMT5-XXL"):
        load_dit(te, head_dim=HD)

    sd = sd_of(small_model(8))
    save_file(sd, tmp_path / "dit.safetensors")
    data = (tmp_path / "dit.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(
        CheckpointError,
        match=r"Load Wan DiT: cannot read .*cut.safetensors \(format: safetensors; expected a Wan DiT.*truncated",
    ):
        load_dit(tmp_path / "cut.safetensors", head_dim=HD)

    save_file({**sd, "lora_extra.alpha": torch.ones(1)}, tmp_path / "extra.safetensors")
    with pytest.raises(
        CheckpointError, match=r"extra.safetensors \(detected: official Wan DiT.*unexpected.*lora_extra.alpha"
    ):
        load_dit(tmp_path / "extra.safetensors", head_dim=HD)

    diff = {official_to_diffusers(k): v for k, v in sd.items()}
    save_file({**diff, "blocks.0.attn1.to_qkv.weight": torch.ones(1)}, tmp_path / "dextra.safetensors")
    with pytest.raises(CheckpointError, match=r"detected: diffusers Wan DiT.*unknown keys.*to_qkv"):
        load_dit(tmp_path / "dextra.safetensors", head_dim=HD)

    torch.save(
        {"generator_ema": {"model." + k: v for k, v in sd.items()}, "cfg": NotATensor()}, tmp_path / "code.pt"
    )
    with pytest.raises(
        CheckpointError,
        match=r"Load Wan DiT: cannot read .*code.pt \(format: pickle.*expected a Wan DiT.*refusing to unpickle",
    ):
        load_dit(tmp_path / "code.pt", head_dim=HD)

    sd_bad = dict(sd)
    sd_bad["blocks.0.ffn.0.weight"] = torch.zeros(128, 999)
    save_file(sd_bad, tmp_path / "shape.safetensors")
    with pytest.raises(CheckpointError, match=r"shape.safetensors.*blocks.0.ffn.0.weight.*shape"):
        load_dit(tmp_path / "shape.safetensors", head_dim=HD)

    save_file({**sd, "vace_patch_embedding.weight": torch.zeros(1)}, tmp_path / "vace.safetensors")
    with pytest.raises(CheckpointError, match="Wan VACE"):
        load_dit(tmp_path / "vace.safetensors", head_dim=HD)

    q, _ = quantize(sd, legacy=False)
    k = next(k for k in q if k.endswith(".comfy_quant"))
    q[k] = torch.tensor(list(json.dumps({"format": "nvfp4"}).encode()), dtype=torch.uint8)
    save_file(q, tmp_path / "nvfp4.safetensors")
    with pytest.raises(CheckpointError, match="quantized as 'nvfp4'"):
        load_dit(tmp_path / "nvfp4.safetensors", head_dim=HD)

    with pytest.raises(ValueError, match="needs a CUDA GPU|not installed"):
        load_dit(tmp_path / "dit.safetensors", attention="flash", head_dim=HD)
