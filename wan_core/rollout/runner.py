"""The pipeline's side of a scheme's DiT calls: the ``Runner`` handed to schemes, the interrupt error,
and the out-of-memory description of the pipeline's steps."""

from __future__ import annotations

import weakref

import torch

__all__ = ["PipelineRunner", "RolloutInterrupted", "oom_advice", "release_after_oom"]


class RolloutInterrupted(RuntimeError):
    """Raised between denoising steps when the interrupt hook asks to stop."""


def release_after_oom(pipe, *args, **kwargs) -> None:
    pipe.release()  # the KV cache may be half-written: a later generate asks for initialize_cache


class PipelineRunner:
    """The scheme's ``Runner``: every DiT pass goes through the pipeline (graphs, compile guard)."""

    def __init__(self, pipe):
        self._pipe = weakref.proxy(pipe)  # no reference cycle: a dropped pipeline frees at once
        self.device = pipe.device

    def chunk(self, model, x, t, cross, cache, y=None):
        return self._pipe._run_chunk(model, x, t, cross, cache, y)

    def call(self, fn, *args, **kwargs):
        return self._pipe._guard_compile(fn, *args, **kwargs)

    def noise(self, i: int) -> torch.Tensor:
        return self._pipe.chunk_noise(i)

    def check_interrupt(self) -> None:
        self._pipe._check_interrupt()

    def step_done(self, chunk: int) -> None:
        self._pipe._step_done(chunk)

    def reset_graphs(self) -> None:
        self._pipe.forward_runner.reset()


def oom_advice(pipe) -> list[str]:
    """What shrinks ``pipe``'s memory, with the current values: the size, the scheme's own advice
    (e.g. its attention window and KV bytes), fp8 weights, CUDA graphs, the decoder, other programs."""
    p, st = pipe.preset, pipe.state
    size = (
        "width / height"
        if st is None
        else f"now {st.latent_w * p.vae_stride[2]}x{st.latent_h * p.vae_stride[1]}"
    )
    fixes = [f"a smaller video ({size}): the KV cache and every pass's activations grow with it"]
    fixes += pipe.scheme.oom_fixes()
    fixes.append(
        "fp8 DiT weights: an *_fp8_scaled.safetensors file (Load Wan DiT precision fp8) halve the DiT's memory"
    )
    if pipe.cuda_graphs:
        fixes.append(
            "CUDA graphs off (Load Wan DiT cuda_graphs; CLI --no-cuda-graphs): their pool holds a pass"
        )
    if getattr(pipe.decoder, "kind", None) == "wan_vae":
        fixes.append(
            "the TAEHV decoder instead of the Wan VAE for the frames (Load TAEHV; CLI --decoder taehv)"
        )
    fixes.append("fewer other models or programs on this GPU (ComfyUI: Free model and node cache)")
    return fixes
