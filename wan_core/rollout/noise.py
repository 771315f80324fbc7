"""A video's noise: per chunk ``i``, ``[K, B, C, n, h, w]`` float32 (the chunk's initial noise and one
fresh draw per re-noise step; bidirectional presets: ``[1, B, C, T, h, w]``).

``seeded_noise(seed, shape, device)`` draws float32 N(0, 1) from a ``torch.Generator`` living on
``device``: no host-to-device copy and no host sync per chunk (a CPU draw followed by a pageable
``.to("cuda")`` blocks the host until the GPU has caught up, so the GPU idles while the host enqueues
the next chunk's first kernels).

Determinism: the same seed gives the same numbers on the same device type (and the same PyTorch
build). CPU and CUDA generators are different algorithms (mt19937 vs Philox), so **a seed gives a
different video on CPU than on a GPU**; videos made on GPUs agree with each other.

A noise source is any ``source(i, shape, device) -> tensor``: ``SeededNoise`` (the default),
``TensorNoise`` (precomputed tensors, e.g. another implementation's noise, checked against the shape
the pipeline expects) or ``CallableNoise`` (``fn(i) -> tensor``, checked the same way).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

__all__ = ["seeded_noise", "chunk_seed", "SeededNoise", "TensorNoise", "CallableNoise", "as_noise_source"]


def seeded_noise(seed: int, shape: tuple[int, ...], device: torch.device | str) -> torch.Tensor:
    """``shape`` float32 standard normal noise on ``device`` from generator seed ``seed``."""
    device = torch.device(device)
    g = torch.Generator(device=device).manual_seed(int(seed))
    return torch.randn(shape, generator=g, dtype=torch.float32, device=device)


def chunk_seed(seed: int, chunk: int) -> int:
    """Seed of chunk ``chunk``'s noise: independent per chunk, so a chunk's noise never depends on
    how many chunks came before it or on prompt switches."""
    return (int(seed) * 1_000_003 + int(chunk) * 7919 + 12345) % (2**63 - 1)


class SeededNoise:
    """Chunk ``i``'s noise drawn from seed ``chunk_seed(seed, i)`` on the model's device."""

    def __init__(self, seed: int):
        self.seed = int(seed)

    def __call__(self, i: int, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        return seeded_noise(chunk_seed(self.seed, i), shape, device)


def _checked(t, i: int, shape: tuple[int, ...], device: torch.device, what: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{what}: chunk {i}'s noise must be a tensor, got {type(t).__name__}")
    if tuple(t.shape) != tuple(shape):
        raise ValueError(
            f"{what}: chunk {i}'s noise has shape {tuple(t.shape)}, the pipeline needs {tuple(shape)} "
            "= [draws (steps; 1 for a whole-video preset), batch, latent channels, latent frames, height, width]"
        )
    return t.to(device=device, dtype=torch.float32)


class TensorNoise:
    """Precomputed noise: ``chunks[i]`` is chunk ``i``'s ``[K, B, C, n, h, w]`` (any device / float dtype;
    moved to the model's device as float32)."""

    def __init__(self, chunks: Sequence[torch.Tensor]):
        self.chunks = list(chunks)

    def __call__(self, i: int, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        if not 0 <= i < len(self.chunks):
            raise IndexError(
                f"TensorNoise holds the noise of {len(self.chunks)} chunks, chunk {i} was asked for"
            )
        return _checked(self.chunks[i], i, shape, device, "TensorNoise")


class CallableNoise:
    """``fn(i) -> [K, B, C, n, h, w]``: noise computed by the caller per chunk, shape-checked."""

    def __init__(self, fn: Callable[[int], torch.Tensor]):
        self.fn = fn

    def __call__(self, i: int, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        return _checked(self.fn(i), i, shape, device, "noise source")


def as_noise_source(noise, seed: int):
    """The noise source of a video: ``SeededNoise(seed)`` when ``noise`` is None, a sequence of tensors
    as ``TensorNoise``, a ready source (``SeededNoise`` / ``TensorNoise`` / ``CallableNoise``) as is, any
    other callable ``fn(i)`` as ``CallableNoise``."""
    if noise is None:
        return SeededNoise(seed)
    if isinstance(noise, (SeededNoise, TensorNoise, CallableNoise)):
        return noise
    if isinstance(noise, torch.Tensor) or (isinstance(noise, Sequence) and not callable(noise)):
        return TensorNoise(noise if not isinstance(noise, torch.Tensor) else [noise])
    if callable(noise):
        return CallableNoise(noise)
    raise TypeError(f"noise must be None, a sequence of tensors or a callable, got {type(noise).__name__}")
