"""A video's prompt as the DiT reads it: per expert the cross-attention K/V of the text (+ CLIP image
features), and for classifier-free guidance those of the negative prompt."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

__all__ = ["Prompt", "make_prompt", "embed_prompts", "pad_stack", "cross_tensors", "same_shapes"]


@dataclass
class Prompt:
    context: torch.Tensor  # [B, L, 4096]
    cross: list  # per expert: CrossAttnCache (cond)
    uncond: list | None = None  # per expert: CrossAttnCache (negative prompt), CFG only


def pad_stack(embs: list[torch.Tensor]) -> torch.Tensor:
    """List of ``[L_i, D]`` (or ``[1, L_i, D]``) -> zero-padded ``[B, max L, D]``."""
    embs = [e[0] if e.ndim == 3 else e for e in embs]
    L = max(e.shape[0] for e in embs)
    out = embs[0].new_zeros(len(embs), L, embs[0].shape[-1])
    for i, e in enumerate(embs):
        out[i, : e.shape[0]] = e
    return out


def embed_prompts(prompts, text_encoder: Callable | None, device) -> torch.Tensor:
    """Strings (encoded with ``text_encoder``), a ``[B, L, D]`` / ``[L, D]`` tensor or a list of
    ``[L_i, D]`` embeddings -> ``[B, L, D]`` on ``device``."""
    if isinstance(prompts, str):
        prompts = [prompts]
    if isinstance(prompts, torch.Tensor):
        ctx = prompts if prompts.ndim == 3 else prompts[None]
    elif isinstance(prompts, Sequence) and prompts and isinstance(prompts[0], torch.Tensor):
        ctx = pad_stack(list(prompts))
    else:
        if text_encoder is None:
            raise ValueError(
                "text prompts given but the pipeline has no text_encoder; pass embeddings instead"
            )
        out = text_encoder(list(prompts))
        ctx = out if isinstance(out, torch.Tensor) else pad_stack(list(out))
    return ctx.to(device)


def make_prompt(
    experts, text_encoder, device, prompts, negative=None, clip_fea=None, batch: int | None = None
) -> Prompt:
    ctx = embed_prompts(prompts, text_encoder, device)
    if batch is not None and ctx.shape[0] != batch:
        if ctx.shape[0] == 1:
            ctx = ctx.expand(batch, -1, -1)
        else:
            raise ValueError(f"got {ctx.shape[0]} prompts for a batch of {batch}")
    cross = [m.prepare_context(ctx, clip_fea) for m in experts]
    uncond = None
    if negative is not None:
        nctx = embed_prompts(negative, text_encoder, device)
        if nctx.shape[0] != ctx.shape[0]:
            nctx = nctx.expand(ctx.shape[0], -1, -1)
        uncond = [m.prepare_context(nctx, clip_fea) for m in experts]
    return Prompt(ctx, cross, uncond)


def cross_tensors(cross) -> list[torch.Tensor]:
    return [*cross.text_k, *cross.text_v, *(cross.image_k or []), *(cross.image_v or [])]


def same_shapes(a: list | None, b: list) -> bool:
    """Whether two per-expert lists of ``CrossAttnCache`` have the same tensors (shape, dtype, device)."""
    if a is None or len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if (x.image_k is None) != (y.image_k is None) or len(x.text_k) != len(y.text_k):
            return False
        tx, ty = cross_tensors(x), cross_tensors(y)
        if any((u.shape, u.dtype, u.device) != (v.shape, v.dtype, v.device) for u, v in zip(tx, ty)):
            return False
    return True
