"""Causal few-step rollout with an EMA attention sink: Reward Forcing.

JaydenLyh/Reward-Forcing @4317f5a ``wan/modules/causal_model.py`` (``CausalWanSelfAttention``): keys are
cached un-roped and roped at attention time relative to the cache (sink frame i at position i, window
frames after them: our relative RoPE). When the first denoising pass of a new chunk finds the cache full,
each layer evicts its oldest window tokens; if they are as many as the sink's tokens, the sink becomes
``alpha * sink + (1 - alpha) * evicted`` for keys (un-roped) and values alike (``compression_alpha`` 0.999),
otherwise the evicted tokens overwrite the sink's first ones; the pass then attends to the updated sink.
Later passes of the same chunk (the other steps, the clean context pass) evict nothing.

Here that update runs once per chunk, for every layer, before the chunk's first pass
(``before_chunk``): the evicted frames' K/V are exactly what that pass would have overwritten, so the
result is the official one. The rest is ``CausalScheme`` unchanged. Prompt switches are refused (the
official pipeline has none, and a re-cache cannot rebuild a blended sink).
"""

from __future__ import annotations

import torch

from .base import register_scheme
from .causal import CausalScheme

__all__ = ["EMASinkScheme"]


@register_scheme("ema_sink")
class EMASinkScheme(CausalScheme):
    title = "causal few-step, EMA sink"

    def cache_spec(self, video):
        if self.options.rope == "absolute":
            raise ValueError(
                f"preset {self.preset.name!r} ({self.title}): the EMA sink blends un-roped keys and needs "
                "relative RoPE (rope 'auto' or 'relative')"
            )
        cls, kw = super().cache_spec(video)
        cfg = self.experts[0].config
        if kw["frame_tokens"] != (video.latent_h // cfg.patch[1]) * (video.latent_w // cfg.patch[2]):
            raise ValueError(f"preset {self.preset.name!r} ({self.title}) does not run context-parallel")
        return cls, {**kw, "rope": "relative"}

    def before_chunk(self, i: int, start: int) -> None:
        cache, n = self.cache, self.video.chunk_bounds(i)[1]
        frames = cache.frames_to_evict(start, n)
        if not frames:
            return
        cfg = self.experts[0].config
        h, w = self.video.latent_h // cfg.patch[1], self.video.latent_w // cfg.patch[2]
        positions = torch.tensor(frames, dtype=torch.long).to(cache.device)  # window keys sit at their frame
        cos, sin = self.experts[0].rope.for_positions(positions, h, w)
        cache.blend_into_sinks(frames, self.preset.sink_ema, cos, sin)

    def check_switch(self, i: int) -> None:
        self.refuse_switch()

    def switch_prompt(self, i: int, prompt) -> None:
        self.refuse_switch()
