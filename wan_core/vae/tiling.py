"""Spatially tiled streaming decode with overlap blending (720p and above on small GPUs).

The latent frame is cut into overlapping tiles of ``tile_size`` latent pixels (``tile_overlap``
shared with each neighbour); every tile is decoded by the wrapped decoder with **its own** streaming
cache, so the causal temporal state stays per tile and chunks can still be decoded one after
another. The decoded tiles are blended with linear ramps over the overlap (weights > 0 everywhere,
normalized), so seams fade instead of jumping.

Tiling is an approximation: the Wan VAE decoder's middle attention block and its convolutions see the
whole frame in an untiled decode but only the tile here. Peak working memory is that of one tile
(plus the output chunk). ``tests/test_vae_tiling.py`` documents the measured error on a tiny random
model; the blending itself is exact (a spatially local decoder tiles to the untiled result).

    dec = TiledDecoder(vae, tile_size=40, tile_overlap=8)     # latent pixels (x8 / x16 in pixels)
    for z_chunk in chunks:
        frames = dec.decode_chunk(z_chunk)                    # [B, 3, F, H, W] in [-1, 1]
    dec.reset()                                               # new video

Works with any decoder of the streaming interface (``stream.py``): ``WanVAE21`` / ``WanVAE22``
(``CausalConvCache``) and ``TAEHV`` (``TAEHVState``).
"""

from __future__ import annotations

import torch

from .stream import new_decode_state

__all__ = ["TiledDecoder", "tile_starts"]


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``length`` with at least ``overlap`` overlap."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


def _ramp(n: int, overlap_px: int, ramp_start: bool, ramp_end: bool, device, dtype) -> torch.Tensor:
    """1-D blend weight of a tile of ``n`` pixels: linear ramps over the overlaps with neighbours."""
    w = torch.ones(n, device=device, dtype=dtype)
    k = min(overlap_px, n)
    if k > 0:
        ramp = (torch.arange(k, device=device, dtype=dtype) + 0.5) / k
        if ramp_start:
            w[:k] = torch.minimum(w[:k], ramp)
        if ramp_end:
            w[n - k :] = torch.minimum(w[n - k :], ramp.flip(0))
    return w


class TiledDecoder:
    """Streaming decoder that decodes overlapping spatial tiles, each with its own cache."""

    def __init__(self, vae, tile_size: int | tuple[int, int] = 40, tile_overlap: int = 8, **decode_kwargs):
        th, tw = (tile_size, tile_size) if isinstance(tile_size, int) else tile_size
        if not (0 <= tile_overlap < min(th, tw)):
            raise ValueError(
                f"tile_overlap must be in [0, tile_size), got {tile_overlap} for tiles {th}x{tw}"
            )
        self.vae = vae
        self.tile = (th, tw)
        self.overlap = tile_overlap
        self.scale = getattr(vae, "decoder_spatial_scale", None) or vae.spatial_scale
        self.decode_kwargs = decode_kwargs
        self.states: dict[tuple[int, int], object] = {}
        self.grid: tuple[int, int] | None = None

    def reset(self) -> None:
        self.states.clear()
        self.grid = None

    @torch.no_grad()
    def decode_chunk(self, latents: torch.Tensor) -> torch.Tensor:
        """latents ``[B, C, T, h, w]`` (normalized) -> frames ``[B, 3, F, h*s, w*s]``."""
        h, w = latents.shape[3:]
        if self.grid is not None and self.grid != (h, w):
            raise ValueError(
                f"latent size changed from {self.grid} to {(h, w)} within a stream; call reset()."
            )
        self.grid = (h, w)
        th, tw = min(self.tile[0], h), min(self.tile[1], w)
        ys, xs = tile_starts(h, th, self.overlap), tile_starts(w, tw, self.overlap)
        s = self.scale
        out = weight = None
        for iy, y0 in enumerate(ys):
            for ix, x0 in enumerate(xs):
                key = (y0, x0)
                if key not in self.states:
                    self.states[key] = new_decode_state(self.vae)
                tile = latents[:, :, :, y0 : y0 + th, x0 : x0 + tw]
                frames = self.vae.decode_chunk(
                    tile, self.states[key], **self.decode_kwargs
                )  # [B, 3, F, th*s, tw*s]
                if out is None:
                    b, c, f = frames.shape[:3]
                    out = frames.new_zeros(b, c, f, h * s, w * s, dtype=torch.float32)
                    weight = frames.new_zeros(1, 1, 1, h * s, w * s, dtype=torch.float32)
                o = self.overlap * s
                wy = _ramp(th * s, o, iy > 0, iy < len(ys) - 1, frames.device, torch.float32)
                wx = _ramp(tw * s, o, ix > 0, ix < len(xs) - 1, frames.device, torch.float32)
                wt = wy[:, None] * wx[None, :]
                sl = (..., slice(y0 * s, (y0 + th) * s), slice(x0 * s, (x0 + tw) * s))
                out[sl] += frames.float() * wt
                weight[sl] += wt
        return (out / weight).to(frames.dtype)

    __call__ = decode_chunk
