"""CLIP ViT vision tower (ViT-H/14 for Wan 2.1 I2V / FLF2V), written from the architecture facts.

Patch conv (no bias) -> prepend class token -> + learned positions -> pre LayerNorm -> pre-norm
transformer blocks (fused qkv attention, GELU MLP) -> post LayerNorm -> projection.
Wan uses the *penultimate* hidden states: the tokens after all blocks but the last, no post norm
(``encode``: ``[B, 257, 1280]`` = transformers ``hidden_states[-2]`` = official
``visual(x, use_31_block=True)`` = ComfyUI ``penultimate_hidden_states``).

Module names are ours; ``wan_core.clip.clip_loader`` maps the official Wan (open-clip XLM-RoBERTa
ViT-H/14 ``visual.*``), transformers / ComfyUI and open_clip layouts onto them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CLIPVisionConfig", "CLIP_VISION_PRESETS", "CLIPVisionTower"]


@dataclass(frozen=True)
class CLIPVisionConfig:
    image_size: int = 224
    patch_size: int = 14
    dim: int = 1280
    num_heads: int = 16
    num_layers: int = 32
    mlp_dim: int = 5120
    projection_dim: int = 1024  # 0: no projection head in the file
    eps: float = 1e-5

    @property
    def num_positions(self) -> int:
        return (self.image_size // self.patch_size) ** 2 + 1


CLIP_VISION_PRESETS = {"vit-h-14": CLIPVisionConfig()}


class FP32LayerNorm(nn.LayerNorm):
    """LayerNorm computed in fp32, returned in the input dtype (as the official Wan CLIP)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(
            x.float(), self.normalized_shape, self.weight.float(), self.bias.float(), self.eps
        ).type_as(x)


class ViTBlock(nn.Module):
    def __init__(self, cfg: CLIPVisionConfig):
        super().__init__()
        self.num_heads = cfg.num_heads
        self.attn_norm = FP32LayerNorm(cfg.dim, eps=cfg.eps)
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim)  # rows: [q; k; v], heads contiguous in each
        self.out_proj = nn.Linear(cfg.dim, cfg.dim)
        self.mlp_norm = FP32LayerNorm(cfg.dim, eps=cfg.eps)
        self.fc1 = nn.Linear(cfg.dim, cfg.mlp_dim)
        self.fc2 = nn.Linear(cfg.mlp_dim, cfg.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, seq, dim = x.shape
        qkv = self.qkv(self.attn_norm(x)).view(b, seq, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, heads, L, head_dim]
        attn = F.scaled_dot_product_attention(q, k, v)
        x = x + self.out_proj(attn.transpose(1, 2).reshape(b, seq, dim))
        return x + self.fc2(F.gelu(self.fc1(self.mlp_norm(x))))


class CLIPVisionTower(nn.Module):
    """``pixels [B, 3, S, S]`` (normalized, ``clip_preprocess``) -> tokens ``[B, 1 + (S/p)^2, dim]``."""

    def __init__(self, cfg: CLIPVisionConfig):
        super().__init__()
        self.cfg = cfg
        self.patch_embedding = nn.Conv2d(3, cfg.dim, cfg.patch_size, stride=cfg.patch_size, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(cfg.dim))
        self.position_embedding = nn.Parameter(torch.zeros(cfg.num_positions, cfg.dim))
        self.pre_norm = FP32LayerNorm(cfg.dim, eps=cfg.eps)
        self.blocks = nn.ModuleList([ViTBlock(cfg) for _ in range(cfg.num_layers)])
        self.post_norm = FP32LayerNorm(cfg.dim, eps=cfg.eps)
        self.projection = nn.Linear(cfg.dim, cfg.projection_dim, bias=False) if cfg.projection_dim else None

    @property
    def dtype(self) -> torch.dtype:
        return self.patch_embedding.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.patch_embedding.weight.device

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        size = self.cfg.image_size
        if pixels.ndim != 4 or pixels.shape[1] != 3 or pixels.shape[-2:] != (size, size):
            raise ValueError(
                f"CLIP vision expects pixels [B, 3, {size}, {size}] (use clip_preprocess), got {tuple(pixels.shape)}"
            )
        x = self.patch_embedding(pixels.to(self.dtype)).flatten(2).transpose(1, 2)  # [B, N, dim]
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.position_embedding.to(x.dtype)  # [B, 1 + N, dim]
        return self.pre_norm(x)

    def hidden_states(self, pixels: torch.Tensor, num_blocks: int | None = None) -> torch.Tensor:
        """Tokens after the first ``num_blocks`` blocks (all by default), no post norm."""
        x = self.embed(pixels)
        for block in self.blocks[: self.cfg.num_layers if num_blocks is None else num_blocks]:
            x = block(x)
        return x

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Penultimate hidden states ``[B, 257, 1280]`` for ViT-H/14: Wan's ``clip_fea``."""
        return self.hidden_states(pixels, self.cfg.num_layers - 1)

    def image_embeds(self, pixels: torch.Tensor) -> torch.Tensor:
        """Projected class token ``[B, projection_dim]`` (not used by Wan; for completeness)."""
        if self.projection is None:
            raise ValueError("this CLIP vision file has no projection head")
        return self.projection(self.post_norm(self.hidden_states(pixels))[:, 0])

    forward = encode
