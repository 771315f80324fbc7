"""WanDiT full pass vs the official wan22 WanModel and diffusers WanTransformer3DModel (fp32, tiny)."""

import pytest
import torch
from official_ref import max_rel_err, official, randomize_

from wan_core.dit import PRESETS, DualExpertDiT, WanDiT, WanDiTConfig
from wan_core.dit.keymap import diffusers_to_official

TOL = 1e-4
TINY = dict(dim=64, ffn_dim=128, num_heads=2, num_layers=2)


def _pair(model_type, in_dim, out_dim, seed=1):
    M = official("model")
    ref = M.WanModel(model_type=model_type, in_dim=in_dim, out_dim=out_dim, **TINY).eval()
    randomize_(ref, seed, std=0.2)
    cfg = WanDiTConfig(**TINY, in_dim=in_dim, out_dim=out_dim, model_type=model_type)
    ours = WanDiT(cfg).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours


def _official(ref, x, t, ctx, y=None):
    seq_len = x.shape[2] * (x.shape[3] // 2) * (x.shape[4] // 2)
    ys = None if y is None else list(y)
    with torch.no_grad():
        return torch.stack(ref(list(x), t, list(ctx), seq_len=seq_len, y=ys))


@torch.no_grad()
def test_t2v_matches_official_per_batch_and_per_frame_t():
    ref, ours = _pair("t2v", 16, 16)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 16, 3, 4, 6, generator=g)
    ctx = torch.randn(2, 20, 4096, generator=g)
    L = 3 * 2 * 3
    # t [B] (the official code only expands t [B] correctly for B=1: give it the per-token form)
    t = torch.tensor([500.0, 900.0])
    err = max_rel_err(ours(x, t, ctx), _official(ref, x, t[:, None].expand(2, L), ctx))
    print(f"\nparity t2v t[B]: {err:.2e}")
    assert err <= TOL
    err1 = max_rel_err(ours(x[:1], t[:1], ctx[:1]), _official(ref, x[:1], t[:1], ctx[:1]))
    print(f"parity t2v B=1 t[1] (official path unchanged): {err1:.2e}")
    assert err1 <= TOL
    # per-frame t [B, F] == official per-token t with each frame's value repeated over its tokens
    tf = torch.tensor([[999.0, 600.0, 10.0], [0.0, 250.0, 750.0]])
    err = max_rel_err(ours(x, tf, ctx), _official(ref, x, tf.repeat_interleave(6, dim=1), ctx))
    print(f"parity t2v t[B,F]: {err:.2e}")
    assert err <= TOL


@torch.no_grad()
def test_ti2v_per_token_t_matches_official():
    ref, ours = _pair("ti2v", 48, 48, seed=2)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 48, 3, 4, 6, generator=g)
    ctx = torch.randn(2, 30, 4096, generator=g)
    t = torch.rand(2, 18, generator=g) * 1000
    t[:, :6] = 0  # first-frame tokens clean, the rest denoising (TI2V image-to-video)
    err = max_rel_err(ours(x, t, ctx), _official(ref, x, t, ctx))
    print(f"\nparity ti2v per-token t: {err:.2e}")
    assert err <= TOL


@torch.no_grad()
def test_wan22_i2v_a14b_expert_with_y_matches_official():
    ref, ours = _pair("i2v", 36, 16, seed=3)
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(1, 16, 2, 4, 4, generator=g), torch.randn(1, 20, 2, 4, 4, generator=g)
    ctx = torch.randn(1, 7, 4096, generator=g)
    t = torch.tensor([875.0])
    err = max_rel_err(ours(x, t, ctx, y=y), _official(ref, x, t, ctx, y=y))
    print(f"\nparity wan2.2 i2v (y concat): {err:.2e}")
    assert err <= TOL
    with pytest.raises(ValueError, match="needs the conditioning latent y"):
        ours(x, t, ctx)


