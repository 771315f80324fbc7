"""UMT5 encoder (the text encoder of Wan 2.1 / 2.2), written from the architecture facts.

Pre-norm transformer encoder: RMSNorm (no mean, no bias) -> self-attention with a learned
*per-layer* relative position bias (bidirectional buckets) and no 1/sqrt(d) scaling -> residual ->
RMSNorm -> gated GELU(tanh) feed-forward -> residual; a final RMSNorm. UMT5-XXL: 24 layers,
d_model 4096, 64 heads of 64, d_ff 10240, 32 buckets, max distance 128, vocab 256384.

Module names are ours; ``wan_core.text.loader`` maps the official Wan, ComfyUI and transformers
key layouts onto them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["UMT5Config", "UMT5_PRESETS", "UMT5Encoder", "RMSNorm", "relative_position_bucket"]


@dataclass(frozen=True)
class UMT5Config:
    vocab_size: int = 256384
    dim: int = 4096
    attn_dim: int = 4096  # heads * head_dim
    ffn_dim: int = 10240
    num_heads: int = 64
    num_layers: int = 24
    num_buckets: int = 32
    max_distance: int = 128
    eps: float = 1e-6

    @property
    def head_dim(self) -> int:
        return self.attn_dim // self.num_heads


UMT5_PRESETS = {"umt5-xxl": UMT5Config()}


class RMSNorm(nn.Module):
    """T5 layer norm: ``w * x / rms(x)``, statistics in fp32, result in the weight's dtype."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        y = xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        if self.weight.dtype in (torch.float16, torch.bfloat16):
            y = y.to(self.weight.dtype)
        return self.weight * y


def relative_position_bucket(
    relative_position: torch.Tensor, num_buckets: int = 32, max_distance: int = 128
) -> torch.Tensor:
    """Bidirectional T5 bucket of ``key_pos - query_pos``.

    Half the buckets for each direction; within one half, distances below ``n/2`` get their own
    bucket, larger ones share log-spaced buckets up to ``max_distance`` (everything beyond: last one).
    """
    half = num_buckets // 2
    buckets = (relative_position > 0).long() * half
    distance = relative_position.abs()
    exact = half // 2
    # log(0) never reaches the output (torch.where picks the exact branch), clamp to keep it finite
    log_ratio = torch.log(distance.clamp_min(1).float() / exact) / math.log(max_distance / exact)
    large = exact + (log_ratio * (half - exact)).long()
    large = large.clamp_max(half - 1)
    return buckets + torch.where(distance < exact, distance, large)


class UMT5SelfAttention(nn.Module):
    def __init__(self, cfg: UMT5Config):
        super().__init__()
        self.num_heads, self.head_dim = cfg.num_heads, cfg.head_dim
        self.num_buckets, self.max_distance = cfg.num_buckets, cfg.max_distance
        self.q = nn.Linear(cfg.dim, cfg.attn_dim, bias=False)
        self.k = nn.Linear(cfg.dim, cfg.attn_dim, bias=False)
        self.v = nn.Linear(cfg.dim, cfg.attn_dim, bias=False)
        self.o = nn.Linear(cfg.attn_dim, cfg.dim, bias=False)
        self.relative_bias = nn.Embedding(cfg.num_buckets, cfg.num_heads)  # [buckets, heads]

    def position_bias(self, length: int, device: torch.device) -> torch.Tensor:
        pos = torch.arange(length, device=device)
        rel = pos[None, :] - pos[:, None]  # [Lq, Lk]: key - query
        buckets = relative_position_bucket(rel, self.num_buckets, self.max_distance)
        return self.relative_bias(buckets).permute(2, 0, 1)[None]  # [1, heads, Lq, Lk]

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        """x [B, L, dim]; key_bias [B, 1, 1, L] (0 for real tokens, very negative for padding)."""
        b, seq, _ = x.shape
        q = self.q(x).view(b, seq, self.num_heads, self.head_dim).transpose(1, 2)  # [B, heads, L, hd]
        k = self.k(x).view(b, seq, self.num_heads, self.head_dim).transpose(1, 2)
        v = self.v(x).view(b, seq, self.num_heads, self.head_dim).transpose(1, 2)
        bias = self.position_bias(seq, x.device).to(q.dtype) + key_bias.to(q.dtype)  # [B, heads, L, L]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0)  # T5: no scaling
        return self.o(out.transpose(1, 2).reshape(b, seq, -1))


class GatedGeluFFN(nn.Module):
    """``down(gelu_tanh(gate(x)) * up(x))``."""

    def __init__(self, cfg: UMT5Config):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.up_proj = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.down_proj = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.gelu(self.gate_proj(x), approximate="tanh") * self.up_proj(x))


def _clamp_fp16(x: torch.Tensor) -> torch.Tensor:
    # T5 activations can overflow in fp16; keep them finite (no data-dependent branch, no host sync)
    if x.dtype == torch.float16:
        limit = torch.finfo(torch.float16).max - 1000
        x = x.clamp(-limit, limit)
    return x


class UMT5Block(nn.Module):
    def __init__(self, cfg: UMT5Config):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.dim, cfg.eps)
        self.attn = UMT5SelfAttention(cfg)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.eps)
        self.ffn = GatedGeluFFN(cfg)

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        x = _clamp_fp16(x + self.attn(self.attn_norm(x), key_bias))
        return _clamp_fp16(x + self.ffn(self.ffn_norm(x)))


class UMT5Encoder(nn.Module):
    """``ids [B, L] (long), mask [B, L] (1 = token, 0 = padding) -> hidden [B, L, dim]``.

    Rows of padding positions are whatever the network computes there; callers keep the first
    ``seq_len`` rows (``wan_core.text.encode``).
    """

    def __init__(self, cfg: UMT5Config):
        super().__init__()
        self.cfg = cfg
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.blocks = nn.ModuleList([UMT5Block(cfg) for _ in range(cfg.num_layers)])
        self.final_norm = RMSNorm(cfg.dim, cfg.eps)

    @property
    def compute_dtype(self) -> torch.dtype:
        return self.final_norm.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.final_norm.weight.device

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.token_embedding(ids).to(self.compute_dtype)  # [B, L, dim]
        if mask is None:
            mask = torch.ones_like(ids)
        neg = torch.finfo(x.dtype).min
        key_bias = torch.zeros(mask.shape, dtype=x.dtype, device=x.device)
        key_bias = key_bias.masked_fill(mask == 0, neg)[:, None, None, :]  # [B, 1, 1, L]
        for block in self.blocks:
            x = block(x, key_bias)
        return self.final_norm(x)  # [B, L, dim]
