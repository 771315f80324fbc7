"""The new families against their official inference on tiny random weights (fp32, the same noise fed
to both sides with ``TensorNoise``): final latents of every chunk within 1e-4 relative.

- LongLive 2.0 5B (``longlive2-5b``, scheme ``causal_unipc``): the official wan22 ``WanModel`` (TI2V, 48
  channels) over the whole sequence with an explicit block-causal sink + window mask, each chunk solved by
  the official ``FlowUniPCMultistepScheduler`` (the class LongLive 2.0 ships), text-only and with the first
  latent held clean at t = 0 (image-to-video).
- Reward Forcing (``reward-forcing-1.3b``, scheme ``ema_sink``): a token-buffer re-derivation of its
  official attention (``rollout_naive_families.OfficialEMASinkAttention``), EMA and copy evictions.
- Causal Forcing++ 2 / 1-step: the first chunk's own 4-step list, then 2 / 1 steps (official mask reference).
"""

import pytest
import torch
from official_ref import max_rel_err
from rollout_naive_families import OfficialEMASinkAttention, few_step_reference, official_unipc
from test_rollout_pipeline import TINY, _FixedLatentEncoder, official_masked_v, tiny_pair

from wan_core.dit import WanDiT, WanDiTConfig
from wan_core.rollout import StreamingPipeline, get_preset
from wan_core.rollout.noise import TensorNoise
from wan_core.rollout.schemes.unipc_solver import UniPCChunkSolver, UniPCPlan, UniPCSchedule

TOL = 1e-4


def _noise(shapes, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g) for s in shapes]


# -- the UniPC solver ------------------------------------------------------------------------------------
@pytest.mark.parametrize("steps", [1, 2, 3, 4, 6])
def test_unipc_solver_matches_official_scheduler(steps):
    """Our coefficients vs the official multistep UniPC on a nonlinear stand-in model."""
    Sched = official_unipc()
    ref = Sched(num_train_timesteps=1000, shift=1, use_dynamic_shifting=False)
    ref.set_timesteps(steps, device="cpu", shift=5.0)
    plan = UniPCPlan(UniPCSchedule(steps, 5.0))
    assert plan.timesteps == [float(t) for t in ref.timesteps.tolist()]
    assert plan.sigmas == [float(s) for s in ref.sigmas.tolist()]
    g = torch.Generator().manual_seed(steps)
    w = torch.randn(8, 8, generator=g) * 0.3
    model = lambda x, t: torch.tanh(x @ w) + t / 1000.0  # noqa: E731
    x_ref = x_ours = torch.randn(2, 8, generator=g)
    solver = UniPCChunkSolver(plan)
    for k, t in enumerate(ref.timesteps):
        x_ref = ref.step(model(x_ref, float(t)), t, x_ref, return_dict=False)[0]
        x_ours = solver.step(k, model(x_ours, plan.timesteps[k]), x_ours)
    assert max_rel_err(x_ours, x_ref) < 1e-6


