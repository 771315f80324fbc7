"""Streaming: chunk-by-chunk through the RollingKVCache == one full pass with a block-causal mask.

The reference is the official wan22 ``WanModel`` whose attention is replaced, for self-attention only,
by plain SDPA with an explicit block-causal (+ window + sink) mask written here.
"""

import pytest
import torch
import torch.nn.functional as F
from official_ref import max_rel_err, official, randomize_, sdpa_flash_attention

from wan_core.dit import WanDiT, WanDiTConfig

TOL = 1e-4
TINY = dict(dim=32, ffn_dim=64, num_heads=2, num_layers=2)


def block_causal_mask(chunks, frame_tokens, sink, window):
    """[L, L] bool: a query in chunk [s, e) sees key frames kf < e with kf < sink or kf >= e - window."""
    frames = chunks[-1][1]
    allowed = torch.zeros(frames, frames, dtype=torch.bool)
    for s, e in chunks:
        kf = torch.arange(frames)
        allowed[s:e] = (kf < e) & ((kf < sink) | (kf >= e - window))
    tok = torch.arange(frames * frame_tokens) // frame_tokens
    return allowed[tok][:, tok]


def official_masked(monkeypatch, ref, x, t_tokens, ctx, mask, y=None):
    M = official("model")
    L = mask.shape[0]

    def masked_attention(q, k, v, q_lens=None, k_lens=None, **kw):
        if q.shape[1] == L and k.shape[1] == L:  # self-attention
            out = F.scaled_dot_product_attention(
                q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask
            )
            return out.transpose(1, 2)
        return sdpa_flash_attention(q, k, v, q_lens=q_lens, k_lens=k_lens)

    monkeypatch.setattr(M, "flash_attention", masked_attention)
    with torch.no_grad():
        return torch.stack(ref(list(x), t_tokens, list(ctx), seq_len=L, y=None if y is None else list(y)))


def tiny_pair(model_type="t2v", in_dim=16, out_dim=16, seed=0):
    M = official("model")
    ref = M.WanModel(model_type=model_type, in_dim=in_dim, out_dim=out_dim, **TINY).eval()
    randomize_(ref, seed, std=0.2)
    ours = WanDiT(WanDiTConfig(**TINY, in_dim=in_dim, out_dim=out_dim, model_type=model_type)).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours


