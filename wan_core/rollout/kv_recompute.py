"""Krea realtime's KV recomputation: the self-attention cache is rebuilt before every chunk.

Source: krea-ai/realtime-video @acf4b7b, ``release_server.py`` (``GenerationSession.recompute_kv_cache``,
``get_clean_context_frames``, ``generate_block_internal``; ``configs/self_forcing_server_14b.yaml``
``do_kv_recomp: true``; ``GenerateParams`` defaults ``kv_cache_num_frames 3``, ``keep_first_frame false``)
and ``wan/modules/causal_model.py`` (masked pass with a KV cache). Before chunk ``i`` (first latent frame
``s = i * n``, ``n`` frames per chunk, ``K = kv_cache_num_frames``):

1. context = one *anchor* frame + the last ``K - 1`` clean latent frames ``[max(1, s - K + 1), s)``
   (``C = min(s, K)`` frames). The anchor is latent frame 0 while ``(i - 1) * n < K`` (or always with
   ``keep_first_frame``); afterwards it is the VAE encoding, as a single image, of the oldest of the last
   ``1 + 4 (K - 1)`` decoded pixel frames (the frame just before the ones the other context latents cover),
   so the context always starts like a video's first latent frame.
2. the cache is emptied and refilled by one DiT pass over the C context frames at timestep 0 with RoPE
   positions ``0 .. C-1`` and the block-causal mask in blocks of n frames counted from the context's
   first frame (``_prepare_blockwise_causal_attn_mask``, no local window). With the same inputs and t for
   every block, that pass equals running the blocks one after another through the cache, which is what
   ``recompute_context`` does.
3. the chunk is denoised at RoPE positions ``C .. C+n-1``, attending to the C context frames and itself
   (cache of ``K + n`` frames). No clean context pass follows: the next chunk rebuilds the cache anyway.

Not reproduced: Krea pads the recompute pass to a multiple of 128 tokens for flex attention; with a
partial last block (only when ``C`` is not a multiple of n -- never for the published K = n = 3) its
queries would also see the zero padding keys.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import torch

__all__ = ["KVRecomputeState", "context_frames", "recompute_context", "uses_frame_zero"]

ANCHORS = ("reencode", "first_frame")


def uses_frame_zero(chunk: int, frames_per_chunk: int, context_frames_k: int, anchor: str) -> bool:
    """Whether chunk ``chunk``'s context starts with latent frame 0 (else with a re-encoded pixel frame)."""
    return anchor == "first_frame" or (chunk - 1) * frames_per_chunk < context_frames_k


def context_frames(start: int, context_frames_k: int) -> list[int]:
    """Latent frames of the context after the anchor: ``[max(1, start - K + 1), start)``."""
    return list(range(max(1, start - context_frames_k + 1), start))


class KVRecomputeState:
    """What the recompute keeps between chunks: latent frame 0, the last ``K - 1`` clean latents and the
    last ``1 + 4 (K - 1)`` decoded pixel frames (bounded by K, not by the video length)."""

    def __init__(self, context_frames_k: int, anchor: str, temporal_scale: int = 4):
        if context_frames_k < 2:
            raise ValueError(f"KV recompute needs at least 2 context frames, got {context_frames_k}")
        if anchor not in ANCHORS:
            raise ValueError(f"kv_recompute_anchor must be one of {ANCHORS}, got {anchor!r}")
        self.k = context_frames_k
        self.anchor = anchor
        self.latents: dict[int, torch.Tensor] = {}  # frame -> [B, C, 1, h, w]
        self.pixels: deque[torch.Tensor] = deque(maxlen=1 + temporal_scale * (context_frames_k - 1))

    def remember_latents(self, start: int, x0: torch.Tensor) -> None:  # x0 [B, C, n, h, w]
        end = start + x0.shape[2]
        for j in range(x0.shape[2]):
            self.latents[start + j] = x0[:, :, j : j + 1]
        keep_from = end - (self.k - 1)
        for f in [f for f in self.latents if 0 < f < keep_from]:
            del self.latents[f]

    def remember_pixels(self, frames: torch.Tensor | None) -> None:  # [B, 3, f, H, W]
        if frames is None or self.anchor != "reencode":
            return
        for j in range(frames.shape[2]):
            self.pixels.append(frames[:, :, j : j + 1])

    def nbytes(self) -> int:
        kept = [*self.latents.values(), *self.pixels]
        return sum(t.numel() * t.element_size() for t in kept)

    def context(
        self,
        chunk: int,
        start: int,
        frames_per_chunk: int,
        encode: Callable[[torch.Tensor], torch.Tensor] | None,
    ) -> torch.Tensor:
        """Clean context latents ``[B, C, min(start, K), h, w]`` for the chunk starting at ``start``."""
        if uses_frame_zero(chunk, frames_per_chunk, self.k, self.anchor):
            first = self.latents[0]
        else:
            if encode is None or not self.pixels:
                raise ValueError(
                    "KV recompute with anchor 'reencode' needs the decoded frames and the VAE encoder "
                    "(pass decoder= and vae=), or use kv_recompute_anchor='first_frame'"
                )
            first = encode(self.pixels[0]).to(self.latents[0].dtype)
        rest = [self.latents[f] for f in context_frames(start, self.k)]
        return torch.cat([first, *rest], dim=2)


def recompute_context(run_piece, context: torch.Tensor, frames_per_chunk: int, batch: int, device) -> int:
    """Refill an emptied cache with ``context [B, C, F, h, w]`` at t = 0, block-causally in pieces of
    ``frames_per_chunk`` frames from cache frame 0. ``run_piece(x, t, cache_frame)`` plans and runs one
    DiT pass. Returns the number of context frames (= the chunk's cache frame)."""
    f = context.shape[2]
    for j in range(0, f, frames_per_chunk):
        m = min(frames_per_chunk, f - j)
        t = torch.zeros(batch, m, device=device)
        run_piece(context[:, :, j : j + m], t, j)
    return f
