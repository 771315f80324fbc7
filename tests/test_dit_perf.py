"""Speed levers of the DiT side, checked for equality on CPU: fused q/k/v projection (``wan_core.dit.fuse``),
the sync-free ``RollingKVCache.plan_chunk`` upload, and ``resolve_backend("auto")`` vs SageAttention versions."""

import copy
import importlib.metadata

import pytest
import torch
from official_ref import max_rel_err, randomize_

import wan_core.attention as A
from wan_core.dit import WanDiT, WanDiTConfig
from wan_core.dit.fuse import FusedQKVSelfAttention, fuse_qkv_, is_qkv_fused, unfuse_qkv_
from wan_core.dit.kv_cache import RollingKVCache
from wan_core.quant import ScaledFP8Linear

CFG = WanDiTConfig(dim=64, ffn_dim=128, num_heads=2, num_layers=2)


def _pair():
    plain = randomize_(WanDiT(CFG).eval(), 0, std=0.1)
    fused = copy.deepcopy(plain)
    assert fuse_qkv_(fused) == (CFG.num_layers, 0)
    assert is_qkv_fused(fused) and not is_qkv_fused(plain)
    return plain, fused


@torch.no_grad()
def test_fused_qkv_equals_unfused_full_forward_and_chunks():
    plain, fused = _pair()
    g = torch.Generator().manual_seed(1)
    x, ctx = torch.randn(1, 16, 6, 4, 4, generator=g), torch.randn(1, 5, 4096, generator=g)
    t = torch.tensor([640.0])
    err_full = max_rel_err(fused(x, t, ctx), plain(x, t, ctx))
    outs = []
    for m in (plain, fused):
        cache = m.new_kv_cache(1, 4, window_frames=4, sink_frames=1, rope="relative")
        cross = m.prepare_context(ctx)
        outs.append(
            torch.cat(
                [
                    m.forward_chunk(x[:, :, s : s + 2], torch.full((1, 2), 400.0), cross, cache, s)
                    for s in (0, 2, 4)
                ],
                2,
            )
        )
    err_chunk = max_rel_err(outs[1], outs[0])
    print(f"\nfused vs unfused fp32: full {err_full:.1e}, chunks {err_chunk:.1e}")
    # the same dot products; only the GEMM blocking may differ (bit-equal at these sizes on CPU)
    assert err_full <= 1e-6 and err_chunk <= 1e-6


@torch.no_grad()
def test_unfuse_restores_the_official_layout():
    plain, fused = _pair()
    assert isinstance(fused.blocks[0].self_attn, FusedQKVSelfAttention)
    assert "blocks.0.self_attn.qkv_proj.weight" in fused.state_dict()
    assert unfuse_qkv_(fused) == CFG.num_layers
    sd_p, sd_f = plain.state_dict(), fused.state_dict()
    assert list(sd_f) == list(sd_p)
    assert all(torch.equal(sd_f[k], sd_p[k]) for k in sd_p)
    assert fuse_qkv_(fused) == (CFG.num_layers, 0) and fuse_qkv_(fused) == (0, 0)  # idempotent


def _fp8_self_attn(model, scales):
    sa = model.blocks[0].self_attn
    for name, s in zip("qkv", scales):
        lin = getattr(sa, name)
        q = ScaledFP8Linear(lin.in_features, lin.out_features)
        q.weight.data = (lin.weight.data / s).to(torch.float8_e4m3fn)
        q.weight_scale.data = torch.tensor(s)
        q.bias.data = lin.bias.data.clone()
        setattr(sa, name, q)


@torch.no_grad()
def test_fp8_layers_fuse_only_with_equal_scales():
    plain = randomize_(WanDiT(CFG).eval(), 0, std=0.1)
    _fp8_self_attn(plain, (0.01, 0.01, 0.01))
    fused = copy.deepcopy(plain)
    assert fuse_qkv_(fused) == (2, 0)
    proj = fused.blocks[0].self_attn.qkv_proj
    assert isinstance(proj, ScaledFP8Linear) and proj.weight.dtype == torch.float8_e4m3fn
    x, ctx, t = torch.randn(1, 16, 2, 4, 4), torch.randn(1, 5, 4096), torch.tensor([300.0])
    assert max_rel_err(fused(x, t, ctx), plain(x, t, ctx)) <= 1e-6
    # different per-tensor scales: that block stays as it is, the plain block 1 is fused
    mixed = randomize_(WanDiT(CFG).eval(), 0, std=0.1)
    _fp8_self_attn(mixed, (0.01, 0.02, 0.01))
    assert fuse_qkv_(mixed) == (1, 1)
    assert not isinstance(mixed.blocks[0].self_attn, FusedQKVSelfAttention)
    assert isinstance(mixed.blocks[1].self_attn, FusedQKVSelfAttention)


