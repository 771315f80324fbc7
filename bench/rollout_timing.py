"""One timed AR rollout: per chunk, the few-step denoising passes, the clean-context pass and the decode
of each decoder, all timed on the device stream (one synchronisation at the end).

The denoising math is Self-Forcing's (FACTS.md section 3): for each step k, ``x0 = x_t - sigma_k v``; if
not the last step, re-noise ``x = (1 - sigma_{k+1}) x0 + sigma_{k+1} noise``; then one pass at t = 0 on
the clean ``x0`` writes the chunk's K/V. ``sigma = t / 1000`` (the warped timesteps are table entries).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch

from bench.timing import EventTimer


class ChunkStepper(Protocol):
    """What a benchmarked path implements (eager reference, compiled / graphed pipeline, ...)."""

    def start_video(self) -> None: ...

    def denoise(self, x: torch.Tensor, t: float, frame_start: int) -> torch.Tensor:  # v [B, C, n, h, w]
        ...

    def context(self, x0: torch.Tensor, frame_start: int) -> None: ...


class ChunkDecoder(Protocol):
    def reset(self) -> None: ...

    def __call__(self, latents: torch.Tensor) -> torch.Tensor:  # [B, C, n, h, w] -> [B, 3, F, H, W]
        ...


@dataclass
class RolloutTimes:
    denoise_ms: list[float] = field(default_factory=list)
    context_ms: list[float] = field(default_factory=list)
    decode_ms: dict[str, list[float]] = field(default_factory=dict)
    latents: torch.Tensor | None = None  # [B, C, chunks * n, h, w] float32, the clean chunks
    frames_out: dict[str, int] = field(default_factory=dict)  # pixel frames each decoder produced


def make_noise(
    num_chunks: int, steps: int, shape: tuple[int, ...], device, seed: int = 0
) -> list[list[torch.Tensor]]:
    """The initial noise and each re-noise of every chunk, drawn once so both paths see the same."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    return [[torch.randn(shape, generator=gen).to(device) for _ in range(steps)] for _ in range(num_chunks)]


@torch.no_grad()
def run_rollout(
    stepper: ChunkStepper,
    decoders: dict[str, ChunkDecoder],
    noise: list[list[torch.Tensor]],
    timesteps: list[float],
    frames_per_chunk: int,
    device,
    context_pass: bool = True,
) -> RolloutTimes:
    timer = EventTimer(device)
    stepper.start_video()
    for dec in decoders.values():
        dec.reset()
    marks, latents = [], []
    frames_out = dict.fromkeys(decoders, 0)
    sigmas = [t / 1000.0 for t in timesteps]
    for i, chunk_noise in enumerate(noise):
        frame_start = i * frames_per_chunk
        m0 = timer.mark()
        x = chunk_noise[0]
        for s, t in enumerate(timesteps):
            v = stepper.denoise(x, t, frame_start)
            x0 = x - sigmas[s] * v.float()
            if s + 1 < len(timesteps):
                x = (1 - sigmas[s + 1]) * x0 + sigmas[s + 1] * chunk_noise[s + 1]
        m1 = timer.mark()
        if context_pass:
            stepper.context(x0, frame_start)
        m2 = timer.mark()
        dec_marks = {}
        for name, dec in decoders.items():
            a = timer.mark()
            frames = dec(x0)
            dec_marks[name] = (a, timer.mark())
            frames_out[name] += frames.shape[2]
        marks.append((m0, m1, m2, dec_marks))
        latents.append(x0.clone())
    timer.finish()
    out = RolloutTimes(decode_ms={name: [] for name in decoders}, frames_out=frames_out)
    for m0, m1, m2, dec_marks in marks:
        out.denoise_ms.append(timer.elapsed_ms(m0, m1))
        out.context_ms.append(timer.elapsed_ms(m1, m2))
        for name, (a, b) in dec_marks.items():
            out.decode_ms[name].append(timer.elapsed_ms(a, b))
    out.latents = torch.cat(latents, dim=2)
    return out
