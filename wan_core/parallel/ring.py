"""Ring attention: key/value blocks travel around the ranks; partial results merge by log-sum-exp.

Each rank keeps its queries (its token slice) and starts with its own key/value block. In each of the
N steps it attends to the block it holds (output and the log-sum-exp of the scores per query) while
``dist.batch_isend_irecv`` passes that block to the next rank and receives the previous rank's block.
Softmax over the union of blocks is the log-sum-exp-weighted mix of the per-block softmaxes (online
softmax), merged in float32, so the result equals attention over all keys. No head constraint.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from .group import ParallelContext

__all__ = ["attention_with_lse", "merge_partials", "ring_attention"]

_FUSED_FAILED: set[tuple[str, torch.dtype]] = set()


def _math_with_lse(q, k, v):  # [B, H, L, d] -> out [B, H, Lq, d] (q dtype), lse [B, H, Lq] float32
    scores = torch.matmul(q.float(), k.float().transpose(-1, -2)) * q.shape[-1] ** -0.5
    lse = torch.logsumexp(scores, dim=-1)
    out = torch.matmul(torch.exp(scores - lse[..., None]), v.float())
    return out.to(q.dtype), lse


def _fused_with_lse(q, k, v):  # [B, H, L, d]; PyTorch's fused SDPA kernels that also return the LSE
    if q.device.type == "cpu":
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v)
        return out, lse
    if q.device.type == "cuda":
        if q.dtype in (torch.float16, torch.bfloat16) and q.shape[-1] <= 256:
            res = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v)
            return res[0], res[1]
        res = torch.ops.aten._scaled_dot_product_efficient_attention(q, k, v, None, True)
        return res[0], res[1][..., : q.shape[2]]  # the LSE may be padded to a multiple of 32
    raise NotImplementedError(q.device.type)


def attention_with_lse(
    q: torch.Tensor,  # [B, Lq, heads, hd]
    k: torch.Tensor,  # [B, Lk, heads, hd]
    v: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:  # out [B, Lq, heads, hd] (q dtype), lse [B, heads, Lq] float32
    """Softmax attention plus the log-sum-exp of each query's scaled scores (natural log)."""
    qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    key = (q.device.type, q.dtype)
    if key not in _FUSED_FAILED:
        try:
            out, lse = _fused_with_lse(qt, kt, vt)
            return out.transpose(1, 2), lse.float()
        except (RuntimeError, NotImplementedError):  # kernel unavailable for this device/dtype/shape
            _FUSED_FAILED.add(key)
    out, lse = _math_with_lse(qt, kt, vt)
    return out.transpose(1, 2), lse


def merge_partials(
    out: torch.Tensor | None,  # [B, Lq, H, hd] float32 accumulated so far (None: first block)
    lse: torch.Tensor | None,  # [B, H, Lq] float32
    block_out: torch.Tensor,  # [B, Lq, H, hd]
    block_lse: torch.Tensor,  # [B, H, Lq]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Online-softmax merge: attention over keys A u B from the results over A and over B."""
    if out is None:
        return block_out.float(), block_lse
    w = torch.sigmoid(block_lse - lse).transpose(1, 2)[..., None]  # weight of the new block [B, Lq, H, 1]
    out = out + w * (block_out.float() - out)
    lse = lse - F.logsigmoid(lse - block_lse)  # = logaddexp(lse, block_lse)
    return out, lse


def ring_attention(
    q: torch.Tensor,  # [B, Lq_local, H, hd] this rank's queries (RoPE applied)
    k: torch.Tensor,  # [B, Lk_local, H, hd] this rank's keys; the same Lk_local on every rank
    v: torch.Tensor,
    ctx: ParallelContext,
) -> torch.Tensor:  # [B, Lq_local, H, hd], q dtype
    """Attention of the local queries over the keys/values of all ranks."""
    n = ctx.world_size
    kv = torch.stack([k.to(q.dtype), v.to(q.dtype)]).contiguous()  # [2, B, Lk_local, H, hd]
    out = lse = None
    if n > 1:
        spare = torch.empty_like(kv)
        send_to = ctx.global_rank((ctx.rank + 1) % n)
        recv_from = ctx.global_rank((ctx.rank - 1) % n)
    for step in range(n):
        reqs = []
        if step < n - 1:  # pass the block on while computing with it
            reqs = dist.batch_isend_irecv(
                [
                    dist.P2POp(dist.isend, kv, send_to, ctx.group),
                    dist.P2POp(dist.irecv, spare, recv_from, ctx.group),
                ]
            )
        block_out, block_lse = attention_with_lse(q, kv[0], kv[1])
        out, lse = merge_partials(out, lse, block_out, block_lse)
        for r in reqs:
            r.wait()
        if step < n - 1:
            kv, spare = spare, kv
    return out.to(q.dtype)
