"""Rolling Forcing sampler == a naive reference written from RF's inference code (one full pass per
window over explicit frames / positions / keys, one clean pass per emitted chunk), chunks in order,
a cache of clean K/V only, and != the chunk-wise few-step rollout."""

import pytest
import torch
from official_ref import max_rel_err, randomize_
from rollout_naive import cat_kv, frames_kv, naive_pass, rope_kv

from wan_core.dit import WanDiT, WanDiTConfig
from wan_core.rollout.pipeline import StreamingPipeline
from wan_core.rollout.presets import get_preset

TINY = dict(dim=32, ffn_dim=64, num_heads=2, num_layers=2)
H, W = 32, 48  # latent 4 x 6 -> 2 x 3 = 6 tokens per latent frame
FT, GH, GW = 6, 2, 3
ATT = 21  # RF max_attention_size in frames


def rf_reference(dit, pipe, ctx, num_chunks):
    """RF @a1477d0 inference_rolling_forcing + CausalWanSelfAttention, naively: explicit key lists."""
    p = pipe.preset
    n, sched = p.frames_per_chunk, p.schedule
    d, sig, R = sched.timesteps, sched.sigmas, len(sched.timesteps)
    cross = dit.prepare_context(ctx)
    store = {}  # frame -> per-layer (k un-roped, v) of its clean pass
    noisy, outs, order = {}, {}, []

    def stored(frames, positions):
        raw = cat_kv(*[store[f] for f in frames])
        return rope_kv(dit, raw, positions, GH, GW)

    for w in range(num_chunks + R - 1):
        chunks = list(range(max(0, w - R + 1), min(num_chunks - 1, w) + 1))
        x = torch.cat([pipe.chunk_noise(b)[0] if b == w else noisy[b] for b in chunks], dim=2)
        t = torch.tensor([[d[w - b] for b in chunks for _ in range(n)]])
        s, q = chunks[0] * n, len(chunks) * n
        prefix = None
        if s > 0:
            wc = min(s - n, ATT - q - n)
            pa = s - wc - n  # anchor right before the working cache
            prefix = stored(range(n), list(range(pa, pa + n)))
            if wc:
                prefix = cat_kv(prefix, stored(range(s - wc, s), list(range(s - wc, s))))
        v, _ = naive_pass(dit, x, t, cross, list(range(s, s + q)), prefix=prefix)
        for j, b in enumerate(chunks):
            k = w - b
            x0 = x[:, :, j * n : (j + 1) * n] - sig[k] * v[:, :, j * n : (j + 1) * n]
            if k == R - 1:
                outs[b] = x0
                order.append(b)
            else:
                noisy[b] = (1 - sig[k + 1]) * x0 + sig[k + 1] * pipe.chunk_noise(b)[k + 1]
        if w >= R - 1:  # clean pass of the emitted (oldest) chunk
            b = chunks[0]
            prefix = None
            if s > 0:
                keys = list(range(s)) if s + n <= ATT else list(range(s + n - ATT, s))
                prefix = stored(keys, keys)
            _, kv = naive_pass(
                dit, outs[b], torch.zeros(1, n), cross, list(range(s, s + n)), prefix, raw_kv=True
            )
            for j in range(n):
                store[s + j] = frames_kv(kv, [j], FT)
    return [outs[b] for b in range(num_chunks)], order, store


def _setup(seed=0):
    dit = randomize_(WanDiT(WanDiTConfig(**TINY)).eval(), seed, std=0.2)
    ctx = torch.randn(1, 9, 4096, generator=torch.Generator().manual_seed(seed + 1))
    return dit, get_preset("rolling-forcing-1.3b"), ctx


def test_rolling_forcing_preset():
    p = get_preset("rolling-forcing-1.3b")
    assert p.sampler == "rolling_forcing" and p.is_autoregressive and p.frames_per_chunk == 3
    assert p.schedule.steps == (1000, 800, 600, 400, 200) and p.schedule.warp and p.schedule.shift == 5.0


