"""Ulysses and ring attention over 2 and 3 gloo processes equal full attention on one process."""

import pytest
import torch

from wan_core.attention import attention
from wan_core.parallel import FrameShard, attention_with_lse, ring_attention, run_local, ulysses_attention
from wan_core.parallel.ring import _math_with_lse, merge_partials
from wan_core.parallel.ulysses import heads_to_tokens, qkv_tokens_to_heads, tokens_to_heads

B, FRAMES, FT, H, HD = 2, 3, 12, 6, 16  # 12 tokens per frame, 6 heads: 2 or 3 ranks


def _qkv(lq=FRAMES * FT, lk=FRAMES * FT, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(B, lq, H, HD, generator=g).to(dtype),
        torch.randn(B, lk, H, HD, generator=g).to(dtype),
        torch.randn(B, lk, H, HD, generator=g).to(dtype),
    )


def test_attention_with_lse_matches_sdpa_and_logsumexp():
    q, k, v = _qkv(lq=5, lk=11)
    out, lse = attention_with_lse(q, k, v)
    assert out.shape == q.shape and lse.shape == (B, H, 5)
    assert torch.allclose(out, attention(q, k, v), atol=1e-6)
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / HD**0.5
    assert torch.allclose(lse, scores.logsumexp(-1), atol=1e-5)
    m_out, m_lse = _math_with_lse(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    assert torch.allclose(m_out.transpose(1, 2), out, atol=1e-6) and torch.allclose(m_lse, lse, atol=1e-5)


def test_merge_of_key_blocks_equals_attention_over_all_keys():
    q, k, v = _qkv(lq=6, lk=12, seed=1)
    out = lse = None
    for sl in (slice(0, 5), slice(5, 7), slice(7, 12)):  # uneven blocks, any order works
        out, lse = merge_partials(out, lse, *attention_with_lse(q, k[:, sl], v[:, sl]))
    assert (out - attention(q, k, v)).abs().max() < 1e-6
    # one block is its own answer
    o1, _ = merge_partials(None, None, *attention_with_lse(q, k, v))
    assert torch.equal(o1, attention_with_lse(q, k, v)[0])


def _check_on_ranks(ctx):
    torch.set_num_threads(1)
    q, k, v = _qkv(seed=2)  # the same full tensors on every rank
    shard = FrameShard(ctx, FT)
    ql, kl, vl = (shard.take(t, FRAMES) for t in (q, k, v))
    n = ctx.world_size
    hl = H // n
    assert ql.shape == (B, FRAMES * FT // n, H, HD)
    full = attention(q, k, v)

    # layout round trips
    assert torch.equal(shard.gather(ql.flatten(2), FRAMES), q.flatten(2))
    heads = tokens_to_heads(ql, ctx, FRAMES)  # all tokens, this rank's 2 heads
    assert torch.equal(heads, q[:, :, ctx.rank * hl : (ctx.rank + 1) * hl])
    assert torch.equal(heads_to_tokens(heads, ctx, FRAMES), ql)
    qh, kh, vh = qkv_tokens_to_heads(ql, kl, vl, ctx, FRAMES)
    assert torch.equal(qh, heads) and torch.equal(vh, v[:, :, ctx.rank * hl : (ctx.rank + 1) * hl])

    uly = ulysses_attention(ql, kl, vl, ctx, FRAMES)
    ring = ring_attention(ql, kl, vl, ctx)
    ref = shard.take(full, FRAMES)
    assert (uly - ref).abs().max() < 1e-6, (uly - ref).abs().max()
    assert (ring - ref).abs().max() < 1e-6, (ring - ref).abs().max()

    # ring with fewer local queries than keys (a chunk attending to a cached window)
    q2 = q[:, :FT]  # one frame of queries
    ring2 = ring_attention(shard.take(q2, 1), kl, vl, ctx)
    assert (ring2 - shard.take(attention(q2, k, v), 1)).abs().max() < 1e-6


@pytest.mark.timeout(120)
@pytest.mark.parametrize("world_size", [2, 3])
def test_ulysses_and_ring_equal_full_attention_on_gloo_ranks(world_size):
    run_local(_check_on_ranks, world_size, backend="gloo")