@torch.no_grad()
def rollout(model, x, t, ctx, chunks, sink, window, rope="absolute", y=None, rerun=True):
    """Chunk by chunk; each chunk first runs on other inputs (a denoising step) then is re-run."""
    b, _, _, h, w = x.shape
    ft = (h // 2) * (w // 2)
    cache = model.new_kv_cache(b, ft, window_frames=window, sink_frames=sink, rope=rope)
    cross = model.prepare_context(ctx)
    outs = []
    g = torch.Generator().manual_seed(123)
    for s, e in chunks:
        tc = t[:, s:e] if t.shape[1] == x.shape[2] else t[:, s * ft : e * ft]
        yc = None if y is None else y[:, :, s:e]
        if rerun:  # a noisier step of the same chunk: must be overwritten by the re-run below
            noisy = torch.randn(x[:, :, s:e].shape, generator=g)
            model.forward_chunk(noisy, torch.full_like(tc, 900.0), cross, cache, s, y=yc)
        outs.append(model.forward_chunk(x[:, :, s:e], tc, cross, cache, s, y=yc))
    return torch.cat(outs, dim=2), cache


CASES = [
    # (frames, chunk, sink, window, rope)
    pytest.param(9, 3, 0, 9, "absolute", id="full-window"),
    pytest.param(9, 3, 0, 9, "relative", id="full-window-relative"),
    pytest.param(12, 3, 1, 4, "absolute", id="window4+sink1"),
    pytest.param(12, 3, 2, 5, "absolute", id="window5+sink2"),
    pytest.param(12, 3, 0, 5, "relative", id="window5-relative"),  # S=0: relative == absolute
]


@pytest.mark.parametrize("frames,n,sink,window,rope", CASES)
def test_chunked_equals_block_causal_full_pass(monkeypatch, frames, n, sink, window, rope):
    ref, ours = tiny_pair(seed=frames + sink)
    g = torch.Generator().manual_seed(window)
    x = torch.randn(2, 16, frames, 4, 6, generator=g)  # 2x3 = 6 tokens per latent frame
    ctx = torch.randn(2, 9, 4096, generator=g)
    t = torch.rand(2, frames, generator=g) * 1000  # per-frame timesteps
    chunks = [(s, s + n) for s in range(0, frames, n)]
    got, _ = rollout(ours, x, t, ctx, chunks, sink, window, rope)
    mask = block_causal_mask(chunks, 6, sink, window)
    want = official_masked(monkeypatch, ref, x, t.repeat_interleave(6, dim=1), ctx, mask)
    err = max_rel_err(got, want)
    print(
        f"\nAR vs block-causal official ({frames}f, chunk {n}, sink {sink}, window {window}, {rope}): {err:.2e}"
    )
    assert err <= TOL
    # the mask matters: the plain bidirectional pass is different
    assert max_rel_err(got, ours(x, t, ctx)) > 1e-3


def test_chunked_per_token_t_and_i2v_y(monkeypatch):
    """TI2V-style per-token t and Wan2.2-I2V-style y through the cache, uneven chunks (1, then 2)."""
    ref, ours = tiny_pair("i2v", 36, 16, seed=7)
    g = torch.Generator().manual_seed(8)
    x, y = torch.randn(1, 16, 5, 4, 4, generator=g), torch.randn(1, 20, 5, 4, 4, generator=g)
    ctx = torch.randn(1, 6, 4096, generator=g)
    t = torch.rand(1, 5 * 4, generator=g) * 1000
    t[:, :4] = 0
    chunks = [(0, 1), (1, 3), (3, 5)]
    got, _ = rollout(ours, x, t, ctx, chunks, sink=1, window=2, y=y)
    want = official_masked(monkeypatch, ref, x, t, ctx, block_causal_mask(chunks, 4, 1, 2), y=y)
    err = max_rel_err(got, want)
    print(f"\nAR per-token t + y vs official: {err:.2e}")
    assert err <= TOL


def test_plan_span_is_a_native_cache_method():
    """``RollingKVCache.plan_span``: one pass over any span -- from frame 0 up to sink + window frames
    (longer than the window: every frame in slot f at position f), or the frames held (a re-encode) --
    without touching ``window_frames``; the ring then continues with ``plan_chunk``."""
    from wan_core.dit.kv_cache import RollingKVCache

    ft, sink, window = 3, 1, 4
    for rope in ("absolute", "relative"):
        cache = RollingKVCache(1, 1, ft, 2, 8, window, sink, dtype=torch.float32, rope=rope)
        cache.plan_span(0, sink + window)
        assert cache.window_frames == window and cache.kv_frames == sink + window
        assert cache.write_index(5).tolist() == list(range(5 * ft))
        assert cache.chunk_positions(5).tolist() == list(range(5))
        cache.plan_chunk(5, 2)  # frames 5, 6 go to ring slots 1, 2
        assert cache.write_index(2).tolist() == list(range(ft, 3 * ft))
        for s in (7, 9):
            cache.plan_chunk(s, 2)
        # re-encode the frames held: sink 0 + window [7, 11) = slots 0, 3, 4, 1, 2
        cache.plan_span(7, 4)
        assert [cache.slot_of(f) for f in (7, 8, 9, 10)] == [3, 4, 1, 2]
        assert cache.write_index(4).tolist() == [s * ft + j for s in (3, 4, 1, 2) for j in range(ft)]
        assert cache.chunk_positions(4).tolist() == [7, 8, 9, 10] and cache.chunk_end == 11
        if rope == "relative":  # window-relative sink 0, frames 1..4, all placed 6 further on
            assert cache.sink_positions().tolist() == [6] and not cache.chunk_unroped(4).any()
        for start, n in ((1, 5), (0, 6), (0, 0)):
            with pytest.raises(ValueError, match="span"):
                cache.plan_span(start, n)


@torch.no_grad()
def test_span_from_frame_zero_equals_the_full_pass():
    """A span of all S + W frames from frame 0 attends bidirectionally within itself: == ``forward``."""
    model = randomize_(WanDiT(WanDiTConfig(**TINY)).eval(), 3, std=0.2)
    g = torch.Generator().manual_seed(4)
    x, ctx = torch.randn(1, 16, 5, 4, 6, generator=g), torch.randn(1, 7, 4096, generator=g)
    t = torch.tensor([[300.0, 300.0, 500.0, 500.0, 700.0]])
    cache = model.new_kv_cache(1, 6, window_frames=3, sink_frames=2)
    cache.plan_span(0, 5)
    out = model.forward_planned(x, t, model.prepare_context(ctx), cache)
    assert max_rel_err(out, model(x, t, ctx)) < 1e-5
