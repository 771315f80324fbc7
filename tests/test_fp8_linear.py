"""FP8 linear math (``wan_core.fp8_linear``) on CPU: ``torch._scaled_mm`` on e4m3 runs on the CPU in
torch >= 2.10 (rowwise and tensorwise scales), so the module, the conversion, the pipeline switch, the
errors and the node's precision choice are all checked here; speed is for the GPU benchmark.

Error yardstick: ``rel(y) = ||y - y_fp32|| / ||y_fp32||``. e4m3 keeps 3 mantissa bits: one FP8 linear is
off by ~3e-2 (bf16: ~2e-3), so each test asserts both an upper bound (a wrong or missing scale gives
O(1)) and that the error is clearly above bf16's (FP8 math really happened)."""

import copy
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from official_ref import randomize_
from torch import nn

import wan_core.fp8_linear as FL
from wan_core.dit import WanDiT, WanDiTConfig
from wan_core.dit.fuse import FusedQKVSelfAttention, fuse_qkv_, is_qkv_fused
from wan_core.fp8_linear import FP8Linear, check_fp8_support, fp8_linears_, has_fp8_math
from wan_core.quant import ScaledFP8Linear
from wan_core.rollout.lora import merge_lora
from wan_core.rollout.pipeline import StreamingPipeline
from wan_core.rollout.presets import get_preset
from wan_core.rollout.schedulers import FewStepSchedule

ROOT = Path(__file__).resolve().parents[1]


def _pack_on_path() -> None:
    """``nodes`` must be this pack's (pytest puts the repository's parent folder first: the root is a
    package itself)."""
    if sys.path[0] != str(ROOT):
        sys.path.insert(0, str(ROOT))


CFG = WanDiTConfig(dim=64, ffn_dim=128, num_heads=2, num_layers=2)
PER_BLOCK = 8  # q, k, v, o, cross q, cross o, ffn up, ffn down


def rel(y: torch.Tensor, ref: torch.Tensor) -> float:
    y, ref = y.detach().double(), ref.detach().double()
    return float((y - ref).norm() / ref.norm())