# -- LongLive 2.0 5B -------------------------------------------------------------------------------------
def _longlive2_reference(monkeypatch, ref, noise, ctx, n, sink, window, num_chunks, ft, z0=None):
    """LongLive 2.0's ``_inference_inner`` with full-sequence masked passes of the official model."""
    Sched = official_unipc()
    clean, out = [], []
    for c in range(num_chunks):
        s = c * n
        sched = Sched(num_train_timesteps=1000, shift=1, use_dynamic_shifting=False)
        sched.set_timesteps(4, device="cpu", shift=5.0)
        x = noise[c][0]
        first = z0 is not None and c == 0
        for t in sched.timesteps:
            t_chunk = [float(t)] * n
            if first:  # _overwrite_i2v_context / _zero_i2v_context_timestep
                x = torch.cat([z0, x[:, :, 1:]], dim=2)
                t_chunk[0] = 0.0
            seq = torch.cat([*clean, x], dim=2)
            frames = list(range(s + n))
            q_end = [(f // n + 1) * n for f in frames]
            tt = torch.tensor([[0.0] * s + t_chunk])
            v = official_masked_v(monkeypatch, ref, seq, tt, ctx, q_end, frames, sink, window, ft)[:, :, -n:]
            x = sched.step(v, t, x, return_dict=False)[0]
            if first:
                x = torch.cat([z0, x[:, :, 1:]], dim=2)
        clean.append(x)
        out.append(x)
    return out


@pytest.mark.parametrize("with_image", [False, True])
def test_longlive2_5b_matches_official_unipc_rollout(monkeypatch, with_image):
    n, sink, window, chunks = 2, 1, 3, 4  # the window rolls from chunk 2 on
    ref, dit = tiny_pair(seed=11, model_type="ti2v", in_dim=48, out_dim=48)
    p = get_preset("longlive2-5b").with_overrides(frames_per_chunk=n, sink_frames=sink, window_frames=window)
    noise = _noise([(1, 1, 48, n, 2, 4)] * chunks, seed=3)
    ctx = torch.randn(1, 9, 4096, generator=torch.Generator().manual_seed(4))
    z0 = torch.randn(1, 48, 1, 2, 4, generator=torch.Generator().manual_seed(5)) if with_image else None
    enc = _FixedLatentEncoder(z0) if with_image else None
    pipe = StreamingPipeline(dit, p, vae=enc)
    image = torch.zeros(1, 3, 32, 64) if with_image else None
    pipe.start_video(ctx, image, height=32, width=64, num_chunks=chunks, noise=TensorNoise(noise))
    ft = pipe.state.cache.frame_tokens
    assert pipe.state.cache.rope == "absolute" and pipe.total_steps == 4 * chunks
    got = [r.latents for r in pipe.stream()]
    want = _longlive2_reference(monkeypatch, ref, noise, ctx, n, sink, window, chunks, ft, z0)
    errs = [max_rel_err(a, b) for a, b in zip(got, want)]
    print(f"\nLongLive 2.0 (image={with_image}) vs official UniPC rollout: max {max(errs):.2e}")
    assert max(errs) < TOL
    if with_image:
        assert torch.equal(got[0][:, :, :1], z0)
    # sensitive: without the window (every frame visible) the last chunk differs
    wide = StreamingPipeline(dit, p.with_overrides(window_frames=chunks * n), vae=enc)
    wide.start_video(ctx, image, height=32, width=64, num_chunks=chunks, noise=TensorNoise(noise))
    assert max_rel_err([r.latents for r in wide.stream()][-1], want[-1]) > 1e-3


def test_longlive2_5b_preset_is_published_settings():
    p = get_preset("longlive2-5b")
    assert (p.frames_per_chunk, p.sink_frames, p.window_frames) == (8, 8, 24)  # local_attn_size 32, sink 8
    assert (p.schedule.num_steps, p.schedule.shift, p.guidance_scale) == (4, 5.0, 1.0)
    assert p.schedule.timesteps == [999.0, 937.0, 833.0, 624.0]
    assert (p.height, p.width, p.fps, p.latent_channels, p.default_frames) == (704, 1280, 24, 48, 509)
    assert p.task == "ti2v" and p.image_stamp == "clean_t0" and p.scheme == "causal_unipc"
    assert (
        p.weight_set == "generator"
        and p.taehv.name == "taew2_2.pth"
        and p.vae.name == "wan2.2_vae.safetensors"
    )
    assert (p.dit.repo, p.dit.repo_path) == ("Efficient-Large-Model/LongLive-2.0-5B", "model_bf16.pt")


def test_longlive2_prompt_switch_keeps_the_cache():
    """A switch takes the new prompt's cross-attention and re-encodes nothing (official: per-chunk prompts
    only reset the cross-attention cache)."""
    dit = WanDiT(WanDiTConfig(**TINY, in_dim=48, out_dim=48, model_type="ti2v")).eval()
    p = get_preset("longlive2-5b").with_overrides(frames_per_chunk=2, sink_frames=1, window_frames=3)
    a, b = torch.randn(1, 9, 4096), torch.randn(1, 6, 4096)
    noise = TensorNoise(_noise([(1, 1, 48, 2, 2, 2)] * 3, seed=8))

    def run(switches):
        pipe = StreamingPipeline(dit, p)
        pipe.start_video(a, height=32, width=32, num_chunks=3, noise=noise, prompt_switches=switches)
        calls = []
        scheme = pipe.scheme
        orig = scheme.runner.call
        scheme.runner.call = lambda *x, **k: calls.append(1) or orig(*x, **k)
        return [r.latents for r in pipe.stream()], calls

    plain, _ = run({})
    switched, calls = run({2: b})
    assert torch.equal(plain[1], switched[1]) and not torch.equal(plain[2], switched[2])
    assert calls == []  # no re-cache pass


# -- Reward Forcing --------------------------------------------------------------------------------------
@pytest.mark.parametrize("window,alpha", [(4, 0.5), (3, 0.5), (4, 0.999)])
def test_reward_forcing_ema_sink_matches_official_attention(window, alpha):
    """window 4: 2 frames evicted per chunk = the sink's size -> EMA; window 3: 1 frame -> copied over
    the sink's first frame, then EMA once the chunks line up with the cache."""
    n, sink, chunks = 2, 2, 6
    torch.manual_seed(0)
    dit = tiny_pair(seed=12)[1]
    p = get_preset("reward-forcing-1.3b").with_overrides(
        frames_per_chunk=n, sink_frames=sink, window_frames=window, sink_ema=alpha
    )
    noise = _noise([(4, 1, 16, n, 4, 6)] * chunks, seed=6)
    ctx = torch.randn(1, 9, 4096, generator=torch.Generator().manual_seed(7))
    pipe = StreamingPipeline(dit, p)
    pipe.start_video(ctx, height=32, width=48, num_chunks=chunks, noise=TensorNoise(noise))
    assert pipe.state.cache.rope == "relative"
    got = [r.latents for r in pipe.stream()]
    official = OfficialEMASinkAttention(dit, sink, window, frame_tokens=6, alpha=alpha)
    cross = dit.prepare_context(ctx)
    want = few_step_reference(lambda x, t, s: official.run(x, t, cross, s), noise, p.schedule, n, chunks)
    errs = [max_rel_err(a, b) for a, b in zip(got, want)]
    print(f"\nReward Forcing (window {window}, alpha {alpha}) vs official attention: max {max(errs):.2e}")
    assert max(errs) < TOL
    if alpha == 0.5:  # sensitive: a fixed sink (no EMA) gives another video once the window rolls
        fixed = StreamingPipeline(dit, p.with_overrides(sink_ema=0.0), rope="relative")
        fixed.start_video(ctx, height=32, width=48, num_chunks=chunks, noise=TensorNoise(noise))
        assert max_rel_err([r.latents for r in fixed.stream()][-1], want[-1]) > 1e-3


def test_reward_forcing_preset_and_refusals():
    p = get_preset("reward-forcing-1.3b")
    assert (p.sink_frames, p.window_frames, p.frames_per_chunk, p.sink_ema) == (3, 6, 3, 0.999)
    assert (
        p.schedule.timesteps == get_preset("self-forcing-1.3b").schedule.timesteps and p.scheme == "ema_sink"
    )
    assert (p.dit.repo, p.dit.repo_path) == ("JaydenLu666/Reward-Forcing-T2V-1.3B", "rewardforcing.pt")
    dit = WanDiT(WanDiTConfig(**TINY)).eval()
    with pytest.raises(ValueError, match="relative RoPE"):
        StreamingPipeline(dit, p, rope="absolute").start_video(
            torch.randn(1, 5, 4096), height=32, width=48, num_chunks=2
        )
    with pytest.raises(ValueError, match="does not support prompt switches"):
        StreamingPipeline(dit, p).start_video(
            torch.randn(1, 5, 4096),
            height=32,
            width=48,
            num_chunks=3,
            prompt_switches={1: torch.randn(1, 5, 4096)},
        )
    with pytest.raises(ValueError, match="EMA sink needs"):
        p.with_overrides(sink_frames=0)


# -- Causal Forcing++ ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name,steps", [("causal-forcing-pp-2step-1.3b", 2), ("causal-forcing-pp-1step-1.3b", 1)]
)
def test_causal_forcing_pp_first_chunk_steps_match_reference(monkeypatch, name, steps):
    p = get_preset(name)
    assert len(p.schedule) == steps and len(p.first_chunk_schedule) == 4 and p.frames_per_chunk == 1
    n, chunks = 1, 5
    ref, dit = tiny_pair(seed=13)
    p = p.with_overrides(window_frames=3)  # rolls after 3 frames
    noise = _noise([(4, 1, 16, 1, 4, 6)] * chunks, seed=9)
    ctx = torch.randn(1, 9, 4096, generator=torch.Generator().manual_seed(10))
    pipe = StreamingPipeline(dit, p)
    pipe.start_video(ctx, height=32, width=48, num_chunks=chunks, noise=TensorNoise(noise))
    assert pipe.total_steps == 4 + steps * (chunks - 1)
    got = [r.latents for r in pipe.stream()]
    clean = []
    ft = 6

    def run(x, t, s):  # official WanModel over clean frames [0, s) + the pass, masked block-causal
        if t.abs().sum() == 0:  # the clean context pass writes K/V only; the mask reference recomputes
            clean.append(x)
            return x
        seq = torch.cat([*clean[:s], x], dim=2)
        frames = list(range(s + n))
        tt = torch.cat([torch.zeros(1, s), t], dim=1)
        return official_masked_v(monkeypatch, ref, seq, tt, ctx, [f + 1 for f in frames], frames, 0, 3, ft)[
            :, :, -n:
        ]

    want = few_step_reference(run, noise, p.schedule, n, chunks, first_chunk_schedule=p.first_chunk_schedule)
    errs = [max_rel_err(a, b) for a, b in zip(got, want)]
    print(f"\n{name} vs official mask reference: max {max(errs):.2e}")
    assert max(errs) < TOL
