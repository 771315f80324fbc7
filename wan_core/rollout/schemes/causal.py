"""Causal few-step rollout: Self-Forcing, CausVid, Causal Forcing (chunk- and frame-wise), LongLive.

Per chunk ``i`` (frames ``[s, s + n)``): K denoising steps, each one DiT pass over the chunk that
attends to the cached K/V of the sink and window frames before it and to itself (the pass also writes
the chunk's noisy K/V into its slots; the next step overwrites them); the x0 prediction is re-noised to
the next step's sigma with a fresh draw. ``finalize(i)`` runs one more pass on the clean x0 at
``context_noise`` that overwrites the slots with clean K/V (skipped after the last chunk of a video of
known length unless ``context_pass_last``: nothing reads them).

Prompt switch (LongLive, ``prompt_switch.py``): the new prompt's cross-attention replaces the old one
and the frames held in the cache are re-encoded with it in one pass (``recache_span``), from the clean
latents kept in the scheme's ``FrameHistory`` (sink + window frames).
"""

from __future__ import annotations

import torch

from wan_core.dit.kv_cache import RollingKVCache
from wan_core.memory import gib

from ..conditioning import stamp_input, stamp_x0
from ..history import FrameHistory
from ..prompt_switch import recache_span
from ..schedulers import flow_to_x0, renoise
from .base import RolloutScheme, register_scheme

__all__ = ["CausalScheme", "single_expert"]


def single_expert(preset, experts) -> None:
    if len(experts) != 1:
        raise ValueError(f"preset {preset.name!r} is autoregressive; it needs a single DiT, not two experts")