@pytest.fixture
def count_scaled_mm(monkeypatch):
    calls = []
    real = torch._scaled_mm

    def counted(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(torch, "_scaled_mm", counted)
    return calls


def _linear(n_in=64, n_out=96, dtype=torch.bfloat16, seed=0):
    """A Linear whose output channels differ in magnitude by 2^8 (so a scale applied to the wrong
    channel or token shows) and inputs whose tokens do too."""
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(n_in, n_out, device="meta")
    rows = 2.0 ** torch.linspace(-4, 4, n_out)[:, None]
    lin.weight = nn.Parameter((torch.randn(n_out, n_in, generator=g) * rows / n_in**0.5).to(dtype))
    lin.bias = nn.Parameter((0.1 * torch.randn(n_out, generator=g)).to(dtype))
    x = torch.randn(2, 9, n_in, generator=g) * (2.0 ** torch.linspace(-3, 3, 9)[None, :, None])
    return lin.requires_grad_(False), x


@torch.no_grad()
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_one_layer_error_is_e4m3_sized_and_fp8_math_ran(dtype, count_scaled_mm):
    lin, x = _linear(dtype=dtype)
    x = x.to(dtype)
    ref = F.linear(x.double(), lin.weight.double(), lin.bias.double())
    fp8 = FP8Linear.from_linear(lin)
    assert fp8.weight.dtype == torch.float8_e4m3fn and fp8.weight_scale.shape == (1, 96)
    y = fp8(x)
    assert count_scaled_mm == [1]
    assert y.dtype == dtype and y.shape == (2, 9, 96)
    err, err_16 = rel(y, ref), rel(F.linear(x.bfloat16(), lin.weight.bfloat16(), lin.bias.bfloat16()), ref)
    print(f"\n{dtype}: fp8 rowwise {err:.2e}, bf16 {err_16:.2e}")
    assert 8e-3 < err < 6e-2  # e4m3 rounding of x and W (~3e-2 measured)
    assert err > 4 * err_16  # really 8-bit math, not a 16-bit fallback
    # the same layer with tensorwise activation scales (the fallback mode) is as exact on these rows
    tw = FP8Linear.from_linear(lin, mode="tensorwise")
    assert rel(tw(x), ref) < 0.15


@torch.no_grad()
def test_scale_orientation_matters():
    """The bound above is tight enough to catch a scale on the wrong channel or a missing one."""
    lin, x = _linear()
    ref = F.linear(x.double(), lin.weight.double(), lin.bias.double())
    good = FP8Linear.from_linear(lin)
    flipped = copy.deepcopy(good)
    flipped.weight_scale.copy_(good.weight_scale.flip(1))  # per-channel scales on the wrong channels
    unit = copy.deepcopy(good)
    unit.weight_scale.fill_(1.0)
    assert rel(good(x.bfloat16()), ref) < 6e-2
    assert rel(flipped(x.bfloat16()), ref) > 0.5 and rel(unit(x.bfloat16()), ref) > 0.5


@torch.no_grad()
def test_zero_rows_and_no_bias():
    lin, x = _linear()
    x = x.bfloat16()
    x[0, 3] = 0
    fp8 = FP8Linear.from_linear(lin)
    y = fp8(x)
    assert torch.isfinite(y).all() and torch.equal(y[0, 3], lin.bias.bfloat16())
    nob = nn.Linear(64, 32, bias=False).bfloat16().requires_grad_(False)
    f = FP8Linear.from_linear(nob)
    assert f.bias is None and f(torch.zeros(5, 64, dtype=torch.bfloat16)).abs().max() == 0
    with pytest.raises(ValueError, match="multiples of 16"):
        FP8Linear(40, 64)


@torch.no_grad()
def test_from_scaled_fp8_reuses_the_file_bits():
    lin, x = _linear(dtype=torch.float32)
    scale = lin.weight.abs().max() / 448
    s8 = ScaledFP8Linear(64, 96)
    s8.weight.copy_((lin.weight / scale).to(torch.float8_e4m3fn))
    s8.weight_scale.fill_(float(scale))
    s8.bias.copy_(lin.bias)
    f = FP8Linear.from_linear(s8)
    assert torch.equal(f.weight.view(torch.uint8), s8.weight.view(torch.uint8))  # bit for bit
    assert f.weight.data_ptr() == s8.weight.data_ptr()  # shared, not copied
    assert torch.equal(f.weight_scale, torch.full((1, 96), float(scale)))
    ref = s8(x.double().float())  # the storage-only layer: dequantised weight, fp32 math
    err = rel(f(x), ref)  # only the activation rounding is new
    print(f"\nfrom ScaledFP8Linear vs its dequantised forward: {err:.2e}")
    assert 3e-3 < err < 4e-2


@torch.no_grad()
def test_fullgraph_compile_has_no_graph_break():
    lin, x = _linear()
    fp8 = FP8Linear.from_linear(lin)
    for m in (fp8, FP8Linear.from_linear(lin, mode="tensorwise")):
        torch._dynamo.reset()
        compiled = torch.compile(m, backend="eager", fullgraph=True)  # raises on any graph break
        assert torch.equal(compiled(x.bfloat16()), m(x.bfloat16()))
    torch._dynamo.reset()


# -- the DiT -----------------------------------------------------------------------------------------------


def _dit(dtype=torch.float32, cfg=CFG):
    return randomize_(WanDiT(cfg).eval(), 0, std=0.1).to(dtype)


def _inputs():
    g = torch.Generator().manual_seed(1)
    return (
        torch.randn(1, 16, 4, 4, 4, generator=g),
        torch.tensor([640.0]),
        torch.randn(1, 5, 4096, generator=g),
    )


@torch.no_grad()
def test_swaps_exactly_the_block_linears():
    m = _dit()
    rep = fp8_linears_(m)
    names = [f"blocks.{i}.{r}" for i in range(2) for r in FL.BLOCK_LINEARS if "qkv_proj" not in r]
    assert sorted(rep.converted) == sorted(names) and rep.fp8_layers == 2 * PER_BLOCK and not rep.kept
    assert rep.mode == "rowwise"
    fp8 = {n for n, mod in m.named_modules() if isinstance(mod, FP8Linear)}
    assert fp8 == set(names)
    for i in range(2):  # once per prompt: stay 16/32-bit
        assert type(m.blocks[i].cross_attn.k) is nn.Linear and type(m.blocks[i].cross_attn.v) is nn.Linear
    for outer in (m.text_embedding[0], m.time_embedding[0], m.time_projection[1], m.head.head):
        assert type(outer) is nn.Linear and outer.weight.dtype == torch.float32
    again = fp8_linears_(m)  # idempotent
    assert not again.converted and len(again.already) == 2 * PER_BLOCK


@torch.no_grad()
def test_layers_not_multiple_of_16_stay_and_are_counted():
    m = _dit(cfg=WanDiTConfig(dim=64, ffn_dim=40, num_heads=2, num_layers=2))
    rep = fp8_linears_(m)
    assert set(rep.kept) == {f"blocks.{i}.ffn.{j}" for i in range(2) for j in (0, 2)}
    assert "not multiples of 16" in rep.kept["blocks.0.ffn.0"] and rep.fp8_layers == 2 * 6
    assert "kept in 16-bit" in rep.summary()
    x, t, ctx = _inputs()
    assert torch.isfinite(m(x, t, ctx)).all()


@torch.no_grad()
def test_full_forward_error_vs_fp32_and_bf16():
    ref = _dit()
    x, t, ctx = _inputs()
    y32 = ref(x, t, ctx)
    bf16 = _dit(torch.bfloat16)
    fp8 = _dit(torch.bfloat16)
    fp8_linears_(fp8)
    e16, e8 = rel(bf16(x, t, ctx), y32), rel(fp8(x, t, ctx), y32)
    print(f"\ntiny WanDiT forward vs fp32: bf16 {e16:.2e}, fp8 linears {e8:.2e}")
    assert e8 < 5e-2 and e8 > 2 * e16


@torch.no_grad()
def test_fuse_then_fp8_and_fp8_then_fuse_agree():
    x, t, ctx = _inputs()
    plain = _dit(torch.bfloat16)
    fp8_linears_(plain)
    y = plain(x, t, ctx)
    a = _dit(torch.bfloat16)
    assert fuse_qkv_(a) == (2, 0)
    rep = fp8_linears_(a)  # fuse, then fp8 (the pipeline's order)
    assert "blocks.0.self_attn.qkv_proj" in rep.converted and rep.fp8_layers == 2 * (PER_BLOCK - 2)
    b = _dit(torch.bfloat16)
    fp8_linears_(b)
    assert fuse_qkv_(b) == (2, 0)  # fp8, then fuse: per-channel scales stack
    for m in (a, b):
        qkv = m.blocks[0].self_attn.qkv_proj
        assert isinstance(m.blocks[0].self_attn, FusedQKVSelfAttention) and isinstance(qkv, FP8Linear)
        # per-channel quantisation of the stacked weight = stacking the per-layer quantisations
        w = plain.blocks[0].self_attn
        assert torch.equal(
            qkv.weight.view(torch.uint8), torch.cat([w.q.weight, w.k.weight, w.v.weight]).view(torch.uint8)
        )
        assert rel(m(x, t, ctx), y) < 1e-2  # the same products; GEMM order may differ in bf16 rounding


@torch.no_grad()
def test_fp8_scaled_blocks_with_unequal_scales_fuse_after_conversion():
    m = _dit()
    for blk in m.blocks:  # as a ComfyUI fp8 file: q/k/v each with its own per-tensor scale
        for name in ("q", "k", "v"):
            lin = getattr(blk.self_attn, name)
            s8 = ScaledFP8Linear(64, 64)
            scale = lin.weight.abs().max() / 448
            s8.weight.copy_((lin.weight / scale).to(torch.float8_e4m3fn))
            s8.weight_scale.fill_(float(scale))
            s8.bias.copy_(lin.bias)
            setattr(blk.self_attn, name, s8)
    assert fuse_qkv_(m) == (0, 2)  # unequal per-tensor scales: not fusable as fp8 storage
    rep = fp8_linears_(m)
    assert len(rep.reused_fp8) == 6 and len(rep.converted) == 10
    assert fuse_qkv_(m) == (2, 0) and is_qkv_fused(m)


# -- pipeline ----------------------------------------------------------------------------------------------


def _preset():
    return get_preset("self-forcing-1.3b").with_overrides(
        frames_per_chunk=2,
        sink_frames=1,
        window_frames=4,
        schedule=FewStepSchedule(steps=(1000, 750, 500, 250)),
    )


def _rollout(model, **kw):
    pipe = StreamingPipeline(model, _preset(), rope="relative", **kw)
    ctx = torch.randn(1, 7, 4096, generator=torch.Generator().manual_seed(5))
    pipe.initialize_cache(ctx, height=32, width=48, num_chunks=3, seed=11)
    return pipe, torch.cat([r.latents for r in pipe.stream()], dim=2)


@torch.no_grad()
def test_pipeline_rollout_fp8_vs_bf16_vs_fp32(count_scaled_mm):
    _, ref = _rollout(_dit())
    _, y16 = _rollout(_dit(torch.bfloat16))
    pipe, y8 = _rollout(_dit(torch.bfloat16), fp8_linear=True, fuse_qkv=True)
    assert pipe.fp8_report.fp8_layers == 2 * (PER_BLOCK - 2) and is_qkv_fused(pipe.dit)
    assert isinstance(pipe.dit.blocks[1].self_attn.qkv_proj, FP8Linear)
    # 3 chunks x (4 steps + 1 context pass, none after the last) x 2 blocks x 6 GEMMs
    assert len(count_scaled_mm) >= 14 * 2 * 6
    e16, e8 = rel(y16, ref), rel(y8, ref)
    print(f"\ntiny rollout, 3 chunks, latents vs fp32: bf16 {e16:.2e}, fp8 linears {e8:.2e}")
    assert torch.isfinite(y8).all()
    assert e8 < 6e-2 and e8 > 2 * e16


@torch.no_grad()
def test_pipeline_fp8_blocks_compile_without_graph_breaks():
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    try:
        _, eager = _rollout(_dit(torch.bfloat16), fp8_linear=True)
        m = _dit(torch.bfloat16)
        fp8_linears_(m)
        from wan_core.rollout.graphs import compile_blocks

        compile_blocks(m, backend="eager")
        _, compiled = _rollout(m)
        assert torch.equal(compiled, eager)
        assert not counters["graph_break"], dict(counters["graph_break"])
        assert counters["stats"]["unique_graphs"] >= 1
    finally:
        torch._dynamo.reset()


# -- errors --------------------------------------------------------------------------------------------------


def test_unsupported_torch_or_kernel_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(FL, "_SUPPORTED", {})

    def broken(*a, **k):
        raise RuntimeError("_scaled_mm is not supported on this device")

    monkeypatch.setattr(torch, "_scaled_mm", broken)
    with pytest.raises(
        ValueError, match=r"does not work on cpu.*not supported on this device.*precision bf16"
    ):
        check_fp8_support("cpu")
    m = _dit()
    before = copy.deepcopy(m.state_dict())
    with pytest.raises(ValueError, match="FP8 linear math"):
        fp8_linears_(m)
    assert not has_fp8_math(m)  # nothing swapped
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    monkeypatch.delattr(torch, "_scaled_mm")
    with pytest.raises(ValueError, match="torch._scaled_mm.*Upgrade torch"):
        check_fp8_support("cpu")


def test_old_gpu_is_refused_with_its_name(monkeypatch):
    monkeypatch.setattr(FL, "_SUPPORTED", {})
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "NVIDIA GeForce RTX 3090")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (8, 6))
    with pytest.raises(ValueError, match=r"RTX 3090 \(cuda:0, compute capability 8\.6\).*precision bf16"):
        check_fp8_support(torch.device("cuda", 0))


