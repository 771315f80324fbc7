"""StreamingPipeline on tiny random DiTs: chunked rollout == block-causal reference, window / sink,
prompt switching, determinism, flat memory, interruption, progress. (Files end to end: test_rollout_e2e.py)

The reference runs the same few-step schedule with the *official* wan22 ``WanModel`` over the whole
sequence (clean context frames + the noisy chunk) with an explicit block-causal (+ window + sink)
self-attention mask written here -- no KV cache involved.
"""

import pytest
import torch
import torch.nn.functional as F
from official_ref import max_rel_err, official, randomize_, sdpa_flash_attention

from wan_core.dit import WanDiT, WanDiTConfig
from wan_core.rollout.pipeline import RolloutInterrupted, StreamingPipeline
from wan_core.rollout.presets import get_preset
from wan_core.rollout.prompt_switch import recache_span
from wan_core.rollout.schedulers import FewStepSchedule

TOL = 2e-4
TINY = dict(dim=32, ffn_dim=64, num_heads=2, num_layers=2)
H, W = 32, 48  # pixels -> latent 4 x 6 -> 2 x 3 = 6 tokens per latent frame


def tiny_pair(seed=0, model_type="t2v", in_dim=16, out_dim=16):
    M = official("model")
    ref = M.WanModel(model_type=model_type, in_dim=in_dim, out_dim=out_dim, **TINY).eval()
    randomize_(ref, seed, std=0.2)
    ours = WanDiT(WanDiTConfig(**TINY, in_dim=in_dim, out_dim=out_dim, model_type=model_type)).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours


def preset(n=2, sink=1, window=4, steps=(1000, 750, 500, 250), warp=True, shift=5.0):
    return get_preset("self-forcing-1.3b").with_overrides(
        frames_per_chunk=n,
        sink_frames=sink,
        window_frames=window,
        schedule=FewStepSchedule(steps=steps, shift=shift, warp=warp),
    )


def official_masked_v(monkeypatch, ref, x, t_frames, ctx, q_end, frames, sink, window, ft, sees=None):
    """Official WanModel over ``x [1, C, F, h, w]`` whose frame j is real frame ``frames[j]``, ending the
    chunk ``q_end[j]``; self-attention mask: key kf visible iff kf < q_end and (kf < sink or kf >= q_end - window).
    ``sees``: {frame: frames it attends to} overriding the rule for those query frames."""
    M = official("model")
    fr = torch.tensor(frames)
    qe = torch.tensor(q_end)
    allowed = (fr[None, :] < qe[:, None]) & ((fr[None, :] < sink) | (fr[None, :] >= qe[:, None] - window))
    for j, f in enumerate(frames):
        if sees is not None and f in sees:
            allowed[j] = torch.tensor([kf in sees[f] for kf in frames])
    tok = torch.arange(len(frames) * ft) // ft
    mask = allowed[tok][:, tok]
    L = mask.shape[0]

    def masked(q, k, v, q_lens=None, k_lens=None, **kw):
        if q.shape[1] == L and k.shape[1] == L:
            out = F.scaled_dot_product_attention(
                q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask
            )
            return out.transpose(1, 2)
        return sdpa_flash_attention(q, k, v, q_lens=q_lens, k_lens=k_lens)

    monkeypatch.setattr(M, "flash_attention", masked)
    with torch.no_grad():
        return torch.stack(ref(list(x), t_frames.repeat_interleave(ft, dim=1), list(ctx), seq_len=L))


