"""One timed AR rollout: per chunk, the few-step denoising, the decode of each decoder (frames out) and
then the clean-context pass, all timed on the device stream (one synchronisation per rollout).

A path is a ``ChunkStepper``: ``denoise_chunk(i)`` runs chunk ``i``'s denoising steps and returns its
clean latents ``x0``; ``context(i, x0)`` runs the clean-context pass that writes the chunk's K/V.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch

from bench.timing import EventTimer


class ChunkStepper(Protocol):
    description: str

    def start_video(self) -> None: ...

    def denoise_chunk(self, i: int) -> torch.Tensor:  # x0 [B, C, n, h, w]
        ...

    def context(self, i: int, x0: torch.Tensor) -> None: ...


class ChunkDecoder(Protocol):
    name: str

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
    wall_ms: float = 0.0  # first mark to last mark: DiT + every decoder + the gaps between them

    @property
    def gaps_ms(self) -> float:
        """Device time not inside a timed segment (the GPU waiting for the host between segments)."""
        timed = sum(self.denoise_ms) + sum(self.context_ms) + sum(sum(v) for v in self.decode_ms.values())
        return self.wall_ms - timed


@torch.no_grad()
def run_rollout(
    stepper: ChunkStepper, decoders: dict[str, ChunkDecoder], num_chunks: int, device
) -> RolloutTimes:
    timer = EventTimer(device)
    stepper.start_video()
    for dec in decoders.values():
        dec.reset()
    marks, latents = [], []
    frames_out = dict.fromkeys(decoders, 0)
    for i in range(num_chunks):
        # the pipeline's order: denoise, frames out, then the context pass (off the first-frame path)
        m0 = timer.mark()
        x0 = stepper.denoise_chunk(i)
        m1 = timer.mark()
        dec_marks = {}
        for name, dec in decoders.items():
            a = timer.mark()
            frames = dec(x0)
            dec_marks[name] = (a, timer.mark())
            frames_out[name] += frames.shape[2]
        m2 = timer.mark()
        stepper.context(i, x0)
        m3 = timer.mark()
        marks.append((m0, m1, m2, m3, dec_marks))
        latents.append(x0.float().clone())
    timer.finish()
    out = RolloutTimes(decode_ms={name: [] for name in decoders}, frames_out=frames_out)
    for m0, m1, m2, m3, dec_marks in marks:
        out.denoise_ms.append(timer.elapsed_ms(m0, m1))
        out.context_ms.append(timer.elapsed_ms(m2, m3))
        for name, (a, b) in dec_marks.items():
            out.decode_ms[name].append(timer.elapsed_ms(a, b))
    out.wall_ms = timer.elapsed_ms(marks[0][0], marks[-1][3]) if marks else 0.0
    out.latents = torch.cat(latents, dim=2)
    return out
