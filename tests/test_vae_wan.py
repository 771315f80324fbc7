"""Wan VAE 2.1 / 2.2: parity with the official ``wan22`` code, streaming == whole, bad input."""

import copy

import pytest
import torch
from official_ref import max_rel_err, official, randomize_

from wan_core.vae import latent_norm
from wan_core.vae.wan21 import WanVAE21, WanVAE21Config

# tiny configs: real latent channel counts (so the real mean/std apply), tiny widths
TINY = {
    "2.1": dict(dim=8, z=16),
    "2.2": dict(dim=8, dec_dim=8, z=48),
}


def _official_pair(version: str, seed: int = 0):
    """(official WanVAE_, ours) with the same random weights (RMS gammas included)."""
    t = TINY[version]
    if version == "2.1":
        ref = official("vae2_1").WanVAE_(
            dim=t["dim"], z_dim=t["z"], dim_mult=[1, 2, 4, 4], num_res_blocks=2,
            attn_scales=[], temperal_downsample=[False, True, True],
        )  # fmt: skip
        ours = WanVAE21(WanVAE21Config(dim=t["dim"], z_dim=t["z"]))
    else:
        from wan_core.vae.wan22 import WanVAE22, WanVAE22Config

        ref = official("vae2_2").WanVAE_(
            dim=t["dim"], dec_dim=t["dec_dim"], z_dim=t["z"], dim_mult=[1, 2, 4, 4], num_res_blocks=2,
            attn_scales=[], temperal_downsample=[False, True, True],
        )  # fmt: skip
        ours = WanVAE22(WanVAE22Config(dim=t["dim"], dec_dim=t["dec_dim"], z_dim=t["z"]))
    randomize_(ref, seed, std=0.2)
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref.eval(), ours.eval()


def _scale(version):
    mean, std = latent_norm.latent_stats(TINY[version]["z"])
    return [torch.tensor(mean), 1.0 / torch.tensor(std)]


@pytest.fixture(scope="module", params=["2.1", "2.2"])
def pair(request):
    return request.param, *_official_pair(request.param)


def test_latent_stats_match_official(monkeypatch):
    """The mean/std constants equal the official wrappers' (built with a stub model, no file)."""
    for name, cls, mean, std in (
        ("vae2_1", "Wan2_1_VAE", latent_norm.WAN21_MEAN, latent_norm.WAN21_STD),
        ("vae2_2", "Wan2_2_VAE", latent_norm.WAN22_MEAN, latent_norm.WAN22_STD),
    ):
        mod = official(name)
        monkeypatch.setattr(mod, "_video_vae", lambda *a, **k: torch.nn.Identity())
        wrapper = getattr(mod, cls)(device="cpu")
        ref_mean, ref_inv_std = wrapper.scale
        assert torch.equal(torch.tensor(mean), ref_mean)
        assert torch.allclose(torch.tensor(std), 1.0 / ref_inv_std, rtol=1e-6)
        assert len(mean) == len(std) == (16 if name == "vae2_1" else 48)
    z = torch.randn(2, 16, 3, 2, 2)
    assert torch.allclose(latent_norm.to_normalized(latent_norm.to_raw(z)), z, atol=1e-6)
    with pytest.raises(ValueError, match="16 channels"):
        latent_norm.to_raw(torch.randn(1, 12, 1, 2, 2))


def test_encode_decode_parity_with_official(pair):
    version, ref, ours = pair
    g = torch.Generator().manual_seed(1)
    s = ours.spatial_scale
    x = torch.rand(1, 3, 9, 2 * s, 2 * s, generator=g) * 2 - 1
    z = torch.randn(1, TINY[version]["z"], 4, 2, 2, generator=g)
    with torch.no_grad():
        z_ref, z_ours = ref.encode(x, _scale(version)), ours.encode(x)
        x_ref, x_ours = ref.decode(z, _scale(version)), ours.decode(z, clamp=False)
    assert z_ours.shape == z_ref.shape == (1, TINY[version]["z"], 3, 2, 2)
    assert x_ours.shape == x_ref.shape == (1, 3, 13, 2 * s, 2 * s)
    enc_err, dec_err = max_rel_err(z_ours, z_ref), max_rel_err(x_ours, x_ref)
    print(f"VAE {version} parity: encode max rel err {enc_err:.2e}, decode {dec_err:.2e}")
    assert enc_err <= 1e-4 and dec_err <= 1e-4
    # the default clamps like the official wrapper
    assert torch.equal(ours.decode(z), x_ours.clamp(-1, 1))


@pytest.mark.parametrize("chunk", [1, 3, 7])
def test_streaming_decode_equals_whole(pair, chunk):
    version, _, ours = pair
    g = torch.Generator().manual_seed(2)
    z = torch.randn(1, TINY[version]["z"], 9, 2, 2, generator=g)
    with torch.no_grad():
        whole = ours.decode(z, clamp=False, latents_per_step=None)
        cache = ours.new_decode_cache()
        parts = []
        for i in range(0, z.shape[2], chunk):
            out = ours.decode_chunk(z[:, :, i : i + chunk], cache, clamp=False)
            n = z[:, :, i : i + chunk].shape[2]
            assert out.shape[2] == (1 + 4 * (n - 1) if i == 0 else 4 * n)
            parts.append(out)
    streamed = torch.cat(parts, dim=2)
    assert streamed.shape == whole.shape == (1, 3, 33, 2 * ours.spatial_scale, 2 * ours.spatial_scale)
    assert max_rel_err(streamed, whole) <= 1e-5
    # the StreamDecoder wrapper holds its own cache and resets
    dec = ours.stream_decoder()
    for _ in range(2):
        got = torch.cat([dec(z[:, :, i : i + chunk]) for i in range(0, 9, chunk)], dim=2)
        assert max_rel_err(got, whole.clamp(-1, 1)) <= 1e-5
        dec.reset()


