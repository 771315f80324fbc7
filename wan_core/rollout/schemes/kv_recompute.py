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

import logging

import torch

from ..history import FrameHistory
from .base import register_scheme
from .causal import CausalScheme

__all__ = ["KVRecomputeScheme", "context_frames", "recompute_context", "uses_frame_zero"]

log = logging.getLogger("wan_core.rollout")

ANCHORS = ("reencode", "first_frame")


def uses_frame_zero(chunk: int, frames_per_chunk: int, context_frames_k: int, anchor: str) -> bool:
    """Whether chunk ``chunk``'s context starts with latent frame 0 (else with a re-encoded pixel frame)."""
    return anchor == "first_frame" or (chunk - 1) * frames_per_chunk < context_frames_k


def context_frames(start: int, context_frames_k: int) -> list[int]:
    """Latent frames of the context after the anchor: ``[max(1, start - K + 1), start)``."""
    return list(range(max(1, start - context_frames_k + 1), start))


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


@register_scheme("kv_recompute")
class KVRecomputeScheme(CausalScheme):
    """Krea realtime. Keeps latent frame 0 + the last ``K - 1`` clean latents (``history``) and the last
    ``1 + 4 (K - 1)`` decoded pixel frames (``pixels``, re-encoded anchor only): bounded by K."""

    title = "Krea KV recompute"

    def __init__(self, preset, dit, runner, options):
        super().__init__(preset, dit, runner, options)
        if preset.kv_recompute_frames < 2:
            raise ValueError(
                f"KV recompute needs at least 2 context frames, got {preset.kv_recompute_frames}"
            )
        if preset.kv_recompute_anchor not in ANCHORS:
            raise ValueError(
                f"kv_recompute_anchor must be one of {ANCHORS}, got {preset.kv_recompute_anchor!r}"
            )
        self.k = preset.kv_recompute_frames
        self.anchor = preset.kv_recompute_anchor
        self.pixels: FrameHistory | None = None
        self._offset = 0

    @property
    def cache_offset(self) -> int:  # the cache is rebuilt from cache frame 0 before every chunk
        return self._offset

    @property
    def recompute(self):
        """What the recompute keeps (``latents``: frame -> x0, ``pixels``): this scheme."""
        return self

    @property
    def latents(self) -> FrameHistory | None:
        return self.history

    def check_start(self, video, state) -> None:
        super().check_start(video, state)
        p = self.preset
        if state.image is not None:
            raise ValueError(
                f"preset {p.name!r} recomputes the KV cache every chunk; image conditioning is not supported"
            )
        self.anchor = p.kv_recompute_anchor
        if self.anchor == "reencode" and (state.decoder_stream is None or state.vae is None):
            if self.options.missing_inputs != "warn":
                raise ValueError(
                    f"preset {p.name!r} re-encodes a decoded frame as the first context latent (Krea KV recompute): "
                    "pass decoder= and vae= (the VAE encoder), or override kv_recompute_anchor='first_frame'"
                )
            log.warning(
                "%s re-encodes a decoded frame as each chunk's first context latent, which needs the frame "
                "decoder and the full Wan VAE's encoder; without them the first latent frame is kept as the "
                "anchor instead (Krea's keep_first_frame). Connect the Wan VAE (in ComfyUI: the sampler's preview_vae) "
                "for the reference behaviour.",
                p.name,
            )
            self.anchor = "first_frame"

    def start(self, video, state, cache) -> None:
        super().start(video, state, cache)
        self.history = FrameHistory(1, self.k - 1)  # frame 0 (the anchor) + the last K - 1
        self.pixels = FrameHistory(0, 1 + self.preset.vae_stride[0] * (self.k - 1))
        self._offset = 0

    def before_chunk(self, i: int, start: int) -> None:
        """Rebuild the cache from the chunk's clean context."""
        self.cache.reset()
        self._offset = start
        if start == 0:
            return
        cache, runner = self.cache, self.runner
        cross, model = self.state.prompt.cross[0], self.experts[0]

        def run_piece(x, t, cache_frame):
            cache.plan_chunk(cache_frame, x.shape[2])
            runner.chunk(model, x, t, cross, cache, None)

        context = self._context(i, start)
        self._offset = start - recompute_context(
            run_piece, context, self.video.frames_per_chunk, self.video.batch, runner.device
        )

    def _context(self, chunk: int, start: int) -> torch.Tensor:  # [B, C, min(start, K), h, w]
        if uses_frame_zero(chunk, self.video.frames_per_chunk, self.k, self.anchor):
            first = self.history[0]
        else:
            vae = self.state.vae
            if vae is None or not self.pixels:
                raise ValueError(
                    "KV recompute with anchor 'reencode' needs the decoded frames and the VAE encoder "
                    "(pass decoder= and vae=), or use kv_recompute_anchor='first_frame'"
                )
            first = vae.encode_chunk(self.pixels.oldest(), vae.new_encode_cache()).to(self.history[0].dtype)
        rest = [self.history[f] for f in context_frames(start, self.k)]
        return torch.cat([first, *rest], dim=2)

    def on_decoded(self, i: int, decoded) -> None:
        if self.anchor == "reencode" and decoded is not None:
            self.pixels.append(decoded.device())  # the next chunk re-encodes them on this stream

    def finalize(self, i: int) -> None:
        """No clean pass: the next chunk rebuilds the cache from the kept latents."""
        x0, _ = self._pending
        self._pending = None
        start, _ = self.video.chunk_bounds(i)
        self.history.add(start, x0)

    def switch_prompt(self, i: int, prompt) -> None:
        self.runner.reset_graphs()  # the next rebuild encodes the context with the new prompt anyway

    def end_video(self) -> None:
        super().end_video()
        if self.pixels is not None:
            self.pixels.clear()

    def release(self) -> None:
        super().release()
        self.pixels = None

    def nbytes(self) -> int:
        return super().nbytes() + (0 if self.pixels is None else self.pixels.nbytes())