def reference_rollout(monkeypatch, ref, pipe, ctx, num_chunks, switch=None, z0=None):
    """The few-step AR schedule computed with full-sequence masked passes. ``switch = (chunk, ctx_new)``:
    from that chunk on the prompt is ``ctx_new``; the frames LongLive re-caches at the switch (``recache_span``,
    no sink here) are re-encoded with it attending to each other (one bidirectional pass); earlier frames are gone."""
    p = pipe.preset
    sched = p.schedule
    n, sink, window = p.frames_per_chunk, p.sink_frames, p.window_frames
    ft = pipe.state.cache.frame_tokens
    clean = {}  # frame -> [1, C, 1, h, w]
    out = []
    kept_from = 0  # frames before this are not part of the context any more (switch)
    cur_ctx = ctx
    sees = {}
    for c in range(num_chunks):
        s, e = c * n, (c + 1) * n
        if switch is not None and c == switch[0]:
            cur_ctx = switch[1]
            first, count = recache_span(s, sink, window)
            assert sink == 0 or first == 0, "a kept old-prompt sink cannot be expressed in one pass"
            kept_from = first
            sees = {f: list(range(first, first + count)) for f in range(first, first + count)}
        ctx_frames = [f for f in range(s) if f >= kept_from or f < sink]
        noise = pipe.chunk_noise(c)
        x = noise[0]
        for k, (tk, sk) in enumerate(zip(sched.timesteps, sched.sigmas)):
            t_chunk = [tk] * n
            if z0 is not None and c == 0:  # TI2V: latent 0 is the clean image, its tokens get t = 0
                x = torch.cat([z0, x[:, :, 1:]], dim=2)
                t_chunk[0] = 0.0
            seq = torch.cat([clean[f] for f in ctx_frames] + [x], dim=2) if ctx_frames else x
            frames = ctx_frames + list(range(s, e))
            q_end = [((f // n) + 1) * n for f in frames]
            t = torch.tensor([[0.0] * len(ctx_frames) + t_chunk])
            v = official_masked_v(monkeypatch, ref, seq, t, cur_ctx, q_end, frames, sink, window, ft, sees)
            x0 = x - sk * v[:, :, -n:]
            if z0 is not None and c == 0:
                x0 = torch.cat([z0, x0[:, :, 1:]], dim=2)
            if k + 1 < len(sched.timesteps):
                x = (1 - sched.sigmas[k + 1]) * x0 + sched.sigmas[k + 1] * noise[k + 1]
        for j in range(n):
            clean[s + j] = x0[:, :, j : j + 1]
        out.append(x0)
    return out


@pytest.mark.parametrize("n,sink,window,chunks", [(2, 1, 4, 5), (3, 0, 6, 3), (1, 2, 3, 5)])
def test_chunked_rollout_equals_block_causal_reference(monkeypatch, n, sink, window, chunks):
    ref, dit = tiny_pair(seed=n)
    pipe = StreamingPipeline(dit, preset(n, sink, window))
    ctx = torch.randn(1, 9, 4096, generator=torch.Generator().manual_seed(1))
    pipe.initialize_cache(ctx, height=H, width=W, num_chunks=chunks, seed=7)
    got = [r.latents for r in pipe.stream()]
    want = reference_rollout(monkeypatch, ref, pipe, ctx, chunks)
    errs = [max_rel_err(a, b) for a, b in zip(got, want)]
    print(f"\nchunked vs block-causal reference (n={n}, sink={sink}, window={window}): max {max(errs):.2e}")
    assert max(errs) < TOL
    # the reference is sensitive: dropping the window (attend to everything) changes late chunks
    full = StreamingPipeline(dit, preset(n, sink, window=chunks * n))
    full.initialize_cache(ctx, height=H, width=W, num_chunks=chunks, seed=7)
    late = [r.latents for r in full.stream()][-1]
    if chunks * n > sink + window:
        assert max_rel_err(late, want[-1]) > 1e-3


def test_unwarped_causvid_schedule_matches_reference(monkeypatch):
    ref, dit = tiny_pair(seed=5)
    pipe = StreamingPipeline(dit, preset(2, 0, 4, steps=(1000, 757, 522), warp=False, shift=8.0))
    ctx = torch.randn(1, 9, 4096)
    pipe.initialize_cache(ctx, height=H, width=W, num_chunks=3, seed=1)
    got = [r.latents for r in pipe.stream()]
    want = reference_rollout(monkeypatch, ref, pipe, ctx, 3)
    assert max(max_rel_err(a, b) for a, b in zip(got, want)) < TOL


class _FixedLatentEncoder:
    """Test double for the VAE encoder: every image encodes to the given latent ``[1, C, 1, h, w]``."""

    def __init__(self, z):
        self.z = z

    def new_encode_cache(self):
        return None

    def encode_chunk(self, frames, cache):
        return self.z


def test_ti2v_clean_first_latent_with_t0_matches_reference(monkeypatch):
    """AR TI2V (48 channels): chunk 0's first latent is the clean image latent with timestep 0."""
    ref, dit = tiny_pair(seed=6, model_type="ti2v", in_dim=48, out_dim=48)
    p = preset(2, 0, 4).with_overrides(latent_channels=48, vae_stride=(4, 16, 16), image_stamp="clean_t0")
    z0 = torch.randn(1, 48, 1, 2, 4, generator=torch.Generator().manual_seed(9))
    pipe = StreamingPipeline(dit, p, vae=_FixedLatentEncoder(z0))
    ctx = torch.randn(1, 9, 4096)
    pipe.initialize_cache(ctx, torch.zeros(1, 3, 32, 64), height=32, width=64, num_chunks=3, seed=4)
    assert pipe.state.cache.frame_tokens == 2
    got = [r.latents for r in pipe.stream()]
    assert torch.equal(got[0][:, :, :1], z0)
    want = reference_rollout(monkeypatch, ref, pipe, ctx, 3, z0=z0)
    err = max(max_rel_err(a, b) for a, b in zip(got, want))
    print(f"\nAR TI2V (clean first latent, t=0) vs reference: {err:.2e}")
    assert err < TOL


def test_prompt_switch_reencodes_visible_window(monkeypatch):
    """Switch at chunk 3 (frames 0-5 done, window 4 => the cache holds frames 2-5, re-encoded together
    (LongLive); chunk 3 then sees frames 4, 5)."""
    ref, dit = tiny_pair(seed=11)
    pipe = StreamingPipeline(dit, preset(2, 0, 4))
    g = torch.Generator().manual_seed(2)
    ctx_a, ctx_b = torch.randn(1, 9, 4096, generator=g), torch.randn(1, 7, 4096, generator=g)
    pipe.initialize_cache(ctx_a, height=H, width=W, num_chunks=6, seed=3)
    base = [r.latents for r in pipe.stream()]
    pipe.initialize_cache(ctx_a, height=H, width=W, num_chunks=6, seed=3, prompt_switches={3: ctx_b})
    switched = [r.latents for r in pipe.stream()]
    assert all(torch.equal(a, b) for a, b in zip(base[:3], switched[:3]))  # before the switch: identical
    assert all(max_rel_err(a, b) > 1e-3 for a, b in zip(base[3:], switched[3:]))  # after: different
    want = reference_rollout(monkeypatch, ref, pipe, ctx_a, 6, switch=(3, ctx_b))
    err = max(max_rel_err(a, b) for a, b in zip(switched, want))
    print(f"\nprompt switch vs reference: {err:.2e}")
    assert err < TOL


@pytest.mark.parametrize("rope", ["absolute", "relative"])
def test_switch_with_sink_and_gap_keeps_the_sink_and_positions(rope):
    """Sink 2 + window 4, switch at chunk 5: the window frames 6..9 re-encoded, the sink 0,1 kept as is.
    Switching to the *same* prompt changes the video from the switch on: LongLive's re-cache pass is
    bidirectional over the cached frames, unlike the block-causal passes that first wrote them."""
    _, dit = tiny_pair(seed=4)
    ctx = torch.randn(1, 9, 4096)
    pipe = StreamingPipeline(dit, preset(2, 2, 4), rope=rope)
    pipe.initialize_cache(ctx, height=H, width=W, num_chunks=6, seed=0)
    base = [r.latents for r in pipe.stream()]
    pipe.initialize_cache(ctx, height=H, width=W, num_chunks=6, seed=0, prompt_switches={2: ctx})
    same = [r.latents for r in pipe.stream()]  # at chunk 2 frames 0-3 re-encoded in one pass
    assert all(torch.equal(a, b) for a, b in zip(base[:2], same[:2]))
    assert all(max_rel_err(a, b) > 1e-4 for a, b in zip(base[2:], same[2:]))
    pipe.initialize_cache(
        ctx, height=H, width=W, num_chunks=6, seed=0, prompt_switches={5: torch.randn(1, 5, 4096)}
    )
    sw = [r.latents for r in pipe.stream()]
    assert pipe.state.cache_offset == 0  # the re-cache keeps every frame in its slot
    positions = pipe.state.cache.chunk_positions(2).tolist()  # of the last chunk, frames 10, 11
    assert positions == [10, 11]  # relative RoPE too: window keys sit at their absolute frame, and
    if rope == "relative":  # the sinks right before the window (window-relative 0, 1 | 4, 5, all + 6)
        assert pipe.state.cache.sink_positions().tolist() == [6, 7]
    assert all(torch.equal(a, b) for a, b in zip(base[:5], sw[:5]))
    assert all(max_rel_err(a, b) > 1e-3 for a, b in zip(base[5:], sw[5:]))


def test_same_seed_same_video_different_seed_different():
    _, dit = tiny_pair(seed=2)
    pipe = StreamingPipeline(dit, preset(2, 1, 4))
    ctx = torch.randn(2, 9, 4096)  # batch of 2 prompts
    runs = []
    for seed in (5, 5, 6):
        pipe.initialize_cache(ctx, height=H, width=W, num_frames=17, seed=seed)
        runs.append(torch.cat([r.latents for r in pipe.stream()], dim=2))
    assert runs[0].shape == (2, 16, 5, 4, 6)  # 17 pixel frames -> 5 latent frames (chunks 2, 2, 1)
    assert torch.equal(runs[0], runs[1])
    assert max_rel_err(runs[0], runs[2]) > 0.1
    assert max_rel_err(runs[0][0], runs[0][1]) > 0.1  # batch elements get their own noise


def test_endless_stream_memory_is_flat_over_200_chunks():
    """1 token per latent frame (latent 2 x 2), 1 frame per chunk, sink 1 + window 4, relative RoPE."""
    dit = randomize_(WanDiT(WanDiTConfig(**{**TINY, "num_layers": 1})).eval(), 0, std=0.2)
    p = preset(1, 1, 4, steps=(1000,))
    pipe = StreamingPipeline(dit, p)
    pipe.initialize_cache(torch.randn(1, 4, 4096), height=16, width=16, seed=0)  # no length: endless
    assert pipe.num_chunks is None and pipe.state.cache.rope == "relative"
    sizes, ptrs = set(), set()
    for i, r in enumerate(pipe.stream()):
        assert torch.isfinite(r.latents).all()
        if i >= 5:  # after the window filled
            sizes.add(pipe.cache_nbytes())
            ptrs.add(tuple(t.data_ptr() for t in pipe.state.cache.tensors()))
            assert len(pipe.state.history) <= 1 + 4
        if i == 200:
            break
    assert len(sizes) == 1 and len(ptrs) == 1
    assert pipe.state.cache.chunk_end == 201


def test_progress_and_interrupt_hooks():
    _, dit = tiny_pair(seed=3)
    seen = []
    calls = {"n": 0}

    def interrupt():
        calls["n"] += 1
        return calls["n"] > 6  # stop during the second chunk

    pipe = StreamingPipeline(
        dit, preset(2, 1, 4), progress=lambda d, t, c: seen.append((d, t, c)), interrupt=interrupt
    )
    pipe.initialize_cache(torch.randn(1, 9, 4096), height=H, width=W, num_chunks=3, seed=0)
    with pytest.raises(RolloutInterrupted):
        list(pipe.stream())
    assert seen[:5] == [(1, 12, 0), (2, 12, 0), (3, 12, 0), (4, 12, 0), (5, 12, 1)]
    assert len(seen) == 6


def test_call_order_errors_and_auto_finalize():
    _, dit = tiny_pair(seed=3)
    pipe = StreamingPipeline(dit, preset(2, 1, 4))
    with pytest.raises(RuntimeError, match="initialize_cache"):
        pipe.generate(0)
    ctx = torch.randn(1, 9, 4096)
    pipe.initialize_cache(ctx, height=H, width=W, num_chunks=3, seed=0)
    with pytest.raises(ValueError, match="in order"):
        pipe.generate(1)
    a0 = pipe.generate(0).latents
    a1 = pipe.generate(1).latents  # finalize(0) done implicitly
    pipe.initialize_cache(ctx, height=H, width=W, num_chunks=3, seed=0)
    b = [r.latents for r in pipe.stream()]
    assert torch.equal(a0, b[0]) and torch.equal(a1, b[1])
    with pytest.raises(ValueError, match="multiple of 16x16"):
        pipe.initialize_cache(ctx, height=30, width=W, num_chunks=3)


def test_compile_failure_falls_back_to_eager_blocks(caplog):
    _, dit = tiny_pair(seed=8)
    ctx = torch.randn(1, 9, 4096)
    pipe = StreamingPipeline(dit, preset(2, 1, 4))
    pipe.initialize_cache(ctx, height=H, width=W, num_chunks=2, seed=0)
    want = [r.latents for r in pipe.stream()]

    DynamoError = type("BackendCompilerFailed", (RuntimeError,), {"__module__": "torch._dynamo.exc"})

    def broken(*a, **k):
        raise DynamoError("inductor: no compiler")

    for blk in dit.blocks:
        blk._compiled_call_impl = broken  # what nn.Module.compile() installs, failing
    pipe.compiled = True
    pipe.initialize_cache(ctx, height=H, width=W, num_chunks=2, seed=0)
    with caplog.at_level("WARNING", logger="wan_core.rollout"):
        got = [r.latents for r in pipe.stream()]
    assert not pipe.compiled and "continuing with eager blocks" in caplog.text
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    for blk in dit.blocks:  # a model error is not swallowed
        blk._compiled_call_impl = lambda *a, **k: (_ for _ in ()).throw(KeyError("model bug"))
    pipe.compiled = True
    pipe.initialize_cache(ctx, height=H, width=W, num_chunks=2, seed=0)
    with pytest.raises(KeyError):
        pipe.generate(0)


class _CountingEncoder:
    """Test double for a causal VAE encoder: latent frame j of the stream is ``base[:, :, j]`` (so a
    streamed encode and a whole-video encode agree by construction, and misaligned slices show)."""

    def __init__(self, base):
        self.base = base  # [1, C, T, h, w]

    def new_encode_cache(self):
        return {"next": 0}

    def encode_chunk(self, frames, cache):
        f = frames.shape[2]
        t = (f - 1) // 4 + 1 if cache["next"] == 0 else f // 4
        out = self.base[:, :, cache["next"] : cache["next"] + t]
        cache["next"] += t
        return out


def test_ar_i2v_concat_y_matches_reference(monkeypatch):
    """AR rollout of an I2V-layout DiT (noise ++ [mask ; image latent] = 36 channels): each chunk gets
    the y of its own latent frames -- same as the block-causal reference over the whole y."""
    from wan_core.rollout.conditioning import i2v_mask

    ref, dit = tiny_pair(seed=12, model_type="i2v", in_dim=36, out_dim=16)
    g = torch.Generator().manual_seed(3)
    base = torch.randn(1, 16, 6, 4, 6, generator=g)
    p = preset(2, 1, 4).with_overrides(image_stamp="concat_y")
    pipe = StreamingPipeline(dit, p, vae=_CountingEncoder(base))
    ctx = torch.randn(1, 9, 4096, generator=g)
    pipe.initialize_cache(ctx, torch.zeros(1, 3, H, W), height=H, width=W, num_chunks=3, seed=5)
    got = [r.latents for r in pipe.stream()]
    y = torch.cat([i2v_mask(6, 4, 6)[None], base], dim=1)  # [1, 20, 6, h, w]

    real_forward = ref.forward

    def with_y(x, t, context, seq_len, y=None):  # the reference sequence = frames [0, e): y[:, :, :e]
        e = x[0].shape[1]
        return real_forward(x, t, context, seq_len=seq_len, y=[y_full[0, :, :e]])

    y_full = y
    monkeypatch.setattr(ref, "forward", with_y)
    want = reference_rollout(monkeypatch, ref, pipe, ctx, 3)
    err = max(max_rel_err(a, b) for a, b in zip(got, want))
    print(f"\nAR I2V (concat y) vs reference: {err:.2e}")
    assert err < TOL