@register_scheme("causal")
class CausalScheme(RolloutScheme):
    title = "causal few-step"

    def __init__(self, preset, dit, runner, options):
        super().__init__(preset, dit, runner, options)
        single_expert(preset, self.experts)
        self.history: FrameHistory | None = None  # frame -> (x0, y): what a prompt switch re-encodes
        self._pending = None  # (x0, y) of the chunk generated and not finalized yet

    def chunk_schedule(self, i: int):
        """Chunk ``i``'s steps: the preset's ``schedule``, or its ``first_chunk_schedule`` for chunk 0."""
        first = self.preset.first_chunk_schedule
        return first if i == 0 and first is not None else self.preset.schedule

    @property
    def context_noise(self) -> float:
        """Timestep of the clean context pass (and of a prompt switch's re-cache)."""
        return self.preset.schedule.context_noise

    @property
    def noise_draws(self) -> int:
        first = self.preset.first_chunk_schedule
        return max(len(self.preset.schedule), 0 if first is None else len(first))

    def total_steps(self, num_chunks):
        if num_chunks is None:
            return None
        return len(self.chunk_schedule(0)) + (num_chunks - 1) * len(self.preset.schedule)

    @property
    def cache_offset(self) -> int:
        """Real latent frame - cache frame (0: every frame sits at its own cache frame)."""
        return 0

    def cache_spec(self, video):
        """``RollingKVCache`` arguments for this video (no memory)."""
        p, model = self.preset, self.experts[0]
        cfg = model.config
        t = video.num_latent_frames
        # tokens per frame and heads this DiT caches (a context-parallel DiT: its rank's share)
        frame_tokens, num_heads = model.kv_cache_geometry(
            (video.latent_h // cfg.patch[1]) * (video.latent_w // cfg.patch[2])
        )
        window = p.window_frames
        if window is None:
            if t is None:
                raise ValueError(
                    f"preset {p.name!r} has unbounded attention: give num_frames (or set window_frames)"
                )
            window = t
        rope = self.options.rope
        if rope == "auto":
            rope = "absolute" if t is not None and t <= cfg.rope_max_positions else "relative"
        return RollingKVCache, dict(
            num_layers=cfg.num_layers,
            batch=video.batch,
            frame_tokens=frame_tokens,
            num_heads=num_heads,
            head_dim=cfg.head_dim,
            window_frames=window,
            sink_frames=p.sink_frames,
            dtype=self.options.cache_dtype or model.compute_dtype,
            device=self.runner.device,
            rope=rope,
            max_positions=cfg.rope_max_positions,
        )

    def start(self, video, state, cache) -> None:
        super().start(video, state, cache)
        self.history = FrameHistory(self.preset.sink_frames, cache.window_frames)
        self._pending = None

    # -- helpers ---------------------------------------------------------------------------------
    def _timesteps(self, value: float, n: int, clean_first: bool) -> torch.Tensor:  # [B, n]
        t = torch.full((self.video.batch, n), float(value), device=self.runner.device)
        if clean_first:
            t[:, 0] = 0.0
        return t

    def _clean_first(self, start: int) -> bool:
        image = self.state.image
        return image is not None and image.mode == "clean_t0" and start == 0

    def _run(self, x: torch.Tensor, t: torch.Tensor, start: int, y) -> torch.Tensor:
        """Plan the cache for real latent frames ``[start, start + n)`` and run the DiT chunk pass."""
        self.cache.plan_chunk(start - self.cache_offset, x.shape[2])
        return self.runner.chunk(self.experts[0], x, t, self.state.prompt.cross[0], self.cache, y)

    def before_chunk(self, i: int, start: int) -> None:
        """Hook before chunk ``i``'s denoising steps (KV recompute rebuilds its cache here)."""

    # -- the chunk -------------------------------------------------------------------------------
    def generate(self, i: int) -> torch.Tensor:
        st, runner = self.state, self.runner
        start, n = self.video.chunk_bounds(i)
        self.before_chunk(i, start)
        sched = self.chunk_schedule(i)
        timesteps, sigmas = sched.timesteps, sched.sigmas
        noise = runner.noise(i)  # [K, B, C, n, h, w]
        y = self.image_y(start, n)
        x = noise[0]
        x0 = x
        for k, (tk, sk) in enumerate(zip(timesteps, sigmas)):
            runner.check_interrupt()
            x_in, clean_first = stamp_input(x, st.image, start, sk, noise[k])
            v = self._run(x_in, self._timesteps(tk, n, clean_first), start, y)
            x0 = stamp_x0(flow_to_x0(x_in, v, sk), st.image, start)
            if k + 1 < len(timesteps):
                x = renoise(x0, noise[k + 1], sigmas[k + 1])
            runner.step_done(i)
        self._pending = (x0, y)
        return x0

    def finalize(self, i: int) -> None:
        """Chunk ``i``'s clean K/V: one pass on x0 at ``context_noise``."""
        x0, y = self._pending
        self._pending = None
        start, n = self.video.chunk_bounds(i)
        t = self._timesteps(self.context_noise, n, self._clean_first(start))
        if self.options.context_pass_last or i + 1 != self.video.num_chunks:  # nothing reads the last K/V
            self._run(x0, t, start, y)
        self.history.add(start, x0, y)

    def check_switch(self, i: int) -> None:
        """Any chunk may switch (``switch_prompt``)."""

    def switch_prompt(self, i: int, prompt) -> None:
        """LongLive's KV re-cache: the frames held in the cache re-encoded with the new prompt in one pass."""
        self.runner.reset_graphs()
        start, _ = self.video.chunk_bounds(i)
        if start == 0:
            return
        first, count = recache_span(start, self.preset.sink_frames, self.cache.window_frames)
        frames = list(range(first, first + count))
        x = torch.cat([self.history[f][0] for f in frames], dim=2)
        ys = [self.history[f][1] for f in frames]
        y = None if ys[0] is None else torch.cat(ys, dim=2)
        t = self._timesteps(self.context_noise, count, self._clean_first(first))
        self.cache.plan_span(first - self.cache_offset, count)
        self.runner.call(self.experts[0].forward_planned, x, t, prompt.cross[0], self.cache, y)

    def end_video(self) -> None:
        super().end_video()
        self._pending = None
        if self.history is not None:
            self.history.clear()

    def release(self) -> None:
        super().release()
        self.history = self._pending = None

    def nbytes(self) -> int:
        return super().nbytes() + (0 if self.history is None else self.history.nbytes())

    def oom_fixes(self) -> list[str]:
        c = self.cache
        if c is None:
            return ["a shorter attention window (sampler window_frames / sink_frames; CLI --window / --sink)"]
        return [
            f"a shorter attention window: {c.sink_frames} sink + {c.window_frames} window latent frames "
            f"hold {gib(c.nbytes())} of KV cache (sampler window_frames / sink_frames; CLI --window / --sink)"
        ]
