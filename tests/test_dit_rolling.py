"""Rolling window over many chunks: constant memory, eviction, sinks, relative RoPE past 1024 frames."""

import pytest
import torch
from official_ref import max_rel_err, randomize_

from wan_core.dit import WanDiT, WanDiTConfig

TINY = dict(dim=32, ffn_dim=64, num_heads=2, num_layers=2)


def tiny(seed=0, **kw):
    m = WanDiT(WanDiTConfig(**{**TINY, **kw})).eval()
    return randomize_(m, seed, std=0.2)


@torch.no_grad()
def roll(model, x, ctx, n, sink, window, rope="absolute", check_memory=False):
    ft = (x.shape[3] // 2) * (x.shape[4] // 2)
    cache = model.new_kv_cache(1, ft, window_frames=window, sink_frames=sink, rope=rope)
    cross = model.prepare_context(ctx)
    outs, ptrs, nbytes = [], None, None
    for s in range(0, x.shape[2], n):
        t = torch.full((1, n), 500.0)
        model.forward_chunk(x[:, :, s : s + n] * 0.5, t + 300, cross, cache, s)  # denoising step
        outs.append(model.forward_chunk(x[:, :, s : s + n], t, cross, cache, s))  # re-run, same slots
        if check_memory:
            state = ([t.data_ptr() for t in cache.tensors()], cache.nbytes())
            if ptrs is None:
                ptrs, nbytes = state
            assert state == (ptrs, nbytes), f"cache memory changed at chunk {s // n}"
    return outs, cache


def test_memory_constant_over_24_chunks():
    m = tiny()
    x, ctx = torch.randn(1, 16, 48, 4, 4), torch.randn(1, 4, 4096)
    outs, cache = roll(m, x, ctx, n=2, sink=1, window=6, check_memory=True)
    assert len(outs) == 24
    assert cache.capacity_tokens == 7 * 4
    assert all(k.shape == (1, 28, 2, 16) for k in cache.k)
    assert cache.kv_tokens == 28 and cache.chunk_end == 48


def test_evicted_frames_stop_mattering_and_sinks_keep_mattering():
    m = tiny(seed=1)
    g = torch.Generator().manual_seed(0)
    x, ctx = torch.randn(1, 16, 44, 2, 4, generator=g), torch.randn(1, 4, 4096, generator=g)
    n, sink, window = 2, 1, 4
    base, _ = roll(m, x, ctx, n, sink, window)

    xp = x.clone()
    xp[:, :, 5] += 3.0  # a window frame (chunk 2), evicted once a chunk ends past 5 + window
    pert, _ = roll(m, xp, ctx, n, sink, window)
    diffs = [max_rel_err(a, b) for a, b in zip(pert, base)]
    assert diffs[2] > 1e-3 and diffs[3] > 1e-3  # it is attended while in the window
    # 2 layers: frame 5 reaches later frames' layer-1 K/V only while it is visible (chunks ending by
    # 5 + window); those frames leave the window in turn; from then on outputs are bit-identical.
    assert all(torch.equal(a, b) for a, b in zip(pert[8:], base[8:]))

    xs = x.clone()
    xs[:, :, 0] += 3.0  # the sink frame
    sinked, _ = roll(m, xs, ctx, n, sink, window)
    assert all(max_rel_err(a, b) > 1e-4 for a, b in zip(sinked, base))  # ... matters to the last chunk

    nosink, _ = roll(m, xs, ctx, n, 0, window + 1)
    nosink_base, _ = roll(m, x, ctx, n, 0, window + 1)
    assert torch.equal(nosink[-1], nosink_base[-1])  # without a sink frame 0 is evicted too


def test_one_layer_eviction_is_exact():
    """With one layer K/V depend on a frame's own input only: outputs differ exactly while visible."""
    m = tiny(seed=2, num_layers=1)
    x, ctx = torch.randn(1, 16, 30, 2, 2), torch.randn(1, 4, 4096)
    n, window = 3, 6
    base, _ = roll(m, x, ctx, n, 0, window)
    xp = x.clone()
    xp[:, :, 4] -= 2.0
    pert, _ = roll(m, xp, ctx, n, 0, window)
    for c, (a, b) in enumerate(zip(pert, base)):
        end = (c + 1) * n
        visible = c * n <= 4 < end or end - window <= 4 < end
        assert torch.equal(a, b) != visible, f"chunk {c}"


def test_relative_rope_runs_past_1024_frames_absolute_refuses():
    m = tiny(seed=3, num_layers=1)
    frames, n = 1040, 8
    x, ctx = torch.randn(1, 16, frames, 2, 2), torch.randn(1, 4, 4096)  # 1 token per latent frame
    cache = m.new_kv_cache(1, 1, window_frames=16, sink_frames=2, rope="relative")
    abs_cache = m.new_kv_cache(1, 1, window_frames=16, sink_frames=0, rope="absolute")
    rel0 = m.new_kv_cache(1, 1, window_frames=16, sink_frames=0, rope="relative")
    cross = m.prepare_context(ctx)
    t = torch.full((1, n), 250.0)
    with torch.no_grad():
        for s in range(0, frames, n):
            out = m.forward_chunk(x[:, :, s : s + n], t, cross, cache, s)
            assert torch.isfinite(out).all()
            pos = cache.visible_slot_positions()  # keys at absolute frames, the sinks right before the window
            assert int(pos.max() - pos.min()) < 18  # the differences attention sees stay inside the window
            if s + n <= 1024:
                a = m.forward_chunk(x[:, :, s : s + n], t, cross, abs_cache, s)
                # S=0: relative positions are absolute ones shifted by a constant -> same attention
                assert max_rel_err(m.forward_chunk(x[:, :, s : s + n], t, cross, rel0, s), a) < 1e-4
            elif s == 1024:
                with pytest.raises(ValueError, match="1024-position RoPE table"):
                    m.forward_chunk(x[:, :, s : s + n], t, cross, abs_cache, s)
    assert cache.chunk_end == 1040


def test_plan_errors_are_clear():
    m = tiny()
    cache = m.new_kv_cache(1, 4, window_frames=3, sink_frames=1)
    cross = m.prepare_context(torch.randn(1, 4, 4096))
    x = torch.randn(1, 16, 4, 4, 4)
    with pytest.raises(ValueError, match="does not fit the attention window"):
        m.forward_chunk(x, torch.zeros(1), cross, cache, 0)
    m.forward_chunk(x[:, :, :3], torch.zeros(1), cross, cache, 0)
    with pytest.raises(ValueError, match="next chunk must start at 3"):
        m.forward_chunk(x[:, :, :3], torch.zeros(1), cross, cache, 6)
    with pytest.raises(ValueError, match="does not match the cache plan"):
        m.forward_chunk(torch.randn(1, 16, 3, 2, 4), torch.zeros(1), cross, cache, 3)
    with pytest.raises(ValueError, match="exceeds the 1024-position"):
        m.new_kv_cache(1, 4, window_frames=1020, sink_frames=8, rope="relative")


def test_forward_planned_traces_as_one_graph_and_stops_recompiling_once_full():
    """Capture-friendliness: torch.compile(fullgraph=True) fails on any host sync (.item(), data-dependent
    Python control flow); once the cache is full every chunk reuses the same graph."""
    torch._dynamo.reset()
    m = tiny(seed=4)
    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    rope = "relative"  # a superset of the absolute path (it also re-ropes the cached keys)
    cache = m.new_kv_cache(1, 4, window_frames=2, sink_frames=1, rope=rope)
    eager_cache = m.new_kv_cache(1, 4, window_frames=2, sink_frames=1, rope=rope)
    cross = m.prepare_context(torch.randn(1, 5, 4096))
    compiled = torch.compile(m.forward_planned, backend=counting_backend, fullgraph=True)
    x = torch.randn(1, 16, 10, 4, 4)
    with torch.no_grad():
        for s in range(0, 10, 2):
            t = torch.full((1, 2), 100.0 + s)
            for _ in range(2):  # denoising step + re-run of the same chunk
                want = m.forward_chunk(x[:, :, s : s + 2], t, cross, eager_cache, s)
                cache.plan_chunk(s, 2)
                assert torch.equal(compiled(x[:, :, s : s + 2], t, cross, cache), want)
            full = cache.kv_tokens == cache.capacity_tokens
            # one graph per distinct visible length (2 frames, then the full 3), none after that
            assert len(graphs) == (2 if full else 1), f"chunk {s // 2}: {len(graphs)} graphs"
    torch._dynamo.reset()
