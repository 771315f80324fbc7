"""Ulysses sequence parallelism: an all-to-all trades the token shard for a head shard and back.

Before attention each rank holds its token slice of every frame with all heads
(``[B, n * ft_local, H, hd]``); one ``all_to_all_single`` gives it every token of the chunk for its
``H / N`` heads (``[B, n * frame_tokens, H / N, hd]``, natural token order), so attention (and the KV
cache of those heads) is an ordinary local computation; a second all-to-all returns the output to the
token layout. Needs ``num_heads % N == 0``.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from ..attention import attention
from .group import ParallelContext

__all__ = ["check_heads", "tokens_to_heads", "qkv_tokens_to_heads", "heads_to_tokens", "ulysses_attention"]


def check_heads(num_heads: int, world_size: int) -> int:
    """``num_heads // world_size``, or a ``ValueError`` naming the fix."""
    if num_heads % world_size:
        divisors = [d for d in range(2, num_heads + 1) if num_heads % d == 0]
        raise ValueError(
            f"Ulysses context parallelism splits the {num_heads} attention heads across ranks, and "
            f"{num_heads} is not divisible by {world_size} ranks: use a rank count in {divisors} or "
            "--context-parallel ring (no head constraint)"
        )
    return num_heads // world_size


def _all_to_all(x: torch.Tensor, ctx: ParallelContext) -> torch.Tensor:
    """x ``[N, ...]``: block j goes to rank j; returns ``[N, ...]`` with block j from rank j."""
    x = x.contiguous()
    out = torch.empty_like(x)
    dist.all_to_all_single(out, x, group=ctx.group)
    return out


def tokens_to_heads(x: torch.Tensor, ctx: ParallelContext, frames: int) -> torch.Tensor:
    """``[B, frames * ft_local, H, hd]`` (this rank's tokens) -> ``[B, frames * ft, H/N, hd]`` (its heads)."""
    n = ctx.world_size
    b, lt, h, d = x.shape
    ftl = lt // frames
    x = x.reshape(b, frames, ftl, n, h // n, d).permute(3, 0, 1, 2, 4, 5)  # [N(head group), B, f, ftl, h, d]
    x = _all_to_all(x, ctx)  # [N(source rank = token slice), B, f, ftl, H/N, d]
    return x.permute(1, 2, 0, 3, 4, 5).reshape(b, frames * n * ftl, h // n, d)


def qkv_tokens_to_heads(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, ctx: ParallelContext, frames: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``tokens_to_heads`` of q, k and v in one all-to-all (each ``[B, frames * ft_local, H, hd]``)."""
    n = ctx.world_size
    b, lt, h, d = q.shape
    ftl = lt // frames
    x = torch.stack([q, k, v], 2).reshape(b, frames, ftl, 3, n, h // n, d)
    x = _all_to_all(x.permute(4, 0, 1, 2, 3, 5, 6), ctx)  # [N(source rank), B, f, ftl, 3, H/N, d]
    x = x.permute(4, 1, 2, 0, 3, 5, 6).reshape(3, b, frames * n * ftl, h // n, d)
    return x[0], x[1], x[2]


def heads_to_tokens(x: torch.Tensor, ctx: ParallelContext, frames: int) -> torch.Tensor:
    """``[B, frames * ft, H/N, hd]`` (this rank's heads) -> ``[B, frames * ft_local, H, hd]`` (its tokens)."""
    n = ctx.world_size
    b, lt, hl, d = x.shape
    ftl = lt // (frames * n)
    x = x.reshape(b, frames, n, ftl, hl, d).permute(2, 0, 1, 3, 4, 5)  # [N(token slice), B, f, ftl, hl, d]
    x = _all_to_all(x, ctx)  # [N(source rank = head group), B, f, ftl, H/N, d]
    return x.permute(1, 2, 3, 0, 4, 5).reshape(b, frames * ftl, n * hl, d)


def ulysses_attention(
    q: torch.Tensor,  # [B, frames * ft_local, H, hd] this rank's tokens (RoPE applied)
    k: torch.Tensor,
    v: torch.Tensor,
    ctx: ParallelContext,
    frames: int,
    backend: str = "sdpa",
) -> torch.Tensor:  # [B, frames * ft_local, H, hd]
    """Full (bidirectional) attention over the tokens of all ranks."""
    qh, kh, vh = qkv_tokens_to_heads(q, k, v, ctx, frames)
    return heads_to_tokens(attention(qh, kh, vh, backend), ctx, frames)
