"""Krea realtime KV recompute == a naive reference (one full pass per denoising step over [context, chunk]
with the explicit mask: context block-causal in blocks of n from its first frame, chunk sees everything;
RoPE positions 0 .. C+n-1; the anchor re-encoded from the right decoded pixel frame), and != the
Self-Forcing-style rollout with a clean context pass."""

import pytest
import torch
import torch.nn.functional as F
from official_ref import max_rel_err, randomize_
from rollout_naive import naive_pass

from wan_core.dit import WanDiT, WanDiTConfig
from wan_core.rollout.pipeline import StreamingPipeline
from wan_core.rollout.presets import get_preset

TINY = dict(dim=32, ffn_dim=64, num_heads=2, num_layers=2)
H, W = 32, 48  # latent 4 x 6 -> 6 tokens per latent frame


class _Stream:
    """Test decoder: latent frame j -> 4 pixel frames (1 for the video's first latent), all different."""

    def __init__(self):
        self.first = True

    def decode_chunk(self, lat):  # [B, 16, n, h, w] -> [B, 3, f, 8h, 8w]
        px = torch.tanh(lat[:, :3]).repeat_interleave(8, -1).repeat_interleave(8, -2)
        out = []
        for j in range(lat.shape[2]):
            reps = 1 if (self.first and j == 0) else 4
            out += [px[:, :, j : j + 1] * (1 + 0.1 * r) for r in range(reps)]
        self.first = False
        return torch.cat(out, dim=2)


class _Decoder:
    def stream_decoder(self):
        return _Stream()


class _Encoder:
    """Test VAE encoder: a pixel frame [B, 3, 1, H, W] -> a latent [B, 16, 1, H/8, W/8]."""

    def new_encode_cache(self):
        return None

    def encode_chunk(self, px, cache):
        p = F.avg_pool2d(px[:, :, 0], 8)  # [B, 3, h, w]
        z = torch.cat([p * (1 + 0.2 * c) for c in range(6)], dim=1)[:, :16]
        return z[:, :, None]


def _setup(anchor="reencode", seed=0):
    dit = randomize_(WanDiT(WanDiTConfig(**TINY)).eval(), seed, std=0.2)
    p = get_preset("krea-realtime-14b").with_overrides(kv_recompute_anchor=anchor)
    ctx = torch.randn(1, 9, 4096, generator=torch.Generator().manual_seed(seed + 1))
    return dit, p, ctx


