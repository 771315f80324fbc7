"""Wan VAE 2.2: causal 3D VAE, z 48, 16x spatial (2x2 patchify + 8x), 4x temporal (Wan2.2 TI2V 5B).

Residual down / up levels with parameter-free shortcuts (average-pool down, duplicate up). Same module
names as the official ``wan/modules/vae2_2.py`` ``WanVAE_`` (``Wan2.2_VAE.pth`` and ComfyUI
``wan2.2_vae.safetensors`` load as they are). Streaming API: see ``causal_vae.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
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

__all__ = ["WanVAE22Config", "WAN22_VAE_PRESETS", "WanVAE22", "Encoder22", "Decoder22"]


@dataclass(frozen=True)
class WanVAE22Config:
    dim: int = 160  # encoder base width
    dec_dim: int = 256  # decoder base width
    z_dim: int = 48
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2  # encoder; the decoder has one more per level
    temporal_downsample: tuple[bool, ...] = (False, True, True)
    patch_size: int = 2


WAN22_VAE_PRESETS = {"wan2.2": WanVAE22Config()}


def _avg_down(x: torch.Tensor, out_ch: int, ft: int, fs: int) -> torch.Tensor:
    """Parameter-free shortcut: fold ``ft x fs x fs`` blocks into channels and average groups.

    [B, C, T, H, W] -> [B, out_ch, ceil(T / ft), H / fs, W / fs]; an odd chunk (the first) gets a zero
    frame in front, as the official ``AvgDown3D``.
    """
    pad_t = -x.shape[2] % ft
    if pad_t:
        x = F.pad(x, (0, 0, 0, 0, pad_t, 0))
    b, c, t, h, w = x.shape
    x = x.view(b, c, t // ft, ft, h // fs, fs, w // fs, fs)
    x = x.permute(0, 1, 3, 5, 7, 2, 4, 6).reshape(b, c * ft * fs * fs, t // ft, h // fs, w // fs)
    return x.view(b, out_ch, -1, t // ft, h // fs, w // fs).mean(dim=2)


def _dup_up(x: torch.Tensor, out_ch: int, ft: int, fs: int, first_chunk: bool) -> torch.Tensor:
    """Parameter-free shortcut: repeat channels and unfold them into ``ft x fs x fs`` blocks.

    [B, C, T, H, W] -> [B, out_ch, ft T (first chunk: ft T - ft + 1), fs H, fs W].
    """
    b, c, t, h, w = x.shape
    repeats = out_ch * ft * fs * fs // c
    x = x.repeat_interleave(repeats, dim=1).view(b, out_ch, ft, fs, fs, t, h, w)
    x = x.permute(0, 1, 5, 2, 6, 3, 7, 4).reshape(b, out_ch, t * ft, h * fs, w * fs)
    return x[:, :, ft - 1 :] if first_chunk else x


class DownLevel(nn.Module):
    """``downsamples`` (res blocks + optional down-sampler) plus the average-pool shortcut."""

    takes_cache = True

    def __init__(self, in_dim: int, out_dim: int, num_res: int, temporal: bool, down: bool):
        super().__init__()
        self.out_dim, self.ft, self.fs = out_dim, (2 if temporal else 1), (2 if down else 1)
        layers: list[nn.Module] = []
        for _ in range(num_res):
            layers.append(ResidualBlock(in_dim, out_dim))
            in_dim = out_dim
        if down:
            layers.append(Resample(out_dim, "downsample3d" if temporal else "downsample2d"))
        self.downsamples = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, cache: CausalConvCache) -> torch.Tensor:
        return run_layers(self.downsamples, x, cache) + _avg_down(x, self.out_dim, self.ft, self.fs)


class UpLevel(nn.Module):
    """``upsamples`` (res blocks + optional up-sampler) plus the duplicate shortcut (up levels only)."""

    takes_cache = True

    def __init__(self, in_dim: int, out_dim: int, num_res: int, temporal: bool, up: bool):
        super().__init__()
        self.out_dim, self.ft, self.up = out_dim, (2 if temporal else 1), up
        layers: list[nn.Module] = []
        for _ in range(num_res):
            layers.append(ResidualBlock(in_dim, out_dim))
            in_dim = out_dim
        if up:
            layers.append(Resample(out_dim, "upsample3d" if temporal else "upsample2d"))
        self.upsamples = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, cache: CausalConvCache) -> torch.Tensor:
        first = cache.first_chunk
        main = run_layers(self.upsamples, x, cache)
        if not self.up:
            return main
        return main + _dup_up(x, self.out_dim, self.ft, 2, first)


def _head(dim: int, out: int) -> nn.Sequential:
    return nn.Sequential(RMSNorm(dim), nn.SiLU(inplace=True), CausalConv3d(dim, out, 3, padding=1))


class Encoder22(nn.Module):
    """[B, 12, F, H/2, W/2] (patchified) -> [B, 2 z, T, H/16, W/16]."""

    def __init__(self, cfg: WanVAE22Config):
        super().__init__()
        dims = [cfg.dim * u for u in (1, *cfg.dim_mult)]
        p2 = cfg.patch_size**2
        self.conv1 = CausalConv3d(3 * p2, dims[0], 3, padding=1)
        levels = []
        for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
            temporal = cfg.temporal_downsample[i] if i < len(cfg.temporal_downsample) else False
            levels.append(
                DownLevel(in_dim, out_dim, cfg.num_res_blocks, temporal, i != len(cfg.dim_mult) - 1)
            )
        self.downsamples = nn.Sequential(*levels)
        c = dims[-1]
        self.middle = nn.Sequential(ResidualBlock(c, c), AttentionBlock(c), ResidualBlock(c, c))
        self.head = _head(c, cfg.z_dim * 2)

    def forward(self, x: torch.Tensor, cache: CausalConvCache) -> torch.Tensor:
        x = self.conv1(x, cache)
        x = run_layers(self.downsamples, x, cache)
        x = run_layers(self.middle, x, cache)
        return run_layers(self.head, x, cache)


class Decoder22(nn.Module):
    """[B, z, T, h, w] (after ``conv2``) -> [B, 12, F, 8h, 8w] (unpatchified by the wrapper)."""

    def __init__(self, cfg: WanVAE22Config):
        super().__init__()
        mult = cfg.dim_mult
        dims = [cfg.dec_dim * u for u in (mult[-1], *mult[::-1])]
        temporal_upsample = tuple(cfg.temporal_downsample[::-1])
        self.conv1 = CausalConv3d(cfg.z_dim, dims[0], 3, padding=1)
        c = dims[0]
        self.middle = nn.Sequential(ResidualBlock(c, c), AttentionBlock(c), ResidualBlock(c, c))
        levels = []
        for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
            temporal = temporal_upsample[i] if i < len(temporal_upsample) else False
            levels.append(UpLevel(in_dim, out_dim, cfg.num_res_blocks + 1, temporal, i != len(mult) - 1))
        self.upsamples = nn.Sequential(*levels)
        self.head = _head(dims[-1], 3 * cfg.patch_size**2)

    def forward(self, x: torch.Tensor, cache: CausalConvCache) -> torch.Tensor:
        x = self.conv1(x, cache)
        x = run_layers(self.middle, x, cache)
        x = run_layers(self.upsamples, x, cache)
        return run_layers(self.head, x, cache)


class WanVAE22(WanCausalVAE):
    """Wan VAE 2.2 (705 M params at the real size). Latents in/out are normalized by default."""

    name = "Wan VAE 2.2"

    def __init__(self, config: WanVAE22Config | None = None):
        super().__init__()
        self.config = config or WanVAE22Config()
        self.z_dim = self.config.z_dim
        self.patch_size = self.config.patch_size
        self.spatial_scale = self.patch_size * 2 ** (len(self.config.dim_mult) - 1)
        self.temporal_scale = 2 ** sum(self.config.temporal_downsample)
        self.encoder = Encoder22(self.config)
        self.decoder = Decoder22(self.config)
        self._finish_init()
