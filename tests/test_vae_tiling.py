"""Spatial tiling: exact blending, streaming per tile, and the measured closeness to untiled decode.

Tolerance: tiling is an approximation (the decoder's convolutions and its middle attention block see
only the tile). On the tiny random Wan 2.1 VAE below (latent 6x10, tiles 6x6 with overlap 2, i.e. 2 tiles) the
tiled frames differ from the untiled ones by a mean absolute error of about 0.014 (outputs in
[-1, 1]; 0.05 with tiles of 6x5 without overlap); the test asserts mean abs err < 0.03 and that it is smaller than the error of tiling
without overlap. Blending is checked exactly with a spatially local decoder.
"""

import pytest
import torch
from official_ref import max_rel_err, randomize_

from wan_core.vae.taehv import TAEHV, TAEHVConfig
from wan_core.vae.tiling import TiledDecoder, tile_starts
from wan_core.vae.wan21 import WanVAE21, WanVAE21Config


class LocalDecoder:
    """A spatially local 'decoder' (nearest x4 upsampling of 3 channels, 1 frame per latent frame)."""

    spatial_scale = 4

    def new_decode_cache(self):
        return {"calls": 0}

    def decode_chunk(self, z, state):
        state["calls"] += 1
        return z[:, :3].repeat_interleave(4, dim=3).repeat_interleave(4, dim=4).tanh()


@pytest.mark.parametrize("tile, overlap", [(4, 1), (5, 2), (6, 3), (3, 0), (20, 4)])
def test_blending_is_exact_for_local_decoder(tile, overlap):
    z = torch.randn(2, 4, 3, 9, 13)
    dec = LocalDecoder()
    ref = dec.decode_chunk(z, dec.new_decode_cache())
    tiled = TiledDecoder(dec, tile_size=tile, tile_overlap=overlap)
    assert max_rel_err(tiled.decode_chunk(z), ref) < 1e-6
    for n in (9, 13):
        starts = tile_starts(n, tile, overlap)
        assert starts[0] == 0 and starts[-1] + min(tile, n) == n
        assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))


@pytest.fixture(scope="module")
def vae():
    return randomize_(WanVAE21(WanVAE21Config(dim=8, z_dim=16)), 11, std=0.2).eval()


def test_tiled_wan_vae_close_to_untiled_and_streams(vae):
    z = torch.randn(1, 16, 3, 6, 10, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = vae.decode(z, latents_per_step=None)
    whole = TiledDecoder(vae, tile_size=(6, 6), tile_overlap=2).decode_chunk(z)
    no_overlap = TiledDecoder(vae, tile_size=(6, 5), tile_overlap=0).decode_chunk(z)
    err = (whole - ref).abs().mean().item()
    err_no_overlap = (no_overlap - ref).abs().mean().item()
    print(
        f"tiled vs untiled: mean abs err {err:.4f} (no overlap {err_no_overlap:.4f}), max {(whole - ref).abs().max():.3f}"
    )
    assert whole.shape == ref.shape
    assert err < 0.03 and err < err_no_overlap
    # one tile covering everything is the untiled decode
    assert max_rel_err(TiledDecoder(vae, tile_size=(6, 10), tile_overlap=2).decode_chunk(z), ref) < 1e-6
    # streaming: each tile keeps its own cache
    dec = vae.stream_decoder(tile_size=(6, 6), tile_overlap=2)
    assert isinstance(dec, TiledDecoder)
    streamed = torch.cat([dec(z[:, :, i : i + 2]) for i in range(0, 3, 2)], dim=2)
    assert max_rel_err(streamed, whole) <= 1e-5
    with pytest.raises(ValueError, match="latent size changed"):
        dec.decode_chunk(z[:, :, :1, :4])


def test_tiled_taehv_streams():
    tae = randomize_(TAEHV(TAEHVConfig(encoder_width=6, decoder_widths=(12, 8, 4, 4))), 2, std=0.2).eval()
    z = torch.randn(1, 16, 4, 6, 7)
    whole = TiledDecoder(tae, tile_size=4, tile_overlap=1, clamp=False).decode_chunk(z)
    dec = tae.stream_decoder(tile_size=4, tile_overlap=1, clamp=False)
    streamed = torch.cat([dec.decode_chunk(z[:, :, i : i + 3]) for i in range(0, 4, 3)], dim=2)
    assert streamed.shape == whole.shape == (1, 3, 13, 48, 56)
    assert max_rel_err(streamed, whole) <= 1e-5