def _host_plan(cache, frame_start, n):
    """The plan computed on the host from the cache's own bookkeeping rules (the previous implementation)."""
    end = frame_start + n
    ft = cache.frame_tokens
    slots = [cache.slot_of(f) for f in range(frame_start, end)]
    write = [s * ft + j for s in slots for j in range(ft)]
    pos = [cache._position(f, end) for f in range(frame_start, end)]
    slot_pos = [cache._position(f, end) if f >= 0 else 0 for f in cache.slot_frame]
    return write, pos, slot_pos


@pytest.mark.parametrize("cls", [RollingKVCache])
@pytest.mark.parametrize(
    "rope,sink,window,n", [("absolute", 1, 4, 2), ("relative", 2, 5, 3), ("relative", 0, 3, 1)]
)
def test_plan_chunk_device_buffers_equal_host_plan(cls, rope, sink, window, n):
    cache = cls(2, 1, 6, 2, 8, window, sink, dtype=torch.float32, rope=rope)
    starts = [0, 0] + [s for c in range(1, 9) for s in (c * n, c * n)]  # each chunk planned twice (re-run)
    buffers = None
    for s in starts:
        cache.plan_chunk(s, n)
        write, pos, slot_pos = _host_plan(cache, s, n)
        assert cache.write_index(n).tolist() == write
        assert cache.chunk_positions(n).tolist() == pos
        if rope == "relative":
            assert cache.slot_positions.tolist() == slot_pos
        ptrs = [t.data_ptr() for t in cache.tensors()]  # filled in place: graphs keep reading them
        assert buffers is None or ptrs == buffers
        buffers = ptrs


def test_auto_backend_picks_sage_only_from_version_2(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    versions = {}

    def version(dist):
        if dist not in versions:
            raise importlib.metadata.PackageNotFoundError(dist)
        return versions[dist]

    monkeypatch.setattr(importlib.metadata, "version", version)
    monkeypatch.setattr(A, "_has", lambda name: name == "sageattention")
    versions["sageattention"] = "1.0.6"
    assert A.resolve_backend("auto", "cuda") == "sdpa"  # Sage 1.x is slower than SDPA/cuDNN on H100
    assert A.resolve_backend("sage", "cuda") == "sage"  # still available by name
    versions["sageattention"] = "2.2.0"
    assert A.resolve_backend("auto", "cuda") == "sage"
    del versions["sageattention"]  # importable but no distribution metadata: do not guess
    assert A.resolve_backend("auto", "cuda") == "sdpa"
    # FlashAttention 3 stays first; FlashAttention 2 alone is not picked automatically
    versions["sageattention"] = "2.1.1"
    monkeypatch.setattr(A, "_has", lambda name: name in ("sageattention", "flash_attn_interface"))
    assert A.resolve_backend("auto", "cuda") == "flash"
    monkeypatch.setattr(A, "_has", lambda name: name == "flash_attn")
    assert A.resolve_backend("auto", "cuda") == "sdpa"
    assert A.resolve_backend("auto", "cpu") == "sdpa"


@pytest.mark.parametrize("groups", [1, 3, 12])  # per batch, per frame, per token
def test_fused_modulate_and_gated_residual_equal_the_plain_formulas(groups):
    from wan_core.dit.model import _add_gated, _modulate

    g = torch.Generator().manual_seed(groups)
    b, L, d = 2, 12, 64
    x = torch.randn(b, L, d, generator=g)
    shift, scale, gate = (torch.randn(b, groups, d, generator=g) for _ in range(3))
    rep = L // groups
    want_mod = x * (1 + scale.repeat_interleave(rep, 1)) + shift.repeat_interleave(rep, 1)
    assert max_rel_err(_modulate(x, shift, scale), want_mod) <= 1e-6
    for y in (torch.randn(b, L, d, generator=g), torch.randn(b, L, d, generator=g).bfloat16()):
        got = _add_gated(x, y, gate)
        assert got.dtype == torch.float32
        assert max_rel_err(got, x + y.float() * gate.repeat_interleave(rep, 1)) <= 1e-6
