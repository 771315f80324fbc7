"""Blending two UMT5 prompt embeddings for a transition from one prompt to another.

The DiT reads a prompt as ``[B, L, 4096]`` UMT5 features zero-padded to ``text_len`` (512) before its
text embedding (``WanDiT.prepare_context``; official Wan pads the same way), so two prompts of
different token counts are blended after zero-padding both to the longer one: a padding position of
the shorter prompt is exactly what the DiT would have read there.

Interpolations (weight ``w`` from 0 = old to 1 = new):

- ``linear``: ``(1 - w) * old + w * new`` per element (Daydream Scope's default for its temporal
  transitions, ``scope`` ``blending.py``).
- ``slerp``: per token, the direction moves along the great circle between the two token vectors and
  the norm moves linearly; where a token is zero in one prompt (padding) or the two directions are
  (anti)parallel, it falls back to ``linear`` for that token.
"""

from __future__ import annotations

import torch

__all__ = ["INTERPOLATIONS", "blend_embeddings", "pad_to_length"]

INTERPOLATIONS = ("linear", "slerp")
_EPS = 1e-6


def pad_to_length(emb: torch.Tensor, length: int) -> torch.Tensor:
    """``[B, L, D]`` -> ``[B, length, D]`` with zero rows appended (``length`` >= L)."""
    if emb.shape[1] >= length:
        return emb
    return torch.cat([emb, emb.new_zeros(emb.shape[0], length - emb.shape[1], emb.shape[2])], dim=1)


def blend_embeddings(
    old: torch.Tensor, new: torch.Tensor, weight: float, method: str = "linear"
) -> torch.Tensor:
    """``old`` / ``new``: ``[B, L_i, D]`` -> ``[B, max L, D]`` float32; ``weight`` 1 gives ``new``
    (padded), 0 gives ``old`` (padded)."""
    if method not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {method!r}")
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"blend weight must be in [0, 1], got {weight}")
    length = max(old.shape[1], new.shape[1])
    a = pad_to_length(old.float(), length)
    b = pad_to_length(new.to(a.device).float(), length)
    lerp = torch.lerp(a, b, weight)
    if method == "linear" or weight in (0.0, 1.0):
        return lerp
    na, nb = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)  # [B, L, 1]
    ua, ub = a / na.clamp_min(_EPS), b / nb.clamp_min(_EPS)
    cos = (ua * ub).sum(-1, keepdim=True).clamp(-1.0, 1.0)
    omega = torch.arccos(cos)
    sin = torch.sin(omega)
    usable = (na > _EPS) & (nb > _EPS) & (sin > 1e-4)
    safe_sin = torch.where(usable, sin, torch.ones_like(sin))
    direction = (torch.sin((1 - weight) * omega) * ua + torch.sin(weight * omega) * ub) / safe_sin
    slerp = direction * torch.lerp(na, nb, weight)
    return torch.where(usable, slerp, lerp)