def _diffusers_pair(model_type, seed):
    from diffusers import WanTransformer3DModel

    ref = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=32,
        in_channels=36,
        out_channels=16,
        text_dim=4096,
        freq_dim=256,
        ffn_dim=128,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        eps=1e-6,
        image_dim=1280,
        added_kv_proj_dim=64,
        pos_embed_seq_len=514 if model_type == "flf2v" else None,
    ).eval()
    randomize_(ref, seed, std=0.2)
    cfg = WanDiTConfig(**TINY, in_dim=36, out_dim=16, model_type=model_type, image_cross_attn=True)
    ours = WanDiT(cfg).eval()
    # weights go through OUR diffusers -> official key mapping (strict: proves the mapping too)
    sd = {diffusers_to_official(k): v for k, v in ref.state_dict().items()}
    assert None not in sd
    ours.load_state_dict(sd, strict=True)
    return ref, ours


@pytest.mark.parametrize("model_type", ["i2v", "flf2v"])
@torch.no_grad()
def test_wan21_i2v_flf2v_with_clip_matches_diffusers(model_type):
    ref, ours = _diffusers_pair(model_type, seed=4)
    g = torch.Generator().manual_seed(3)
    n_img = 2 if model_type == "flf2v" else 1
    x, y = torch.randn(2, 16, 3, 4, 6, generator=g), torch.randn(2, 20, 3, 4, 6, generator=g)
    ctx = torch.randn(2, 20, 4096, generator=g)
    clip = torch.randn(2 * n_img, 257, 1280, generator=g)  # FLF2V: first and last image per sample
    t = torch.tensor([300.0, 950.0])
    ctx512 = torch.cat([ctx, ctx.new_zeros(2, 492, 4096)], 1)  # the diffusers pipeline pads to 512
    want = ref(torch.cat([x, y], 1), t, ctx512, encoder_hidden_states_image=clip, return_dict=False)[0]
    err = max_rel_err(ours(x, t, ctx, clip_fea=clip, y=y), want)
    print(f"\nparity wan2.1 {model_type} with CLIP vs diffusers: {err:.2e}")
    assert err <= TOL
    with pytest.raises(ValueError, match="CLIP image features"):
        ours(x, t, ctx, y=y)


@torch.no_grad()
def test_prepared_context_equals_raw_context_and_bad_shapes():
    _, ours = _pair("t2v", 16, 16, seed=5)
    x, ctx = torch.randn(1, 16, 2, 4, 4), torch.randn(1, 5, 4096)
    cross = ours.prepare_context(ctx)
    assert cross.text_k[0].shape == (1, 512, 2, 32) and cross.image_k is None
    assert torch.equal(ours(x, torch.tensor([10.0]), cross), ours(x, torch.tensor([10.0]), ctx))
    with pytest.raises(ValueError, match="timestep of shape"):
        ours(x, torch.zeros(1, 5), ctx)
    with pytest.raises(ValueError, match="channels"):
        ours(torch.randn(1, 8, 2, 4, 4), torch.tensor([1.0]), ctx)


def test_presets_and_dual_expert_boundary():
    assert PRESETS["wan2.1-t2v-1.3b"].head_dim == 128
    assert PRESETS["wan2.2-ti2v-5b"].out_dim == 48
    assert PRESETS["wan2.1-i2v-14b"].cond_dim == 20 and PRESETS["wan2.1-i2v-14b"].image_cross_attn
    assert not PRESETS["wan2.2-i2v-a14b"].image_cross_attn
    cfg = WanDiTConfig(**TINY)
    hi, lo = WanDiT(cfg), WanDiT(cfg)
    dual = DualExpertDiT(hi, lo, boundary=0.875)
    assert dual.select(1000.0) is hi and dual.select(875.0) is hi
    assert dual.select(874.9) is lo and dual.select(0.0) is lo
    with pytest.raises(ValueError, match="different configs"):
        DualExpertDiT(hi, WanDiT(WanDiTConfig(**{**TINY, "num_layers": 1})), 0.9)
