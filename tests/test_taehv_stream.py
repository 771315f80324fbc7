"""TAEHV streaming (chunks of 1, 3, 7 latent frames) equals whole-video decode / encode; raw-latent variants."""

import pytest
import torch
from official_ref import max_rel_err, randomize_

from wan_core.vae import latent_norm
from wan_core.vae.taehv import TAEHV, TAEHVConfig

TINY = dict(encoder_width=6, decoder_widths=(12, 8, 4, 4))


@pytest.fixture(scope="module", params=[(16, 1), (48, 2)], ids=["taew2_1", "taew2_2"])
def tae(request):
    ch, patch = request.param
    return randomize_(
        TAEHV(TAEHVConfig(latent_channels=ch, patch_size=patch, **TINY)), seed=ch, std=0.2
    ).eval()


@pytest.mark.parametrize("chunk", [1, 3, 7])
def test_streaming_decode_equals_whole(tae, chunk):
    z = torch.randn(1, tae.latent_channels, 9, 2, 3, generator=torch.Generator().manual_seed(0))
    whole = tae.decode(z, clamp=False)
    assert whole.shape == (1, 3, 33, 16 * tae.config.patch_size, 24 * tae.config.patch_size)
    state = tae.new_decode_state()
    parts = [tae.decode_chunk(z[:, :, i : i + chunk], state, clamp=False) for i in range(0, 9, chunk)]
    sizes = [z[:, :, i : i + chunk].shape[2] for i in range(0, 9, chunk)]
    assert [p.shape[2] for p in parts] == [4 * sizes[0] - 3] + [4 * n for n in sizes[1:]]
    assert max_rel_err(torch.cat(parts, 2), whole) <= 1e-5
    assert max_rel_err(tae.decode(z, clamp=False, latents_per_step=chunk), whole) <= 1e-5
    dec = tae.stream_decoder(clamp=False)
    for _ in range(2):
        got = torch.cat([dec(z[:, :, i : i + chunk]) for i in range(0, 9, chunk)], 2)
        assert max_rel_err(got, whole) <= 1e-5
        dec.reset()
    # O(1) state: one frame per MemBlock, nothing else, whatever the video length
    mem = [m for m in state.memory if m is not None]
    assert len(mem) == 9 and all(m.ndim == 4 and m.shape[0] == 1 for m in mem)


def test_streaming_encode_equals_whole(tae):
    s = tae.spatial_scale
    x = torch.rand(1, 3, 17, s, 2 * s, generator=torch.Generator().manual_seed(1)) * 2 - 1
    whole = tae.encode(x)
    assert whole.shape == (1, tae.latent_channels, 5, 1, 2)  # 17 frames -> pad to 20 -> 5
    for splits in ([1, 4, 4, 4, 4], [3, 7, 7], [17]):
        state, parts, i = tae.new_encode_state(), [], 0
        for n in splits:
            parts.append(tae.encode_chunk(x[:, :, i : i + n], state))
            i += n
        parts.append(tae.encode_flush(state))
        assert max_rel_err(torch.cat(parts, 2), whole) <= 1e-5


def test_raw_latent_variant_converts_inside():
    """lighttaew2_x consume raw latents: callers still pass normalized ones."""
    base = randomize_(TAEHV(TAEHVConfig(**TINY)), seed=3, std=0.2).eval()
    light = TAEHV(TAEHVConfig(raw_latents=True, **TINY)).eval()
    light.load_state_dict(base.state_dict())
    z = torch.randn(1, 16, 3, 2, 2)
    assert max_rel_err(light.decode(z, clamp=False), base.decode(latent_norm.to_raw(z), clamp=False)) < 1e-6
    x = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    assert max_rel_err(light.encode(x), latent_norm.to_normalized(base.encode(x))) < 1e-5


def test_bad_input(tae):
    with pytest.raises(ValueError, match=f"decodes {tae.latent_channels}"):
        tae.decode(torch.randn(1, tae.latent_channels + 1, 2, 2, 2))
    with pytest.raises(ValueError, match="not a multiple"):
        tae.encode(torch.zeros(1, 3, 1, tae.spatial_scale + 4, tae.spatial_scale))
    with pytest.raises(ValueError, match=r"\[B, C, T, H, W\]"):
        tae.decode(torch.randn(tae.latent_channels, 2, 2, 2))
    with pytest.raises(ValueError, match="no frames"):
        tae.encode_flush(tae.new_encode_state())
    with pytest.raises(ValueError, match="no frames"):
        tae.decode(torch.randn(1, tae.latent_channels, 0, 2, 2))


def test_batch_items_are_independent(tae):
    z = torch.randn(2, tae.latent_channels, 3, 2, 2)
    assert max_rel_err(tae.decode(z, clamp=False)[1:], tae.decode(z[1:], clamp=False)) <= 1e-5
    x = torch.rand(2, 3, 5, tae.spatial_scale, tae.spatial_scale) * 2 - 1
    assert max_rel_err(tae.encode(x)[1:], tae.encode(x[1:])) <= 1e-5
