"""Random weights, made on the target device (speed does not depend on the values, but zeros can run
faster than real data, and exploding activations would be a different workload)."""

from __future__ import annotations

import math

import torch
from torch import nn


@torch.no_grad()
def randomize_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Fill every parameter and floating buffer in place: matrices and conv kernels ~ N(0, 1/fan_in),
    norm weights ~ 1 + N(0, 0.02^2), everything else (biases, modulation tables) ~ N(0, 0.02^2).
    Works on a module made with ``to_empty`` (uninitialised memory)."""
    gens: dict[torch.device, torch.Generator] = {}
    for name, p in [*module.named_parameters(), *module.named_buffers()]:
        if not p.is_floating_point():
            continue
        gen = gens.get(p.device)
        if gen is None:
            gen = gens[p.device] = torch.Generator(device=p.device).manual_seed(seed)
        leaf = name.rsplit(".", 1)[-1]
        if p.dim() >= 2 and "modulation" not in name and "emb_pos" not in name:
            std, mean = 1.0 / math.sqrt(math.prod(p.shape[1:])), 0.0
        elif "norm" in name and leaf == "weight":
            std, mean = 0.02, 1.0
        else:
            std, mean = 0.02, 0.0
        tmp = torch.empty(p.shape, device=p.device, dtype=torch.float32)
        tmp.normal_(mean, std, generator=gen)
        p.copy_(tmp)
    return module


def build_random(factory, device, dtype: torch.dtype, seed: int = 0) -> nn.Module:
    """``factory()`` on the meta device, cast to ``dtype`` there, then materialised on ``device`` and
    randomized: no CPU copy and never an fp32 copy of the whole model on the device (14B: 57 GB).

    Non-parameter state made in ``__init__`` (e.g. RoPE tables) is kept: only parameters and buffers
    are materialised on ``device``."""
    with torch.device("meta"):
        module = factory()
    module = module.to(dtype).to_empty(device=device)
    randomize_(module, seed)
    return module.eval().requires_grad_(False)
