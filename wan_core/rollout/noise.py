"""Seeded per-chunk noise drawn directly on the model's device.

``seeded_noise(seed, shape, device)`` draws float32 N(0, 1) from a ``torch.Generator`` living on
``device``: no host-to-device copy and no host sync per chunk (a CPU draw followed by a pageable
``.to("cuda")`` blocks the host until the GPU has caught up, so the GPU idles while the host enqueues
the next chunk's first kernels).

Determinism: the same seed gives the same numbers on the same device type (and the same PyTorch
build). CPU and CUDA generators are different algorithms (mt19937 vs Philox), so **a seed gives a
different video on CPU than on a GPU**; videos made on GPUs agree with each other.
"""

from __future__ import annotations

import torch

__all__ = ["seeded_noise"]


def seeded_noise(seed: int, shape: tuple[int, ...], device: torch.device | str) -> torch.Tensor:
    """``shape`` float32 standard normal noise on ``device`` from generator seed ``seed``."""
    device = torch.device(device)
    g = torch.Generator(device=device).manual_seed(int(seed))
    return torch.randn(shape, generator=g, dtype=torch.float32, device=device)
