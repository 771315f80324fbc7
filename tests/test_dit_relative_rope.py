"""Relative-RoPE streaming equals the window-relative reference (``rollout_naive.NaiveRelativeRope``: the
math of the DiT before keys were stored roped -- every visible key re-roped each pass at its position
relative to the window), over runs past the 1024-position table, sinks S in {0, 1, 2}, re-runs of a
chunk, LongLive span re-encodes, Krea rebuilds from frame 0 and restarts; fp32 tiny models."""

import re
import shutil

import pytest
import torch
from official_ref import max_rel_err, randomize_
from rollout_naive import NaiveRelativeRope

from wan_core.dit import WanDiT, WanDiTConfig

TINY = dict(dim=32, ffn_dim=64, num_heads=2, num_layers=2)
TOL = 1e-5


def tiny(seed=0):
    return randomize_(WanDiT(WanDiTConfig(**TINY)).eval(), seed, std=0.2)


class Pair:
    """The DiT on a relative-RoPE ``RollingKVCache`` and the reference, fed the same passes."""

    def __init__(self, model, sink, window, lat_hw=(2, 4), seed=0):
        self.m, self.lat_hw = model, lat_hw
        ft = (lat_hw[0] // 2) * (lat_hw[1] // 2)
        self.cache = model.new_kv_cache(1, ft, window_frames=window, sink_frames=sink, rope="relative")
        self.ref = NaiveRelativeRope(model, sink, window)
        g = torch.Generator().manual_seed(seed)
        self.g = g
        self.cross = model.prepare_context(torch.randn(1, 5, 4096, generator=g))
        self.errs = []

    def _inputs(self, n, t0):
        x = torch.randn(1, 16, n, *self.lat_hw, generator=self.g)
        t = t0 + 100 * torch.rand(1, n, generator=self.g)  # per-frame timesteps
        return x, t

    def chunk(self, s, n, t0=500.0):
        x, t = self._inputs(n, t0)
        with torch.no_grad():
            got = self.m.forward_chunk(x, t, self.cross, self.cache, s)
        self.errs.append(max_rel_err(got, self.ref.run(x, t, self.cross, s)))

    def span(self, s, n, t0=0.0):
        x, t = self._inputs(n, t0)
        self.cache.plan_span(s, n)
        with torch.no_grad():
            got = self.m.forward_planned(x, t, self.cross, self.cache)
        self.errs.append(max_rel_err(got, self.ref.run(x, t, self.cross, s)))

    def chunk_with_rerun(self, s, n):
        self.chunk(s, n, 800.0)  # a denoising step
        self.chunk(s, n, 0.0)  # the clean re-run of the same chunk: overwrites the same slots


@pytest.mark.parametrize("sink", [0, 1, 2])
def test_relative_rope_equals_window_relative_reference_past_1024_frames(sink):
    """1040 latent frames (130 chunks of 8, window 16): positions far past the 1024-row table."""
    p = Pair(tiny(seed=sink), sink, window=16)
    for s in range(0, 1040, 8):
        p.chunk_with_rerun(s, 8)
    assert p.cache.chunk_end == 1040 and len(p.errs) == 260
    print(f"\nS={sink}, W=16, 1040 frames: max rel err {max(p.errs):.2e} over {len(p.errs)} passes")
    assert max(p.errs) <= TOL


def _recache(p, end, sink, window):
    """LongLive's re-cache span before a prompt switch at ``end`` (``prompt_switch.recache_span``)."""
    if end <= sink + window:
        p.span(0, end)
    else:
        p.span(end - window, window)


@pytest.mark.parametrize("sink,n", [(0, 2), (1, 3), (2, 2)])
def test_relative_rope_equals_reference_through_spans_rebuilds_and_restarts(sink, n):
    window = 5
    cap = sink + window
    p = Pair(tiny(seed=10 + sink), sink, window, lat_hw=(4, 4), seed=sink)
    end = 0
    for _ in range(3):  # growing: every frame visible
        p.chunk_with_rerun(end, n)
        end += n
    _recache(p, end, sink, window)
    for _ in range(5):  # rolling
        p.chunk_with_rerun(end, n)
        end += n
    _recache(p, end, sink, window)  # window frames only (the sinks keep their K/V)
    for _ in range(2):
        p.chunk_with_rerun(end, n)
        end += n
    p.span(0, cap)  # Krea: rebuild the whole cache from frame 0 (a span longer than the window)
    end = cap
    for _ in range(3):
        p.chunk_with_rerun(end, n)
        end += n
    p.span(0, window - 1)  # a shorter rebuild
    end = window - 1
    for _ in range(4):
        p.chunk_with_rerun(end, n)
        end += n
    for s in range(0, 5 * n, n):  # a new video on the same cache
        p.chunk_with_rerun(s, n)
    print(f"\nS={sink}, W={window}, n={n}: max rel err {max(p.errs):.2e} over {len(p.errs)} passes")
    assert max(p.errs) <= TOL


def test_visible_window_keys_are_not_re_roped(monkeypatch):
    """Per layer and pass only the pass's own queries and keys (n frames each) and, in relative mode, the
    S sinks go through ``apply_rope`` -- however many frames are visible. Re-roping the visible window
    (the previous relative mode: S + W frames per layer) fails this."""
    import wan_core.dit.kv_cache as kv_module
    import wan_core.dit.model as model_module

    roped = []  # tokens per apply_rope call

    def counting(x, cos, sin, _apply=model_module.apply_rope):
        roped.append(x.shape[1])
        return _apply(x, cos, sin)

    monkeypatch.setattr(model_module, "apply_rope", counting)
    monkeypatch.setattr(kv_module, "apply_rope", counting)
    m = tiny(seed=5)
    cross = m.prepare_context(torch.randn(1, 5, 4096))
    ft, n, window = 4, 2, 8
    for rope, sink in (("relative", 2), ("relative", 0), ("absolute", 2)):
        cache = m.new_kv_cache(1, ft, window_frames=window, sink_frames=sink, rope=rope)
        for s in range(0, 30, n):
            for t in (800.0, 0.0):  # a denoising step and the re-run
                roped.clear()
                with torch.no_grad():
                    m.forward_chunk(torch.randn(1, 16, n, 4, 4), torch.full((1,), t), cross, cache, s)
                per_layer = [n * ft, n * ft] + ([sink * ft] if rope == "relative" and sink else [])
                assert roped == per_layer * len(m.blocks), (rope, sink, s, roped)
        assert cache.kv_frames == sink + window  # the window was full: S + W frames visible


@pytest.mark.skipif(shutil.which("g++") is None, reason="inductor on CPU needs a C++ compiler")
def test_inductor_attends_to_the_cache_in_place():
    """Compiled (inductor) blocks in relative mode: the attention reads the keys straight from the cache
    buffer. With the sinks copied into place by a slice ``copy_`` inductor built a fresh buffer of every
    visible key per layer and pass (the traffic the stored-roped keys save); ``index_copy_`` keeps it in
    place, as the absolute mode's write does. Output code checked: no buffer of the visible keys' shape."""
    import copy

    from torch._inductor.utils import run_and_get_code

    from wan_core.rollout.graphs import compile_blocks

    torch._dynamo.reset()
    m = tiny(seed=6)
    m.blocks = m.blocks[:1]
    c = copy.deepcopy(m)
    compile_blocks(c, dynamic=False)
    cross = m.prepare_context(torch.randn(1, 5, 4096))
    outs = []
    for model in (m, c):
        cache = model.new_kv_cache(1, 4, window_frames=4, sink_frames=2, rope="relative")
        for s in range(0, 8, 2):
            cache.plan_chunk(s, 2)
            x, t = torch.randn(1, 16, 2, 4, 4, generator=torch.Generator().manual_seed(s)), torch.zeros(1, 2)
            with torch.no_grad():
                if model is c and s == 6:
                    out, code = run_and_get_code(model.forward_planned, x, t, cross, cache)
                else:
                    out = (m if model is c else model).forward_planned(x, t, cross, cache)
            outs.append(out)
    try:
        assert cache.kv_tokens == 24  # sinks 2 + window 4 frames of 4 tokens
        assert max_rel_err(outs[-1], outs[3]) < TOL
        # no new buffer [B, heads, kv_tokens, head_dim] (a copy of the keys); the cache's own are views
        assert "(1, 2, 24, 16)" in "\n".join(code)
        assert not re.search(r"empty_strided\w*\(\(1, 2, 24, 16\)", "\n".join(code))
    finally:
        torch._dynamo.reset()


def test_rope_at_unbounded_positions_is_exact():
    """``WanRope.for_positions``: equal to the 1024-row table below 1024, and exact far past it (float64
    angles; a float32 angle would be off by ~0.03 rad at frame 10^6)."""
    from wan_core.dit.rope import WanRope

    rope = WanRope(128)
    pos = torch.tensor([0, 1, 7, 1023])
    for a, b in zip(rope.for_positions(pos, 2, 3), rope.for_frames(pos, 2, 3)):
        assert torch.equal(a, b)
    far = torch.tensor([10**6, 10**9 + 7])
    cos, sin = rope.for_positions(far, 1, 1)  # [1, 2, 1, 64]: temporal pairs first
    pt = rope.pairs[0]
    inv = 1.0 / torch.pow(10000.0, torch.arange(0, 2 * pt, 2, dtype=torch.float64) / (2 * pt))
    angles = far.double()[:, None] * inv
    assert (cos[0, :, 0, :pt].double() - angles.cos()).abs().max() < 1e-7
    assert (sin[0, :, 0, :pt].double() - angles.sin()).abs().max() < 1e-7
    assert (torch.cos(far.float()[:, None] * inv.float()).double() - angles.cos()).abs().max() > 1e-3
