"""Audit: the many-step bidirectional sampler's classifier-free guidance and Euler steps equal a loop
written here from the model alone (v = v_uncond + g * (v_cond - v_uncond); x += (s_{k+1} - s_k) v),
with one expert and with the Wan2.2 A14B two experts (each expert its own guidance scale)."""

import torch
from official_ref import max_rel_err, randomize_

from wan_core.dit import DualExpertDiT, WanDiT, WanDiTConfig
from wan_core.rollout.pipeline import StreamingPipeline
from wan_core.rollout.presets import get_preset
from wan_core.rollout.schedulers import EulerSchedule

CFG = WanDiTConfig(dim=32, ffn_dim=32, num_heads=2, num_layers=1, text_dim=8)
H, W = 32, 48


@torch.no_grad()
def _reference(pipe, experts, boundary, scales, ctx, neg, sched):
    """Euler + CFG by hand. ``scales(t)`` -> guidance scale, ``experts`` picked by t >= boundary*1000."""
    x = pipe.chunk_noise(0)[0].clone()
    s = sched.sigmas
    for k, tk in enumerate(sched.timesteps):
        m = experts[0] if (boundary is None or tk >= boundary * 1000.0) else experts[1]
        t = torch.full((x.shape[0],), tk)
        c, u = m(x, t, ctx), m(x, t, neg)
        v = u + scales(tk) * (c - u)
        x = x + (s[k + 1] - s[k]) * v
    return x


def test_single_expert_cfg_equals_hand_written_loop():
    dit = randomize_(WanDiT(CFG).eval(), 1, std=0.2)
    sched = EulerSchedule(num_steps=4, shift=5.0)
    p = get_preset("wan2.1-t2v-1.3b").with_overrides(euler=sched, guidance_scale=4.0)
    pipe = StreamingPipeline(dit, p)
    g = torch.Generator().manual_seed(0)
    ctx, neg = torch.randn(1, 5, 8, generator=g), torch.randn(1, 3, 8, generator=g)
    pipe.initialize_cache(ctx, height=H, width=W, num_frames=5, seed=3, negative_prompt=neg)
    want = _reference(pipe, [dit], None, lambda t: 4.0, ctx, neg, sched)
    got = pipe.generate(0).latents
    err = max_rel_err(got, want)
    print(f"\nEuler CFG (g=4) vs hand loop: {err:.2e}")
    assert err < 1e-6
    # the guidance matters: scale 1 (no CFG) gives another video
    no_cfg = _reference(pipe, [dit], None, lambda t: 1.0, ctx, neg, sched)
    assert max_rel_err(got, no_cfg) > 1e-3


def test_dual_expert_cfg_uses_each_experts_scale():
    high, low = (randomize_(WanDiT(CFG).eval(), s, std=0.2) for s in (2, 3))
    sched = EulerSchedule(num_steps=6, shift=12.0)
    p = get_preset("wan2.2-t2v-a14b").with_overrides(euler=sched)
    assert (p.guidance_scale, p.guidance_scale_high, p.boundary) == (3.0, 4.0, 0.875)
    pipe = StreamingPipeline(DualExpertDiT(high, low, p.boundary), p)
    g = torch.Generator().manual_seed(1)
    ctx, neg = torch.randn(1, 5, 8, generator=g), torch.randn(1, 3, 8, generator=g)
    pipe.initialize_cache(ctx, height=H, width=W, num_frames=5, seed=4, negative_prompt=neg)
    ts = sched.timesteps
    assert any(t >= 875.0 for t in ts) and any(t < 875.0 for t in ts)  # both experts run

    def scales(t):
        return 4.0 if t >= 875.0 else 3.0

    want = _reference(pipe, [high, low], 0.875, scales, ctx, neg, sched)
    got = pipe.generate(0).latents
    err = max_rel_err(got, want)
    print(f"\nA14B Euler CFG (4.0 high / 3.0 low) vs hand loop: {err:.2e}")
    assert err < 1e-6
    swapped = _reference(pipe, [high, low], 0.875, lambda t: 7.0 - scales(t), ctx, neg, sched)
    assert max_rel_err(got, swapped) > 1e-4  # the per-expert scales are told apart


class _FixedLatentEncoder:
    """Test double for the VAE encoder: the start image encodes to ``z`` ``[1, C, 1, h, w]``."""

    def __init__(self, z):
        self.z = z

    def new_encode_cache(self):
        return None

    def encode_chunk(self, frames, cache):
        return self.z


@torch.no_grad()
def test_ti2v_bidirectional_first_latent_clean_with_t0_each_step():
    """Wan2.2 TI2V 5B image-to-video (whole video): every step sees latent 0 = the image latent with
    t = 0 on its tokens and the rest at t_k; the result keeps the image latent (official textimage2video)."""
    cfg = WanDiTConfig(dim=32, ffn_dim=32, num_heads=2, num_layers=1, text_dim=8, in_dim=48, out_dim=48)
    dit = randomize_(WanDiT(cfg).eval(), 4, std=0.2)
    sched = EulerSchedule(num_steps=3, shift=5.0)
    p = get_preset("wan2.2-ti2v-5b").with_overrides(euler=sched)
    z0 = torch.randn(1, 48, 1, 4, 4, generator=torch.Generator().manual_seed(5))
    pipe = StreamingPipeline(dit, p, vae=_FixedLatentEncoder(z0))
    g = torch.Generator().manual_seed(6)
    ctx, neg = torch.randn(1, 5, 8, generator=g), torch.randn(1, 3, 8, generator=g)
    pipe.initialize_cache(ctx, torch.zeros(1, 3, 64, 64), height=64, width=64, num_frames=9, seed=2,
                          negative_prompt=neg)  # fmt: skip
    x = pipe.chunk_noise(0)[0].clone()
    s, gs = sched.sigmas, p.guidance_scale
    for k, tk in enumerate(sched.timesteps):
        x[:, :, :1] = z0
        t = torch.full((1, x.shape[2]), tk)
        t[:, 0] = 0.0
        c, u = dit(x, t, ctx), dit(x, t, neg)
        x = x + (s[k + 1] - s[k]) * (u + gs * (c - u))
    x[:, :, :1] = z0
    got = pipe.generate(0).latents
    assert got.shape == (1, 48, 3, 4, 4) and torch.equal(got[:, :, :1], z0)
    err = max_rel_err(got, x)
    print(f"\nTI2V bidirectional (clean latent 0, t=0) vs hand loop: {err:.2e}")
    assert err < 1e-6