def test_rolling_forcing_equals_naive_reference():
    """9 chunks (27 frames): ramp-up windows, steady windows (anchor + 3 cached frames + 15), tail
    windows, and clean passes past 21 frames (no anchor)."""
    dit, p, ctx = _setup()
    progress = []
    pipe = StreamingPipeline(
        dit, p, progress=lambda done, total, chunk: progress.append((done, total, chunk))
    )
    pipe.initialize_cache(ctx, height=H, width=W, num_chunks=9, seed=4)
    got, idx, windows = [], [], []
    for r in pipe.stream():
        got.append(r.latents)
        idx.append(r.index)
        windows.append(pipe.state.rolling.next_window)
    assert idx == list(range(9)) and windows == list(range(5, 14))  # R windows for chunk 0, then one each
    want, order, store = rf_reference(dit, pipe, ctx, 9)
    assert order == list(range(9))
    assert progress[-1] == (13, 13, 8) and [c for _, _, c in progress[:5]] == [0] * 5
    errs = [max_rel_err(a, b) for a, b in zip(got, want)]
    print(f"\nRolling Forcing vs naive reference: max rel err {max(errs):.2e} over {len(errs)} chunks")
    assert max(errs) < 1e-5
    # the cache holds the clean K/V of the anchor (keys un-roped, in the spare area after the scratch:
    # the anchor moves from pass to pass) and of the last 21 frames (keys roped at their frame)
    cache = pipe.state.cache
    for f in [0, 1, 2] + list(range(6, 27)):
        sl = torch.arange(cache.slot_of(f) * FT, (cache.slot_of(f) + 1) * FT)
        k_sl, want_k = (
            (sl + cache.capacity_tokens, store[f]) if f < 3 else (sl, rope_kv(dit, store[f], [f], GH, GW))
        )
        for layer in range(2):
            assert max_rel_err(cache.k[layer][:, k_sl], want_k[layer][0]) < 1e-5
            assert max_rel_err(cache.v[layer][:, sl], store[f][layer][1]) < 1e-5


def test_rolling_forcing_differs_from_chunkwise_and_is_deterministic():
    dit, p, ctx = _setup(seed=2)
    runs = []
    for preset in (p, p, p.with_overrides(sampler="few_step")):
        pipe = StreamingPipeline(dit, preset)
        pipe.initialize_cache(ctx, height=H, width=W, num_chunks=3, seed=1)
        runs.append([r.latents for r in pipe.stream()])
    assert all(torch.equal(a, b) for a, b in zip(runs[0], runs[1]))
    assert all(max_rel_err(a, b) > 1e-3 for a, b in zip(runs[0], runs[2]))


def test_rolling_forcing_rejects_partial_chunks_and_switches():
    dit, p, ctx = _setup()
    pipe = StreamingPipeline(dit, p)
    with pytest.raises(ValueError, match="not a multiple of 3"):
        pipe.initialize_cache(ctx, height=H, width=W, num_frames=17)  # 5 latent frames
    with pytest.raises(ValueError, match="prompt switches"):
        pipe.initialize_cache(ctx, height=H, width=W, num_chunks=3, prompt_switches={1: ctx})


def test_each_pass_plan_is_one_upload_expanded_on_the_device(monkeypatch):
    """One host->device upload per planned pass (pinned and non-blocking on CUDA: no host sync), the
    token indices expanded on the device into buffers that keep their addresses."""
    from wan_core.rollout.schemes import rolling_forcing as rolling_window

    calls = []
    real = rolling_window.upload_to_device
    monkeypatch.setattr(
        rolling_window, "upload_to_device", lambda *a, **k: calls.append(a[0]) or real(*a, **k)
    )
    c = rolling_window.RollingWindowCache(1, 1, 4, 1, 8, block_frames=3, window_blocks=5)
    c.plan([c.scratch_start + j for j in range(6)], list(range(3, 9)), [0, 1, 2], [0, 1, 2])
    first = (c.write_index(6).data_ptr(), c.layer(0, 6).visible_index.data_ptr())
    assert len(calls) == 1
    assert c.write_index(6).tolist() == [
        s * 4 + j for s in range(c.scratch_start, c.scratch_start + 6) for j in range(4)
    ]
    assert c.layer(0, 6).visible_index.tolist() == [
        s * 4 + j for s in [0, 1, 2, *range(c.scratch_start, c.scratch_start + 6)] for j in range(4)
    ]
    assert c.chunk_positions(6).tolist() == list(range(3, 9)) and c.sink_positions().tolist() == [0, 1, 2]
    c.plan([c.scratch_start + j for j in range(6)], list(range(3, 9)), [0, 1, 2], [0, 1, 2])
    assert len(calls) == 2 and (c.write_index(6).data_ptr(), c.layer(0, 6).visible_index.data_ptr()) == first
