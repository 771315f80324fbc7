"""Streaming encode / decode API shared by the Wan VAE 2.1 and 2.2 (`WanVAE21`, `WanVAE22`).

Usage (latents are **normalized**, DiT space, ``[B, z, T, h, w]``; frames ``[B, 3, F, H, W]`` in [-1, 1])::

    vae = load_vae("wan_2.1_vae.safetensors", dtype=torch.bfloat16, device="cuda")
    # whole video
    z = vae.encode(video)                       # F = 1 + 4k frames -> T = 1 + k latent frames
    video = vae.decode(z)                       # T latent frames -> 1 + 4 (T - 1) frames
    # streaming decode, once per DiT chunk
    cache = vae.new_decode_state()              # CausalConvCache: one per video (and tile)
    for z_chunk in chunks:                      # any split of the latent frames
        frames = vae.decode_chunk(z_chunk, cache)   # first chunk of T: 1 + 4 (T-1) frames, later 4 T
    # or: dec = vae.stream_decoder(); frames = dec.decode_chunk(z_chunk); dec.reset()
    # streaming encode (first chunk 1 + 4k frames, later chunks 4k frames)
    cache = vae.new_encode_cache()
    z0 = vae.encode_chunk(first_frames, cache); z1 = vae.encode_chunk(next_frames, cache)

Decoding a video in any split of its latent frames gives the same frames as decoding it whole
(float rounding only; the tests check <= 1e-5 in fp32), because every temporal layer keeps its
history in the explicit :class:`CausalConvCache`. Peak working memory is bounded by the chunk: pass
``latents_per_step`` (decode) to bound it by fewer latent frames, e.g. 1 like the official loop.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from .causal_conv import CausalConv3d, CausalConvCache, assign_cache_slots
from .latent_norm import to_normalized, to_raw
from .stream import StreamDecoder

__all__ = ["WanCausalVAE"]


class WanCausalVAE(nn.Module):
    """Common part of the Wan VAEs: ``encoder``, ``conv1`` (mu/logvar 1x1), ``conv2`` (1x1), ``decoder``.

    Subclasses build ``encoder`` / ``decoder`` (``forward(x, cache)``) and set ``z_dim``,
    ``patch_size``, ``spatial_scale`` (8 or 16), ``temporal_scale`` (4).
    """

    z_dim: int
    patch_size: int = 1
    spatial_scale: int = 8
    temporal_scale: int = 4
    name: str = "Wan VAE"
    decoder_kind = "wan_vae"

    def _finish_init(self) -> None:
        self.conv1 = CausalConv3d(self.z_dim * 2, self.z_dim * 2, 1)
        self.conv2 = CausalConv3d(self.z_dim, self.z_dim, 1)
        self.encoder_slots = assign_cache_slots(self.encoder)
        self.decoder_slots = assign_cache_slots(self.decoder)

    # -- caches ---------------------------------------------------------------------------------
    def new_decode_state(self) -> CausalConvCache:
        return CausalConvCache(self.decoder_slots)

    def new_decode_cache(self) -> CausalConvCache:
        """Deprecated name of :meth:`new_decode_state` (the name every decoder shares)."""
        warnings.warn(
            "WanCausalVAE.new_decode_cache() is deprecated; call new_decode_state()",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.new_decode_state()

    def new_encode_cache(self) -> CausalConvCache:
        return CausalConvCache(self.encoder_slots)

    def stream_decoder(
        self,
        latents_per_step: int | None = None,
        clamp: bool = True,
        tile_size: int | tuple[int, int] | None = None,
        tile_overlap: int = 8,
    ):
        """A decode stream holding its own cache: ``frames = dec.decode_chunk(z_chunk)``; ``dec.reset()``.

        ``tile_size`` (latent pixels) switches to spatial tiling with ``tile_overlap`` blending
        (:class:`~wan_core.vae.tiling.TiledDecoder`, one cache per tile).
        """
        if tile_size is not None:
            from .tiling import TiledDecoder

            return TiledDecoder(self, tile_size, tile_overlap, latents_per_step=latents_per_step, clamp=clamp)
        return StreamDecoder(self, latents_per_step=latents_per_step, clamp=clamp)

    @property
    def dtype(self) -> torch.dtype:
        return self.conv2.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.conv2.weight.device

    # -- patchify (2.2 packs 2x2 pixels into channels) -------------------------------------------
    def _patchify(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        if p == 1:
            return x
        b, c, f, h, w = x.shape
        x = x.view(b, c, f, h // p, p, w // p, p)  # c, f, h, q, w, r
        return x.permute(0, 1, 6, 4, 2, 3, 5).reshape(b, c * p * p, f, h // p, w // p)  # (c r q)

    def _unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        if p == 1:
            return x
        b, cpp, f, h, w = x.shape
        c = cpp // (p * p)
        x = x.view(b, c, p, p, f, h, w)  # c, r, q, f, h, w
        return x.permute(0, 1, 4, 5, 3, 6, 2).reshape(b, c, f, h * p, w * p)

    # -- checks ---------------------------------------------------------------------------------
    def _check_latents(self, z: torch.Tensor) -> None:
        if z.ndim != 5:
            raise ValueError(
                f"{self.name}: latents must be [B, C, T, H, W], got shape {tuple(z.shape)}. "
                "Add the batch dimension with z[None]."
            )
        if z.shape[1] != self.z_dim:
            raise ValueError(
                f"{self.name}: latents have {z.shape[1]} channels, this VAE takes {self.z_dim}. "
                + (
                    "16-channel latents belong to the Wan 2.1 VAE (Wan2.1, Wan2.2 A14B), "
                    "48-channel latents to the Wan 2.2 VAE (TI2V 5B): load the matching VAE."
                )
            )
        if z.shape[2] < 1:
            raise ValueError(f"{self.name}: latents have no frames (shape {tuple(z.shape)}).")

    def _check_frames(self, x: torch.Tensor, cache: CausalConvCache) -> None:
        s, ts = self.spatial_scale, self.temporal_scale
        if x.ndim != 5 or x.shape[1] != 3:
            raise ValueError(
                f"{self.name}: video must be [B, 3, F, H, W] in [-1, 1], got shape {tuple(x.shape)}."
            )
        h, w = x.shape[3:]
        if h % s or w % s:
            raise ValueError(
                f"{self.name}: frame size {h}x{w} is not a multiple of {s}; resize or crop the video "
                f"to e.g. {h // s * s}x{w // s * s}."
            )
        f = x.shape[2]
        if cache.first_chunk and (f - 1) % ts:
            raise ValueError(
                f"{self.name}: the first chunk must have 1 + {ts}k frames (1, 5, 9, ...), got {f}; "
                f"trim to {1 + (f - 1) // ts * ts} frames or pad with the last frame."
            )
        if not cache.first_chunk and (f == 0 or f % ts):
            raise ValueError(
                f"{self.name}: chunks after the first must have a multiple of {ts} frames, got {f}."
            )

    # -- streaming ------------------------------------------------------------------------------
    @torch.no_grad()
    def decode_chunk(
        self,
        latents: torch.Tensor,
        cache: CausalConvCache,
        normalized: bool = True,
        latents_per_step: int | None = None,
        clamp: bool = True,
    ) -> torch.Tensor:
        """Decode the next latent frames of a stream.

        latents: ``[B, z, T, h, w]`` (normalized unless ``normalized=False``).
        Returns ``[B, 3, F, h * s, w * s]`` in [-1, 1] (clamped unless ``clamp=False``) with
        ``F = 1 + 4 (T - 1)`` for the first chunk of the stream and ``4 T`` afterwards.
        """
        self._check_latents(latents)
        z = latents.to(self.dtype)
        z = to_raw(z) if normalized else z
        x = self.conv2(z)
        step = latents.shape[2] if latents_per_step is None else max(1, int(latents_per_step))
        outs = []
        for i in range(0, x.shape[2], step):
            out = self.decoder(x[:, :, i : i + step], cache)  # [B, 3 p^2, f, h', w']
            cache.first_chunk = False
            outs.append(self._unpatchify(out))
        out = torch.cat(outs, dim=2) if len(outs) > 1 else outs[0]
        cache.frames_in += latents.shape[2]
        cache.frames_out += out.shape[2]
        return out.clamp(-1, 1) if clamp else out

    def encode_chunk(
        self, frames: torch.Tensor, cache: CausalConvCache, normalized: bool = True
    ) -> torch.Tensor:
        """Encode the next frames of a stream to latents (the mean, no sampling).

        frames: ``[B, 3, F, H, W]`` in [-1, 1]; the first chunk has ``1 + 4k`` frames, later chunks
        ``4k``. Returns ``[B, z, T, H / s, W / s]`` with ``T = 1 + k`` (first) or ``k`` (later),
        normalized unless ``normalized=False``.
        """
        self._check_frames(frames, cache)
        x = self._patchify(frames.to(self.dtype))
        out = self.encoder(x, cache)  # [B, 2z, T, h, w]
        cache.first_chunk = False
        mu = self.conv1(out)[:, : self.z_dim]
        cache.frames_in += frames.shape[2]
        cache.frames_out += mu.shape[2]
        return to_normalized(mu) if normalized else mu

    # -- whole video ----------------------------------------------------------------------------
    @torch.no_grad()
    def decode(
        self, latents: torch.Tensor, normalized: bool = True, latents_per_step: int | None = 1, clamp=True
    ):
        """Decode a whole latent video ``[B, z, T, h, w]`` -> ``[B, 3, 1 + 4 (T - 1), H, W]`` in [-1, 1].

        ``latents_per_step=1`` (default) bounds memory by one latent frame like the official loop;
        ``None`` decodes all frames in one pass.
        """
        return self.decode_chunk(
            latents,
            self.new_decode_state(),
            normalized=normalized,
            latents_per_step=latents_per_step,
            clamp=clamp,
        )

    @torch.no_grad()
    def encode(
        self, video: torch.Tensor, normalized: bool = True, frames_per_step: int | None = 4
    ) -> torch.Tensor:
        """Encode a whole video ``[B, 3, 1 + 4k, H, W]`` in [-1, 1] -> latents ``[B, z, 1 + k, h, w]``.

        ``frames_per_step`` (a multiple of 4, or None for one pass) bounds the working memory.
        """
        cache = self.new_encode_cache()
        if frames_per_step is None:
            return self.encode_chunk(video, cache, normalized)
        self._check_frames(video, cache)
        step = int(frames_per_step)
        if step <= 0 or step % self.temporal_scale:
            raise ValueError(f"frames_per_step must be a multiple of {self.temporal_scale}, got {step}")
        outs = [self.encode_chunk(video[:, :, :1], cache, normalized)]
        for i in range(1, video.shape[2], step):
            outs.append(self.encode_chunk(video[:, :, i : i + step], cache, normalized))
        return torch.cat(outs, dim=2)
