"""Wan VAE 2.1: causal 3D VAE, z 16, 8x spatial, 4x temporal (Wan2.1 and Wan2.2 A14B models).

Same module names as the official ``wan/modules/vae2_1.py`` ``WanVAE_`` (so ``Wan2.1_VAE.pth`` and
ComfyUI ``wan_2.1_vae.safetensors`` load as they are). Streaming API: see ``causal_vae.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .causal_conv import (
    AttentionBlock,
    CausalConv3d,
    CausalConvCache,
    Resample,
    ResidualBlock,
    RMSNorm,
    run_layers,
)
from .causal_vae import WanCausalVAE

__all__ = ["WanVAE21Config", "WAN21_VAE_PRESETS", "WanVAE21", "Encoder21", "Decoder21"]


@dataclass(frozen=True)
class WanVAE21Config:
    dim: int = 96  # base width; levels are dim * dim_mult
    z_dim: int = 16
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2  # encoder; the decoder has one more per level
    temporal_downsample: tuple[bool, ...] = (False, True, True)


WAN21_VAE_PRESETS = {"wan2.1": WanVAE21Config()}


def _head(dim: int, out: int) -> nn.Sequential:
    return nn.Sequential(RMSNorm(dim), nn.SiLU(inplace=True), CausalConv3d(dim, out, 3, padding=1))


class Encoder21(nn.Module):
    """[B, 3, F, H, W] -> [B, 2 z, T, H/8, W/8] (mu ‖ logvar before ``conv1``)."""

    def __init__(self, cfg: WanVAE21Config):
        super().__init__()
        dims = [cfg.dim * u for u in (1, *cfg.dim_mult)]
        self.conv1 = CausalConv3d(3, dims[0], 3, padding=1)
        layers: list[nn.Module] = []
        for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
            for _ in range(cfg.num_res_blocks):
                layers.append(ResidualBlock(in_dim, out_dim))
                in_dim = out_dim
            if i != len(cfg.dim_mult) - 1:
                mode = "downsample3d" if cfg.temporal_downsample[i] else "downsample2d"
                layers.append(Resample(out_dim, mode))
        self.downsamples = nn.Sequential(*layers)
        c = dims[-1]
        self.middle = nn.Sequential(ResidualBlock(c, c), AttentionBlock(c), ResidualBlock(c, c))
        self.head = _head(c, cfg.z_dim * 2)

    def forward(self, x: torch.Tensor, cache: CausalConvCache) -> torch.Tensor:
        x = self.conv1(x, cache)
        x = run_layers(self.downsamples, x, cache)
        x = run_layers(self.middle, x, cache)
        return run_layers(self.head, x, cache)


class Decoder21(nn.Module):
    """[B, z, T, h, w] (after ``conv2``) -> [B, 3, F, 8h, 8w]; the up-samplers halve the channels."""

    def __init__(self, cfg: WanVAE21Config):
        super().__init__()
        mult = cfg.dim_mult
        dims = [cfg.dim * u for u in (mult[-1], *mult[::-1])]
        temporal_upsample = tuple(cfg.temporal_downsample[::-1])
        self.conv1 = CausalConv3d(cfg.z_dim, dims[0], 3, padding=1)
        c = dims[0]
        self.middle = nn.Sequential(ResidualBlock(c, c), AttentionBlock(c), ResidualBlock(c, c))
        layers: list[nn.Module] = []
        for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
            if i > 0:
                in_dim //= 2  # the previous up-sampler halved the channels
            for _ in range(cfg.num_res_blocks + 1):
                layers.append(ResidualBlock(in_dim, out_dim))
                in_dim = out_dim
            if i != len(mult) - 1:
                mode = "upsample3d" if temporal_upsample[i] else "upsample2d"
                layers.append(Resample(out_dim, mode, out_dim=out_dim // 2))
        self.upsamples = nn.Sequential(*layers)
        self.head = _head(dims[-1], 3)

    def forward(self, x: torch.Tensor, cache: CausalConvCache) -> torch.Tensor:
        x = self.conv1(x, cache)
        x = run_layers(self.middle, x, cache)
        x = run_layers(self.upsamples, x, cache)
        return run_layers(self.head, x, cache)


class WanVAE21(WanCausalVAE):
    """Wan VAE 2.1 (126.9 M params at the real size). Latents in/out are normalized by default."""

    name = "Wan VAE 2.1"
    spatial_scale = 8
    temporal_scale = 4
    patch_size = 1

    def __init__(self, config: WanVAE21Config | None = None):
        super().__init__()
        self.config = config or WanVAE21Config()
        self.z_dim = self.config.z_dim
        self.spatial_scale = 2 ** (len(self.config.dim_mult) - 1)
        self.temporal_scale = 2 ** sum(self.config.temporal_downsample)
        self.encoder = Encoder21(self.config)
        self.decoder = Decoder21(self.config)
        self._finish_init()