@torch.no_grad()
def test_lora_merge_is_refused_on_fp8_math_and_works_before(tmp_path):
    g = torch.Generator().manual_seed(3)
    lora = {
        "base_model.model.blocks.0.self_attn.q.lora_A.weight": torch.randn(4, 64, generator=g),
        "base_model.model.blocks.0.self_attn.q.lora_B.weight": torch.randn(64, 4, generator=g),
    }
    torch.save({"generator_lora": lora}, tmp_path / "lora.pt")
    m = _dit()
    fuse_qkv_(m)
    fp8_linears_(m)
    before = copy.deepcopy(m.state_dict())
    with pytest.raises(ValueError, match="merge LoRAs before enabling fp8 math"):
        merge_lora(m, tmp_path / "lora.pt")
    assert is_qkv_fused(m)  # refused before unfusing or touching a weight
    assert all(
        torch.equal(before[k].view(torch.uint8), v.view(torch.uint8)) for k, v in m.state_dict().items()
    )
    ok = _dit()
    assert merge_lora(ok, tmp_path / "lora.pt") == 1  # merge first ...
    q = ok.blocks[0].self_attn.q.weight.clone()
    fp8_linears_(ok)  # ... then convert: the merged weight is what gets quantised
    assert rel(ok.blocks[0].self_attn.q.dequantized_weight(), q) < 4e-2


