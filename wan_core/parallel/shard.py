"""How the token axis is split across ranks: every rank holds the same slice of *every frame*.

A chunk of ``n`` latent frames has ``L = n * frame_tokens`` tokens in (frame, row, column) order. Rank
``r`` of ``N`` holds tokens ``[r * ft_local, (r + 1) * ft_local)`` of each frame (``ft_local =
frame_tokens / N``), so its shard is ``[B, n * ft_local, ...]`` in frame order. Sharding per frame keeps
per-frame things local (per-frame timesteps, the KV cache's frame slots, the temporal RoPE position),
and makes the rolling KV cache shard the same way: each rank stores its slice of every cached frame.

``frame_tokens`` must be divisible by the number of ranks (no padding: padded tokens would need masks
in every attention call); the error says how to fix it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from .group import ParallelContext

__all__ = ["FrameShard", "check_frame_tokens"]


def check_frame_tokens(frame_tokens: int, world_size: int, patch_hw: tuple[int, int] = (2, 2)) -> int:
    """``frame_tokens // world_size``, or a ``ValueError`` saying what to change."""
    ph, pw = patch_hw
    px = f"latent H/{ph} x W/{pw} = (video H/{8 * ph}) x (video W/{8 * pw}) for the 8x VAEs"
    if world_size > frame_tokens:
        raise ValueError(
            f"context parallelism over {world_size} ranks needs at least {world_size} tokens per latent "
            f"frame, but a frame has {frame_tokens} ({px}): use fewer ranks or a larger resolution"
        )
    if frame_tokens % world_size:
        raise ValueError(
            f"a latent frame has {frame_tokens} tokens ({px}), not divisible by {world_size} ranks: "
            "choose a rank count that divides it or a resolution whose token count it divides"
        )
    return frame_tokens // world_size


@dataclass(frozen=True)
class FrameShard:
    """The slice of each frame's tokens held by ``ctx.rank``."""

    ctx: ParallelContext
    frame_tokens: int

    @property
    def local_tokens(self) -> int:  # tokens of one frame on this rank
        return self.frame_tokens // self.ctx.world_size

    def take(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        """``[B, frames * frame_tokens, ...]`` -> this rank's ``[B, frames * local_tokens, ...]``."""
        b, rest = x.shape[0], x.shape[2:]
        w, ftl, r = self.ctx.world_size, self.local_tokens, self.ctx.rank
        return x.reshape(b, frames, w, ftl, *rest)[:, :, r].reshape(b, frames * ftl, *rest)

    def take_rope(self, cs: torch.Tensor, frames: int) -> torch.Tensor:
        """RoPE table ``[1, frames * frame_tokens, 1, d/2]`` -> the rows of this rank's tokens."""
        return self.take(cs, frames)

    def gather(self, local: torch.Tensor, frames: int) -> torch.Tensor:
        """Every rank's ``[B, frames * local_tokens, D]`` -> ``[B, frames * frame_tokens, D]`` on all."""
        w, ftl = self.ctx.world_size, self.local_tokens
        b, d = local.shape[0], local.shape[-1]
        local = local.contiguous()
        out = local.new_empty((w * b, *local.shape[1:]))  # [N*B, frames * ftl, D], rank-major
        if hasattr(dist, "all_gather_single"):
            dist.all_gather_single(out, local, group=self.ctx.group)
        else:  # older torch
            dist.all_gather_into_tensor(out, local, group=self.ctx.group)
        out = out.view(w, b, frames, ftl, d).permute(1, 2, 0, 3, 4)  # [B, frames, N, ftl, D]
        return out.reshape(b, frames * self.frame_tokens, d)