def krea_reference(dit, pipe, ctx, num_chunks):
    p = pipe.preset
    n, K, sched = p.frames_per_chunk, p.kv_recompute_frames, p.schedule
    cross = dit.prepare_context(ctx)
    enc, stream = _Encoder(), _Stream()
    latents, pixels, outs = {}, [], []
    for c in range(num_chunks):
        s = c * n
        if s == 0:
            context = None
        else:
            if p.kv_recompute_anchor == "first_frame" or (c - 1) * n < K:
                anchor = latents[0]
            else:
                anchor = enc.encode_chunk(pixels[-(1 + 4 * (K - 1))], None)
            context = torch.cat([anchor] + [latents[f] for f in range(max(1, s - K + 1), s)], dim=2)
        C = 0 if context is None else context.shape[2]
        L = C + n
        mask = torch.ones(L, L, dtype=torch.bool)
        for q in range(C):  # Krea's recompute mask: kv < end of q's block (blocks of n from context frame 0)
            mask[q] = torch.arange(L) < min((q // n + 1) * n, C)
        noise = pipe.chunk_noise(c)
        x = noise[0]
        for k, (tk, sk) in enumerate(zip(sched.timesteps, sched.sigmas)):
            seq = x if context is None else torch.cat([context, x], dim=2)
            t = torch.tensor([[0.0] * C + [tk] * n])
            v, _ = naive_pass(dit, seq, t, cross, list(range(L)), mask=mask)
            x0 = x - sk * v[:, :, C:]
            if k + 1 < len(sched.timesteps):
                x = (1 - sched.sigmas[k + 1]) * x0 + sched.sigmas[k + 1] * noise[k + 1]
        for j in range(n):
            latents[s + j] = x0[:, :, j : j + 1]
        px = stream.decode_chunk(x0)
        pixels += [px[:, :, j : j + 1] for j in range(px.shape[2])]
        outs.append(x0)
    return outs


def test_krea_preset_matches_published_server():
    p = get_preset("krea-realtime-14b")
    assert (p.kv_recompute_frames, p.kv_recompute_anchor, p.frames_per_chunk) == (3, "reencode", 3)
    assert p.window_frames == 6 and p.sink_frames == 0  # cache of kv_cache_num_frames + num_frame_per_block
    assert p.schedule.timesteps == pytest.approx([1000.0, 937.5, 2500 / 3, 625.0, 0.0])
    # t = 0 step: sigma of the nearest table entry (linspace(1, 0, 1001)[999] = 0.001, shifted by 5)
    assert p.schedule.sigmas[-1] == pytest.approx(5 * 0.001 / (1 + 4 * 0.001))
    assert "vae" in [f.role for f in p.files("taehv")]  # the anchor needs the VAE encoder


@pytest.mark.parametrize("anchor,k", [("reencode", 3), ("first_frame", 3), ("reencode", 6)])
def test_kv_recompute_equals_naive_reference(anchor, k):
    """K = 6: the context (anchor + 5 latents) is recomputed in two block-causal blocks of 3."""
    dit, p, ctx = _setup(anchor)
    p = p.with_overrides(kv_recompute_frames=k, window_frames=k + 3)
    pipe = StreamingPipeline(dit, p, vae=_Encoder(), decoder=_Decoder())
    pipe.initialize_cache(ctx, height=H, width=W, num_chunks=5, seed=3)
    got, sizes = [], []
    for r in pipe.stream():
        got.append(r.latents)
        sizes.append(pipe.cache_nbytes())
    assert len(set(sizes[2:])) == 1  # bounded by K, not by the video length
    want = krea_reference(dit, pipe, ctx, 5)
    errs = [max_rel_err(a, b) for a, b in zip(got, want)]
    print(f"\nKrea KV recompute ({anchor}, K={k}) vs naive reference: max rel err {max(errs):.2e}")
    assert max(errs) < 1e-5
    st = pipe.state.recompute
    assert sorted(st.latents) == [0, *range(16 - k, 15)]
    assert len(st.pixels) == (1 + 4 * (k - 1) if anchor == "reencode" else 0)
    assert pipe.state.cache.kv_frames == k + 3  # K context + the chunk: bounded


def test_kv_recompute_differs_from_clean_pass_rollout_and_between_anchors():
    dit, p, ctx = _setup(seed=4)
    runs = {}
    for name, preset in {
        "recompute": p,
        "first_frame": p.with_overrides(kv_recompute_anchor="first_frame"),
        "clean_pass": p.with_overrides(kv_recompute_frames=0, window_frames=21),
    }.items():
        pipe = StreamingPipeline(dit, preset, vae=_Encoder(), decoder=_Decoder())
        pipe.initialize_cache(ctx, height=H, width=W, num_chunks=4, seed=1)
        runs[name] = [r.latents for r in pipe.stream()]
    a, b, c = runs["recompute"], runs["first_frame"], runs["clean_pass"]
    assert torch.equal(a[0], c[0])  # chunk 0 has no context in either scheme
    assert max_rel_err(a[1], c[1]) < 1e-6  # chunk 1: context = chunk 0 at positions 0..2 in both
    assert all(max_rel_err(x, y) > 1e-3 for x, y in zip(a[2:], c[2:]))
    assert all(torch.equal(x, y) for x, y in zip(a[:2], b[:2]))  # anchor = frame 0 while (i-1)*3 < 3
    assert max_rel_err(a[2], b[2]) > 1e-3


def test_reencode_anchor_needs_decoder_and_encoder():
    dit, p, ctx = _setup()
    with pytest.raises(ValueError, match="kv_recompute_anchor='first_frame'"):
        StreamingPipeline(dit, p).initialize_cache(ctx, height=H, width=W, num_chunks=2)
    with pytest.raises(ValueError, match="window_frames >= kv_recompute_frames"):
        p.with_overrides(window_frames=5)