# -- ComfyUI node ------------------------------------------------------------------------------------------


def test_node_precision_fp8_fast_is_appended_for_the_dit_only():
    _pack_on_path()
    from nodes import comfy_runtime as rt

    assert rt.DIT_PRECISIONS == [*rt.PRECISIONS, "fp8_fast"]  # appended: saved workflows keep their value
    assert "fp8_fast" not in rt.PRECISIONS  # the UMT5 encoder's list is unchanged


@pytest.mark.parametrize("fp8_file", [False, True])
def test_node_load_dit_fp8_fast(tmp_path, monkeypatch, fp8_file):
    _pack_on_path()
    from safetensors.torch import save_file
    from tiny_models import ROLLOUT, _block_linear, _dit_state, _fp8_scaled

    from nodes import comfy_runtime as rt
    from nodes import core_bridge
    from wan_core.parallel.model_loader import DiTFile

    sd = _dit_state("t2v", 0, ROLLOUT)
    sd = _fp8_scaled(sd, _block_linear) if fp8_file else {k: v.half() for k, v in sd.items()}
    path = tmp_path / ("dit_fp8_scaled.safetensors" if fp8_file else "dit_fp16.safetensors")
    save_file(sd, str(path))
    monkeypatch.setattr(rt, "torch_device", lambda: torch.device("cpu"))
    monkeypatch.setattr(rt, "free_memory_for", lambda p, device: None)
    loaded = core_bridge.load_dit(str(path), "fp8_fast", "sdpa", False, False)
    assert loaded.options.fp8_linear and has_fp8_math(loaded.model)
    rep = fp8_linears_(loaded.model)
    assert len(rep.already) == 2 * PER_BLOCK
    # the multi-GPU workers load the same way from the file
    worker = DiTFile(str(path), dtype="float32", attention="sdpa", fp8_linear=True).load(torch.device("cpu"))
    assert sum(isinstance(x, FP8Linear) for x in worker.modules()) == 2 * PER_BLOCK
    if fp8_file:  # the file's e4m3 bits are used as they are
        w = sd["blocks.0.ffn.0.weight"]
        assert torch.equal(loaded.model.blocks[0].ffn[0].weight.view(torch.uint8), w.view(torch.uint8))
    monkeypatch.setattr(FL, "_SUPPORTED", {})
    monkeypatch.setattr(torch, "_scaled_mm", lambda *a, **k: 1 / 0)
    with pytest.raises(ValueError, match="Load Wan DiT: precision fp8_fast: FP8 linear math"):
        core_bridge.load_dit(str(path), "fp8_fast", "sdpa", False, False)


