"""LongLive prompt switching: the KV re-cache equals a naive recomputation (LongLive's one pass over the
last ``local_attn_size`` frames, sink slots protected once the window rolled), chunks before the switch
are untouched, and the preset matches LongLive's published interactive inference config."""

import pytest
import torch
from official_ref import max_rel_err, randomize_
from rollout_naive import cat_kv, frames_kv, naive_pass

from wan_core.dit import WanDiT, WanDiTConfig
from wan_core.rollout.pipeline import StreamingPipeline
from wan_core.rollout.presets import get_preset
from wan_core.rollout.prompt_switch import recache_span
from wan_core.rollout.schedulers import FewStepSchedule

TINY = dict(dim=32, ffn_dim=64, num_heads=2, num_layers=2)
H, W = 32, 48  # latent 4 x 6 -> 6 tokens per latent frame
FT = 6


def test_longlive_preset_matches_published_config():
    """NVlabs/LongLive @2462895 configs/longlive_interactive_inference.yaml: local_attn_size 12,
    sink_size 3, num_frame_per_block 3, steps 1000/750/500/250 warped, shift 5, context_noise 0."""
    p = get_preset("longlive-1.3b")
    assert (p.frames_per_chunk, p.sink_frames, p.sink_frames + p.window_frames) == (3, 3, 12)
    assert p.schedule.steps == (1000, 750, 500, 250) and p.schedule.warp and p.schedule.shift == 5.0
    assert p.schedule.context_noise == 0.0


def test_recache_span():
    assert recache_span(0, 3, 9) == (0, 0)
    assert recache_span(9, 3, 9) == (0, 9)  # nothing evicted yet: every frame, sink included
    assert recache_span(12, 3, 9) == (0, 12)
    assert recache_span(15, 3, 9) == (6, 9)  # window frames only; the sink keeps the old prompt's K/V


def _setup(seed=0):
    dit = randomize_(WanDiT(WanDiTConfig(**TINY)).eval(), seed, std=0.2)
    p = get_preset("longlive-1.3b").with_overrides(
        schedule=FewStepSchedule(steps=(1000, 750, 500, 250), shift=5.0, warp=True)
    )
    g = torch.Generator().manual_seed(seed + 1)
    return dit, p, torch.randn(1, 9, 4096, generator=g), torch.randn(1, 7, 4096, generator=g)


def _slot_kv(cache, layer, frames):
    idx = torch.cat([torch.arange(cache.slot_of(f) * FT, (cache.slot_of(f) + 1) * FT) for f in frames])
    return cache.k[layer][:, idx], cache.v[layer][:, idx]


@pytest.mark.parametrize("switch_chunk,rope", [(5, "absolute"), (3, "absolute"), (5, "relative")])
def test_recached_kv_equals_naive_recomputation(switch_chunk, rope):
    """Switch at chunk 5 (frame 15 > 12: window frames 6..14 re-encoded attending to the *old* sink, plus
    LongLive's 3 query-only frames 3..5 in the naive pass) and at chunk 3 (frame 9 <= 12: frames 0..8,
    sink included, in one bidirectional pass)."""
    dit, p, ctx_a, ctx_b = _setup()
    pipe = StreamingPipeline(dit, p, rope=rope)
    pipe.initialize_cache(ctx_a, height=H, width=W, num_chunks=switch_chunk + 1, seed=2)
    for i in range(switch_chunk):
        pipe.generate(i)
        pipe.finalize(i)
    st = pipe.state
    s = switch_chunk * 3
    clean = {f: st.history[f][0] for f in st.history}
    cache = st.cache
    old_sink = [tuple(t.clone() for t in _slot_kv(cache, i, range(3))) for i in range(2)]
    with torch.no_grad():
        pipe._apply_switch(switch_chunk, ctx_b)
    cross_b = dit.prepare_context(ctx_b)
    # positions: absolute frames, or (relative RoPE) sink 0..2 and window frames 3.. -- same differences
    pos = (lambda f: f) if rope == "absolute" or s <= 12 else (lambda f: f if f < 3 else 3 + f - (s - 9))
    if s > 12:
        # the sink's K/V as written by chunk 0's clean pass with the old prompt (block-causal: itself only)
        x_sink = torch.cat([clean[f] for f in range(3)], dim=2)
        _, sink_kv = naive_pass(dit, x_sink, torch.zeros(1, 3), dit.prepare_context(ctx_a), [0, 1, 2])
        # LongLive's pass: frames s-12 .. s-1 as queries; keys = sink + frames s-9 .. s-1
        frames = list(range(s - 12, s))
        x = torch.cat([clean[f] if f in clean else torch.zeros_like(clean[s - 1]) for f in frames], dim=2)
        mask = torch.ones(12, 3 + 12, dtype=torch.bool)
        mask[:, 3:6] = False  # frames s-12 .. s-10 are never keys (their K/V are not stored)
        _, kv = naive_pass(
            dit, x, torch.zeros(1, 12), cross_b, [pos(f) for f in frames], prefix=sink_kv, mask=mask
        )
        want = cat_kv(sink_kv, frames_kv(kv, range(3, 12), FT))
        check = list(range(3)) + frames[3:]
        for i in range(2):  # the sink slots were not touched
            assert torch.equal(old_sink[i][0], _slot_kv(cache, i, range(3))[0])
            assert torch.equal(old_sink[i][1], _slot_kv(cache, i, range(3))[1])
    else:
        frames = list(range(s))
        x = torch.cat([clean[f] for f in frames], dim=2)
        _, want = naive_pass(dit, x, torch.zeros(1, s), cross_b, frames)
        check = frames
        assert max_rel_err(old_sink[1][0], _slot_kv(cache, 1, range(3))[0]) > 1e-3  # sink re-encoded
    errs = []
    for i in range(2):
        k, v = _slot_kv(cache, i, check)
        errs.append(max_rel_err(v, want[i][1]))
        if rope == "absolute":  # relative mode stores keys un-roped
            errs.append(max_rel_err(k, want[i][0]))
    print(f"\nLongLive re-cache at frame {s} ({rope} RoPE) vs naive: max rel err {max(errs):.2e}")
    assert max(errs) < 1e-5


def test_switch_keeps_earlier_chunks_and_changes_later_ones():
    dit, p, ctx_a, ctx_b = _setup(seed=3)
    pipe = StreamingPipeline(dit, p)
    pipe.initialize_cache(ctx_a, height=H, width=W, num_chunks=7, seed=5)
    base = [r.latents for r in pipe.stream()]
    pipe.initialize_cache(ctx_a, height=H, width=W, num_chunks=7, seed=5, prompt_switches={5: ctx_b})
    sw = [r.latents for r in pipe.stream()]
    assert all(torch.equal(a, b) for a, b in zip(base[:5], sw[:5]))
    assert all(max_rel_err(a, b) > 1e-3 for a, b in zip(base[5:], sw[5:]))
    assert pipe.state.cache_offset == 0 and pipe.state.cache.chunk_end == 21
