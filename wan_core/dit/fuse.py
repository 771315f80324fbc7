"""Fused q/k/v projection of the self-attention, applied to a loaded ``WanDiT`` (a speed wrapper).

The plain model keeps the official layout (``self_attn.q``, ``.k``, ``.v``: three ``dim -> dim``
Linears, so checkpoints and LoRAs load 1:1). ``fuse_qkv_(model)`` replaces each block's
``SelfAttention`` by ``FusedQKVSelfAttention``, whose ``qkv_proj`` is one ``dim -> 3 dim`` Linear with
the three weights (and biases) stacked: one GEMM that reads the activations once instead of three.
Outputs are the same dot products (equal to the unfused model up to the GEMM's summation order; tested
in fp32). ``unfuse_qkv_`` splits them back (e.g. before merging a LoRA, which names q/k/v).

fp8 "scaled" layers (``ScaledFP8Linear``, one fp32 scale per tensor): fused only when the three
layers store the same weight dtype and the same scale (then ``W_i * s`` stacked equals
``stack(W_i) * s`` exactly); otherwise that block stays unfused (counted in the return value). Layers
of mixed kinds (e.g. q in fp8, k in bf16) are never fused. ``FP8Linear`` layers (FP8 math,
``wan_core.fp8_linear``, one scale per output channel) always stack exactly: a block left unfused for
unequal per-tensor scales fuses after ``fp8_linears_``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..fp8_linear import FP8Linear
from ..quant import ScaledFP8Linear
from .model import SelfAttention, dit_experts

__all__ = ["FusedQKVSelfAttention", "fuse_qkv_", "unfuse_qkv_", "is_qkv_fused"]


class FusedQKVSelfAttention(nn.Module):
    """``SelfAttention`` with ``q``, ``k``, ``v`` as one ``qkv_proj`` Linear ``[3 dim, dim]``."""

    def __init__(
        self, qkv_proj: nn.Module, o: nn.Module, norm_q: nn.Module, norm_k: nn.Module, num_heads: int
    ):
        super().__init__()
        self.num_heads = num_heads
        self.qkv_proj, self.o, self.norm_q, self.norm_k = qkv_proj, o, norm_q, norm_k

    def qkv(self, x: torch.Tensor):  # x [B, L, dim] -> 3 x [B, L, heads, head_dim]
        b, L, _ = x.shape
        q, k, v = self.qkv_proj(x).chunk(3, dim=-1)  # views of one [B, L, 3 dim] GEMM output
        q = self.norm_q(q).view(b, L, self.num_heads, -1)
        k = self.norm_k(k).view(b, L, self.num_heads, -1)
        return q, k, v.view(b, L, self.num_heads, -1)


def _stack_linear(layers: tuple[nn.Module, ...]) -> nn.Module | None:
    """One layer computing ``cat([l(x) for l in layers], -1)``, or None when they cannot be fused."""
    kinds = {type(m) for m in layers}
    if len(kinds) != 1:
        return None
    first = layers[0]
    has_bias = first.bias is not None
    if any((m.bias is not None) != has_bias for m in layers):
        return None
    if any(m.weight.dtype != first.weight.dtype or m.weight.device != first.weight.device for m in layers):
        return None
    weight = torch.cat([m.weight.detach() for m in layers], 0)
    bias = torch.cat([m.bias.detach() for m in layers], 0) if has_bias else None
    out_f, in_f = weight.shape
    if kinds == {nn.Linear}:
        fused = nn.Linear(in_f, out_f, bias=has_bias, device="meta")
        fused.weight = nn.Parameter(weight, requires_grad=False)
    elif kinds == {ScaledFP8Linear}:
        scales = torch.stack([m.weight_scale.detach().float().reshape(()) for m in layers])
        if not bool((scales == scales[0]).all()):  # load-time check, not in a forward pass
            return None
        fused = ScaledFP8Linear(in_f, out_f, bias=has_bias, device="meta", dtype=first.weight.dtype)
        fused.weight = nn.Parameter(weight, requires_grad=False)
        fused.weight_scale = nn.Parameter(first.weight_scale.detach().clone(), requires_grad=False)
    elif kinds == {FP8Linear}:  # per-channel scales stack exactly, whatever their values
        if any((m.mode, m.fast_accum) != (first.mode, first.fast_accum) for m in layers):
            return None
        fused = FP8Linear(
            in_f, out_f, bias=has_bias, device="meta", mode=first.mode, fast_accum=first.fast_accum
        )
        fused.weight = nn.Parameter(weight, requires_grad=False)
        scale = torch.cat([m.weight_scale.detach() for m in layers], 1)  # [1, 3 dim]
        fused.weight_scale = nn.Parameter(scale, requires_grad=False)
    else:
        return None
    if has_bias:
        fused.bias = nn.Parameter(bias, requires_grad=False)
    return fused


@torch.no_grad()
def fuse_qkv_(model: nn.Module) -> tuple[int, int]:
    """Fuse q/k/v of every self-attention of a ``WanDiT`` (or both experts of a ``DualExpertDiT``) in
    place. Returns (blocks fused, blocks left unfused because their layers cannot be stacked)."""
    fused = skipped = 0
    for m in dit_experts(model):
        for blk in m.blocks:
            sa = blk.self_attn
            if not isinstance(sa, SelfAttention):
                continue  # already fused
            proj = _stack_linear((sa.q, sa.k, sa.v))
            if proj is None:
                skipped += 1
                continue
            blk.self_attn = FusedQKVSelfAttention(proj, sa.o, sa.norm_q, sa.norm_k, sa.num_heads)
            fused += 1
    return fused, skipped


def _split_linear(proj: nn.Module) -> tuple[nn.Module, nn.Module, nn.Module]:
    w = proj.weight.detach().chunk(3, 0)
    b = proj.bias.detach().chunk(3, 0) if proj.bias is not None else (None,) * 3
    fp8_scales = proj.weight_scale.detach().chunk(3, 1) if isinstance(proj, FP8Linear) else (None,) * 3
    out = []
    for wi, bi, si in zip(w, b, fp8_scales):
        if isinstance(proj, FP8Linear):
            m = FP8Linear(
                wi.shape[1],
                wi.shape[0],
                bias=bi is not None,
                device="meta",
                mode=proj.mode,
                fast_accum=proj.fast_accum,
            )
            m.weight_scale = nn.Parameter(si.clone(), requires_grad=False)
        elif isinstance(proj, ScaledFP8Linear):
            m = ScaledFP8Linear(wi.shape[1], wi.shape[0], bias=bi is not None, device="meta", dtype=wi.dtype)
            m.weight_scale = nn.Parameter(proj.weight_scale.detach().clone(), requires_grad=False)
        else:
            m = nn.Linear(wi.shape[1], wi.shape[0], bias=bi is not None, device="meta")
        m.weight = nn.Parameter(wi.clone(), requires_grad=False)
        if bi is not None:
            m.bias = nn.Parameter(bi.clone(), requires_grad=False)
        out.append(m)
    return tuple(out)


@torch.no_grad()
def unfuse_qkv_(model: nn.Module) -> int:
    """Undo ``fuse_qkv_`` (back to the official q/k/v layout); returns the blocks restored."""
    n = 0
    for m in dit_experts(model):
        for blk in m.blocks:
            sa = blk.self_attn
            if not isinstance(sa, FusedQKVSelfAttention):
                continue
            plain = SelfAttention.__new__(SelfAttention)
            nn.Module.__init__(plain)
            plain.num_heads = sa.num_heads
            plain.q, plain.k, plain.v = _split_linear(sa.qkv_proj)
            plain.o, plain.norm_q, plain.norm_k = sa.o, sa.norm_q, sa.norm_k
            blk.self_attn = plain
            n += 1
    return n


def is_qkv_fused(model: nn.Module) -> bool:
    """Whether any block of ``model`` runs a fused q/k/v projection."""
    return any(
        isinstance(blk.self_attn, FusedQKVSelfAttention) for m in dit_experts(model) for blk in m.blocks
    )