# -- GPU (skipped here; for the GPU session: H100 / Ada) ---------------------------------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@needs_cuda
@torch.no_grad()
def test_gpu_fp8_linear_sync_free_compiled_and_in_a_rollout():
    dev = torch.device("cuda")
    if torch.cuda.get_device_capability(dev) < (8, 9):
        with pytest.raises(ValueError, match="compute capability"):
            check_fp8_support(dev)
        return
    assert check_fp8_support(dev) == "rowwise"  # sm89 / sm90 torch builds have the rowwise kernels
    lin, x = _linear(256, 512)
    lin, x = lin.to(dev), x.to(dev, torch.bfloat16).reshape(-1, 256).repeat(20, 1)  # 360 tokens
    ref = F.linear(x.double(), lin.weight.double(), lin.bias.double())
    fp8 = FP8Linear.from_linear(lin)
    torch.cuda.set_sync_debug_mode("error")  # no host sync inside the forward
    try:
        y = fp8(x)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert 8e-3 < rel(y, ref) < 6e-2
    torch._dynamo.reset()
    try:
        yc = torch.compile(fp8, fullgraph=True)(x)  # inductor: quantisation fused around the GEMM
        assert rel(yc, y) < 1e-2
    finally:
        torch._dynamo.reset()
    # the fp32 reference plain eager: no compile (saves a cold inductor compile of GPU time), no graphs
    _, ref_roll = _rollout(_dit(torch.float32).to(dev), cuda_graphs=False, compile=False)
    _, y16 = _rollout(_dit(torch.bfloat16).to(dev), cuda_graphs=True, compile=False)
    _, y8 = _rollout(_dit(torch.bfloat16).to(dev), fp8_linear=True, cuda_graphs=True, compile=False)
    e16, e8 = rel(y16, ref_roll), rel(y8, ref_roll)
    print(f"\nGPU tiny rollout vs fp32: bf16 {e16:.2e}, fp8 linears {e8:.2e}")
    assert e8 < 6e-2 and e8 > e16


def test_cli_generate_fp8_linear(tmp_path, capsys):
    from tiny_models import make_tiny_models

    from wan_core.__main__ import main

    make_tiny_models(tmp_path / "models", families=("t2v",))
    out = tmp_path / "fox.webp"
    rc = main(
        [
            "generate", "--preset", "self-forcing-1.3b", "--prompt", "a red fox", "--models-dir",
            str(tmp_path / "models"), "--frames", "9", "--height", "32", "--width", "48", "--out", str(out),
            "--decoder", "taehv", "--fp8-linear", "--device", "cpu",
        ]
    )  # fmt: skip
    assert rc == 0 and out.stat().st_size > 0
    text = capsys.readouterr().out
    # CPU: q/k/v stay unfused (fuse_qkv is on by default only on CUDA, where this would read 12 = 2 x 6)
    assert "FP8 linear math (rowwise scales): 16 block linears (16 quantised" in text
