"""wan_core.attention backends and the bf16 streaming path."""

import pytest
import torch
from official_ref import max_rel_err, randomize_

import wan_core.attention as A
from wan_core.dit import WanDiT, WanDiTConfig


def test_sdpa_matches_explicit_softmax_and_mask():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, n, 3, 8, generator=g) for n in (5, 7, 7))  # [B, L, heads, head_dim]
    w = torch.einsum("bqhd,bkhd->bhqk", q, k) / 8**0.5
    want = torch.einsum("bhqk,bkhd->bqhd", w.softmax(-1), v)
    assert max_rel_err(A.attention(q, k, v), want) < 1e-6
    mask = torch.rand(5, 7, generator=g) > 0.3
    mask[:, 0] = True
    want_m = torch.einsum("bhqk,bkhd->bqhd", w.masked_fill(~mask, float("-inf")).softmax(-1), v)
    # a mask always runs SDPA, whatever backend was resolved
    assert max_rel_err(A.attention(q, k, v, "flash", mask=mask), want_m) < 1e-6


def test_resolve_backend_errors_name_the_problem(monkeypatch):
    assert A.resolve_backend("auto", "cpu") == "sdpa"
    assert A.resolve_backend("sdpa", "cpu") == "sdpa"
    with pytest.raises(ValueError, match="'sage' needs a CUDA GPU"):
        A.resolve_backend("sage", "cpu")
    with pytest.raises(ValueError, match="unknown attention backend 'xformers'"):
        A.resolve_backend("xformers", "cpu")
    # on a CUDA machine without the packages
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(A, "_has", lambda name: False)
    assert A.resolve_backend("auto", "cuda") == "sdpa"
    with pytest.raises(ValueError, match="'flash' is not installed: pip install flash-attn"):
        A.resolve_backend("flash", "cuda")
    with pytest.raises(ValueError, match="'sage' is not installed: pip install sageattention"):
        A.resolve_backend("sage", "cuda")
    monkeypatch.setattr(A, "_has", lambda name: name in ("sageattention", "flash_attn_interface"))
    assert A.resolve_backend("auto", "cuda") == "flash"


@torch.no_grad()
def test_bf16_model_and_cache_track_fp32():
    cfg = WanDiTConfig(dim=64, ffn_dim=128, num_heads=2, num_layers=2)
    m32 = randomize_(WanDiT(cfg).eval(), 0, std=0.1)
    m16 = WanDiT(cfg).eval().to(torch.bfloat16)
    m16.load_state_dict(m32.state_dict())
    x, ctx = torch.randn(1, 16, 6, 4, 4), torch.randn(1, 5, 4096)
    outs = []
    for m in (m32, m16):
        cache = m.new_kv_cache(1, 4, window_frames=4, sink_frames=1, rope="relative")
        assert cache.k[0].dtype == m.compute_dtype
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
    assert outs[1].dtype == torch.float32
    assert max_rel_err(outs[1], outs[0]) < 3e-2