def test_streaming_encode_equals_whole(pair):
    version, _, ours = pair
    s = ours.spatial_scale
    g = torch.Generator().manual_seed(3)
    x = torch.rand(1, 3, 17, s, 2 * s, generator=g) * 2 - 1
    with torch.no_grad():
        whole = ours.encode(x, frames_per_step=None)
        by4 = ours.encode(x)  # 1, 4, 4, ... like the official loop
        cache = ours.new_encode_cache()
        parts = [ours.encode_chunk(x[:, :, :9], cache), ours.encode_chunk(x[:, :, 9:13], cache)]
        parts.append(ours.encode_chunk(x[:, :, 13:], cache))
    assert [p.shape[2] for p in parts] == [3, 1, 1]
    assert whole.shape == (1, TINY[version]["z"], 5, 1, 2)
    assert max_rel_err(torch.cat(parts, 2), whole) <= 1e-5
    assert max_rel_err(by4, whole) <= 1e-5


def test_bad_input_errors(pair):
    version, _, ours = pair
    z_dim, s = TINY[version]["z"], ours.spatial_scale
    with pytest.raises(ValueError, match=f"takes {z_dim}"):
        ours.decode(torch.randn(1, z_dim + 1, 2, 2, 2))
    with pytest.raises(ValueError, match=r"\[B, C, T, H, W\]"):
        ours.decode(torch.randn(z_dim, 2, 2, 2))
    with pytest.raises(ValueError, match=f"not a multiple of {s}"):
        ours.encode(torch.zeros(1, 3, 1, s + 2, s))
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        ours.encode(torch.zeros(1, 3, 4, s, s))
    cache = ours.new_encode_cache()
    ours.encode_chunk(torch.zeros(1, 3, 1, s, s), cache)
    with pytest.raises(ValueError, match="multiple of 4"):
        ours.encode_chunk(torch.zeros(1, 3, 3, s, s), cache)
    with pytest.raises(ValueError, match=r"\[B, 3, F, H, W\]"):
        ours.encode(torch.zeros(1, 4, 1, s, s))


def test_cache_buffers_stay_in_place(pair):
    """After the first chunk, equal-sized chunks update the cache in place (stable addresses)."""
    version, _, ours = pair
    z = torch.randn(1, TINY[version]["z"], 7, 2, 2)
    cache = ours.new_decode_cache()
    ours.decode_chunk(z[:, :, :1], cache)
    ours.decode_chunk(z[:, :, 1:4], cache)
    ptrs = [t.data_ptr() for t in cache.history]
    assert len(ptrs) == len(cache) > 0
    ours.decode_chunk(z[:, :, 4:7], cache)
    assert [t.data_ptr() for t in cache.history] == ptrs
    assert cache.frames_in == 7 and cache.frames_out == 1 + 4 * 6


def test_batch_items_are_independent(pair):
    version, _, ours = pair
    z = torch.randn(2, TINY[version]["z"], 2, 2, 2)
    both = ours.decode(z, clamp=False)
    assert max_rel_err(both[1:], ours.decode(z[1:], clamp=False)) <= 1e-5
    x = torch.rand(2, 3, 5, ours.spatial_scale, ours.spatial_scale) * 2 - 1
    assert max_rel_err(ours.encode(x)[:1], ours.encode(x[:1])) <= 1e-5


@pytest.mark.parametrize("version", ["2.1", "2.2", "taew2_1", "taew2_2_super"])
def test_real_size_chunk_shapes_on_meta(version):
    """Real widths at 480x832 on the meta device: first chunk 1 + 4(T-1) frames, later 4T, encode 1 + k."""
    from wan_core.vae.taehv import TAEHV, TAEHV_PRESETS
    from wan_core.vae.wan22 import WanVAE22

    with torch.device("meta"):
        model = {"2.1": WanVAE21, "2.2": WanVAE22}.get(version, lambda: TAEHV(TAEHV_PRESETS[version]))()
    c, s = (16, 8) if version in ("2.1", "taew2_1") else (48, 16)
    z = torch.empty(1, c, 3, 480 // s, 832 // s, device="meta")
    is_tae = isinstance(model, TAEHV)
    state = model.new_decode_state() if is_tae else model.new_decode_cache()
    assert model.decode_chunk(z, state).shape == (1, 3, 9, 480, 832)
    assert model.decode_chunk(z, state).shape == (1, 3, 12, 480, 832)
    x = torch.empty(1, 3, 9, 480, 832, device="meta")
    assert model.encode(x).shape == (1, c, 3, 480 // s, 832 // s)


def test_bf16_decode_runs_and_tracks_fp32(pair):
    version, _, ours = pair
    z = torch.randn(1, TINY[version]["z"], 2, 2, 2, generator=torch.Generator().manual_seed(4))
    ref = ours.decode(z)
    bf16 = copy.deepcopy(ours).to(torch.bfloat16)
    out = bf16.decode(z)
    assert out.dtype == torch.bfloat16 and out.shape == ref.shape
    assert (out.float() - ref).abs().mean() < 0.05
