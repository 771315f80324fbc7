"""``RolloutScheme``: one way of turning a chunk's noise into its clean latents, and the registry
that picks one per preset (``preset.scheme``). See docs/ARCHITECTURE.md ("Rollout schemes").

A scheme owns its KV cache (``cache_spec`` says which; the pipeline builds it, or reuses the previous
video's when the spec is unchanged), the clean frames it reads again (a ``FrameHistory``), its bytes,
its denoising steps and what a prompt switch means for it. It calls the DiT only through the
``Runner`` the pipeline gives it (CUDA graphs, the compile guard, interrupt and progress live there).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from wan_core.dit.model import dit_experts

__all__ = ["Runner", "SchemeOptions", "RolloutScheme", "SCHEMES", "register_scheme", "scheme_for"]


@dataclass(frozen=True)
class SchemeOptions:
    """The pipeline's constructor options a scheme reads."""

    rope: str = "auto"  # "auto" | "absolute" | "relative" (RoPE of the rolling KV cache)
    cache_dtype: torch.dtype | None = None  # None: the DiT's compute dtype
    context_pass_last: bool = False  # run the clean-context pass after the last chunk too
    # a collaborator the published behaviour needs is missing (e.g. Krea's re-encoded anchor without a
    # VAE encoder): "raise" a ValueError, or "warn" and use the nearest behaviour that works without it
    missing_inputs: str = "raise"


class Runner(Protocol):
    """What the pipeline offers a scheme."""

    device: torch.device

    def chunk(self, model, x, t, cross, cache, y=None) -> torch.Tensor:
        """``model.forward_planned`` on a planned cache, replayed from a CUDA graph where captured."""

    def call(self, fn: Callable, *args, **kwargs):
        """``fn(*args, **kwargs)`` (a DiT call) with the compile fallback."""

    def noise(self, i: int) -> torch.Tensor:
        """Chunk ``i``'s noise ``[noise_draws, B, C, n, h, w]``."""

    def check_interrupt(self) -> None: ...

    def step_done(self, chunk: int) -> None: ...

    def reset_graphs(self) -> None:
        """Drop the captured graphs (the prompt's cross-attention buffers changed)."""


class RolloutScheme:
    """Base of every scheme; the defaults are a scheme without cache, history or prompt switches.

    Per video: ``check_start`` (refuse what the scheme cannot do, before anything is allocated),
    ``cache_spec`` -> the pipeline builds the cache -> ``start``; then per chunk ``generate(i)`` ->
    (decode) -> ``on_decoded`` -> ``finalize(i)``; ``end_video`` / ``release`` let go of the video's
    frames / everything.
    """

    title = "rollout"  # in error messages
    whole_video = False  # True: one chunk, the whole video (bidirectional)
    uses_negative_prompt = False  # classifier-free guidance: the pipeline encodes a negative prompt

    def __init__(self, preset, dit, runner: Runner, options: SchemeOptions):
        """``dit``: a ``WanDiT`` or a ``DualExpertDiT`` (``experts``: its ``WanDiT``s, high-noise first)."""
        self.preset, self.dit, self.runner, self.options = preset, dit, runner, options
        self.experts = dit_experts(dit)
        self.cache = None
        self.video = self.state = None

    # -- per video -------------------------------------------------------------------------------
    @property
    def noise_draws(self) -> int:
        """Noise tensors per chunk (the first dimension of ``Runner.noise``)."""
        return 1

    def total_steps(self, num_chunks: int | None) -> int | None:
        """Denoising steps of the video (progress), None when endless."""
        raise NotImplementedError

    def check_start(self, video, state) -> None:
        """Refuse what this scheme cannot make (``state``: the new video's prompt, image, switches,
        encoder and decoder stream), before any cache is allocated."""
        for at in state.switches:
            self.check_switch(at)

    def cache_spec(self, video) -> tuple[type, dict] | None:
        """(cache class, constructor arguments) of this video's KV cache, or None (no cache)."""
        return None

    def start(self, video, state, cache) -> None:
        """A new video: ``state`` (``RolloutState``) holds its prompt, image, noise; ``cache`` is built
        from ``cache_spec(video)`` (reset) or None."""
        self.video, self.state, self.cache = video, state, cache

    def generate(self, i: int) -> torch.Tensor:  # x0 [B, C, n, h, w] normalized
        raise NotImplementedError

    def on_decoded(self, i: int, decoded) -> None:
        """Chunk ``i``'s frames (``DecodedFrames`` or None) were enqueued for decoding."""

    def finalize(self, i: int) -> None:
        """After chunk ``i`` was generated: write what later chunks read (e.g. its clean K/V)."""

    def image_y(self, start: int, n: int) -> torch.Tensor | None:
        """I2V 14B's ``y`` ``[B, 4 + C, n, h, w]`` of latent frames ``[start, start + n)`` (else None)."""
        image = self.state.image
        if image is None or image.mode != "concat_y":
            return None
        return image.y_stream.take(start, n)

    def refuse_switch(self) -> None:
        raise ValueError(f"preset {self.preset.name!r} ({self.title}) does not support prompt switches")

    def check_switch(self, i: int) -> None:
        """Refuse a prompt switch scheduled at chunk ``i`` (``switch_prompt`` of the pipeline)."""
        self.refuse_switch()

    def switch_prompt(self, i: int, prompt) -> None:
        """``state.prompt`` is now ``prompt`` from chunk ``i`` on."""
        self.refuse_switch()

    def end_video(self) -> None:
        """The video is done; keep the cache for the next video of the same geometry."""
        self.state = None

    def release(self) -> None:
        self.cache = self.video = self.state = None

    # -- memory ----------------------------------------------------------------------------------
    def nbytes(self) -> int:
        """Bytes that can grow with the video: the KV cache and the kept frames."""
        return 0 if self.cache is None else self.cache.nbytes()

    def oom_fixes(self) -> list[str]:
        """Scheme-specific ways to use less memory (for out-of-memory errors)."""
        return []


SCHEMES: dict[str, type[RolloutScheme]] = {}


def register_scheme(name: str):
    """Class decorator: ``preset.scheme == name`` runs this scheme."""

    def register(cls: type[RolloutScheme]) -> type[RolloutScheme]:
        SCHEMES[name] = cls
        return cls

    return register


def scheme_for(preset) -> type[RolloutScheme]:
    try:
        return SCHEMES[preset.scheme]
    except KeyError:
        raise ValueError(
            f"preset {preset.name!r} uses scheme {preset.scheme!r}, which is not registered; known: {', '.join(SCHEMES)}"
        ) from None
