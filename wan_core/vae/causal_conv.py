"""Causal 3D building blocks of the Wan VAEs (2.1 and 2.2) and their explicit streaming cache.

A causal conv with temporal kernel ``k`` sees, for every output frame, its own input frame and the
``k - 1`` frames before it (zeros before the first frame). To run a video chunk by chunk, each such
conv keeps the last ``k - 1`` input frames of the previous chunk in a :class:`CausalConvCache` slot;
starting from zeros makes the first chunk identical to the zero padding of a whole-video pass, so a
video processed in any split into chunks gives the same frames as the whole video (up to float
rounding), as long as every chunk honours the temporal stride (see ``WanVAE.encode_chunk``).

Module and parameter names follow the official ``wan/modules/vae2_1.py`` / ``vae2_2.py`` so that the
official ``.pth`` and ComfyUI ``.safetensors`` files load without renaming
(``residual.{0,2,3,6}``, ``shortcut``, ``norm.gamma``, ``to_qkv``, ``proj``, ``resample.1``, ``time_conv``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "CausalConvCache",
    "CausalConv3d",
    "RMSNorm",
    "ResidualBlock",
    "AttentionBlock",
    "Resample",
    "assign_cache_slots",
    "run_layers",
]


class CausalConvCache:
    """Per-stream state of one VAE encoder or decoder: the last input frames of every causal conv.

    ``history[slot]`` is ``[B, C, k-1, H, W]`` (or ``None`` = zeros, nothing seen yet) for the causal
    conv whose ``slot`` attribute is ``slot``. ``first_chunk`` is true until the first chunk has gone
    through: the temporal up/down-samplers treat the very first frame of a video on its own (it is
    not doubled when decoding and not paired when encoding), exactly like the official frame loop.

    One cache per video stream (and per spatial tile when tiling); make a new one (or ``reset()``)
    for a new video. The tensors live on the device / dtype of the activations that filled them.
    """

    def __init__(self, num_slots: int):
        self.history: list[torch.Tensor | None] = [None] * num_slots
        self.first_chunk = True
        self.frames_in = 0  # frames (encoder) or latent frames (decoder) consumed so far
        self.frames_out = 0  # latent frames (encoder) or pixel frames (decoder) produced so far

    def reset(self) -> None:
        self.history = [None] * len(self.history)
        self.first_chunk = True
        self.frames_in = 0
        self.frames_out = 0

    def __len__(self) -> int:
        return len(self.history)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.history if t is not None)

    def store(self, slot: int, frames: torch.Tensor) -> None:
        """Keep ``frames`` as the history of ``slot``: copied in place into the existing buffer when
        the shape matches (stable addresses after the first chunk, e.g. for CUDA graphs)."""
        buf = self.history[slot]
        if buf is not None and buf.shape == frames.shape and buf.dtype == frames.dtype:
            buf.copy_(frames)
        else:
            self.history[slot] = frames.clone()


class CausalConv3d(nn.Conv3d):
    """Conv3d padded causally in time (``2 * pad_t`` frames before, none after), symmetric in space.

    ``forward(x, cache)``: ``x`` [B, C_in, T, H, W] -> [B, C_out, T', H', W']. With a temporal kernel
    > 1 the conv reads its history from ``cache.history[self.slot]`` (zeros when empty) and stores its
    last ``k_t - 1`` input frames back. Temporal stride must be 1 (the stride-2 time conv of the
    encoder's down-sampler is handled by :class:`Resample`).
    """

    slot: int = -1
    takes_cache = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size, padding=0, stride=1):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0)
        pad = (padding,) * 3 if isinstance(padding, int) else tuple(padding)
        self.time_history = 2 * pad[0]  # frames of history this conv needs
        self.space_padding = (0, pad[1], pad[2])

    def forward(self, x: torch.Tensor, cache: CausalConvCache | None = None) -> torch.Tensor:
        n = self.time_history
        if n > 0:
            past = cache.history[self.slot] if cache is not None else None
            if past is None:
                past = x.new_zeros(x.shape[0], x.shape[1], n, x.shape[3], x.shape[4])
            x = torch.cat([past.to(x.dtype), x], dim=2)  # [B, C, n + T, H, W]
            if cache is not None:
                cache.store(self.slot, x[:, :, -n:])
        return F.conv3d(x, self.weight, self.bias, self.stride, self.space_padding)


def assign_cache_slots(module: nn.Module) -> int:
    """Number every layer of ``module`` that keeps temporal history; returns the slot count.

    Those are the causal convs with a temporal kernel > 1 and the stride-2 temporal down-samplers.
    """
    n = 0
    for m in module.modules():
        if (isinstance(m, CausalConv3d) and m.time_history > 0) or (
            isinstance(m, Resample) and m.mode == "downsample3d"
        ):
            m.slot = n
            n += 1
    return n


def run_layers(layers: nn.Sequential, x: torch.Tensor, cache: CausalConvCache) -> torch.Tensor:
    """Apply ``layers`` in order, passing ``cache`` to the layers that take one."""
    for layer in layers:
        x = layer(x, cache) if getattr(layer, "takes_cache", False) else layer(x)
    return x


class RMSNorm(nn.Module):
    """``F.normalize`` over channels (dim 1) times ``sqrt(C) * gamma`` (official ``RMS_norm``).

    ``gamma`` is ``[C, 1, 1, 1]`` for 5-D video activations and ``[C, 1, 1]`` for per-frame images.
    """

    def __init__(self, dim: int, images: bool = False):
        super().__init__()
        self.scale = dim**0.5
        self.gamma = nn.Parameter(torch.ones((dim, 1, 1) if images else (dim, 1, 1, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.normalize(x, dim=1)  # fresh tensor: scaled in place to save one full-size temporary
        return y.mul_(self.scale * self.gamma)


class ResidualBlock(nn.Module):
    """RMS -> SiLU -> causal conv 3x3x3 -> RMS -> SiLU -> causal conv, plus a 1x1x1 shortcut."""

    takes_cache = True

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.residual = nn.Sequential(
            RMSNorm(in_dim),
            nn.SiLU(inplace=True),  # acts on the norm's fresh output
            CausalConv3d(in_dim, out_dim, 3, padding=1),
            RMSNorm(out_dim),
            nn.SiLU(inplace=True),
            nn.Identity(),  # dropout slot in the official layout (keeps the key indices)
            CausalConv3d(out_dim, out_dim, 3, padding=1),
        )
        self.shortcut = CausalConv3d(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()

    def forward(self, x: torch.Tensor, cache: CausalConvCache) -> torch.Tensor:
        # x: [B, C_in, T, H, W] -> [B, C_out, T, H, W]
        h = self.shortcut(x)
        return run_layers(self.residual, x, cache) + h


class AttentionBlock(nn.Module):
    """Single-head self-attention over the pixels of each frame (no attention across time)."""

    takes_cache = True

    def __init__(self, dim: int):
        super().__init__()
        self.norm = RMSNorm(dim, images=True)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor, cache: CausalConvCache | None = None) -> torch.Tensor:
        b, c, t, h, w = x.shape
        identity = x
        x = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        qkv = self.to_qkv(self.norm(x))  # [B*T, 3C, H, W]
        q, k, v = qkv.reshape(b * t, 1, 3 * c, h * w).transpose(-1, -2).chunk(3, dim=-1)  # [B*T, 1, HW, C]
        x = F.scaled_dot_product_attention(q, k, v)
        x = x.squeeze(1).transpose(1, 2).reshape(b * t, c, h, w)
        x = self.proj(x)
        return x.reshape(b, t, c, h, w).permute(0, 2, 1, 3, 4) + identity


def _per_frame(fn, x: torch.Tensor) -> torch.Tensor:
    """Apply a 2-D image op to every frame of ``x`` [B, C, T, H, W]."""
    b, _, t = x.shape[:3]
    y = fn(x.transpose(1, 2).flatten(0, 1))  # [B*T, C', H', W']
    return y.unflatten(0, (b, t)).transpose(1, 2)


class _NearestUp2x(nn.Module):
    """Nearest-exact x2 in the input dtype (a pure copy, so bf16 gives the fp32 result bit for bit;
    the official code upcasts to fp32 first, which doubles the largest activation's memory)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="nearest-exact")


class Resample(nn.Module):
    """Spatial x2 up/down-sampling per frame, with an optional causal temporal x2 (the ``3d`` modes).

    - ``upsample2d``: nearest x2 + conv 3x3 (``dim -> out_dim``).
    - ``upsample3d``: first ``time_conv`` (causal, ``dim -> 2 dim``) turns every frame into 2
      frames, except the first frame of a video which passes alone; then as ``upsample2d``.
    - ``downsample2d``: zero pad right/bottom + conv 3x3 stride 2.
    - ``downsample3d``: as ``downsample2d``, then ``time_conv`` (kernel 3, stride 2) pairs frames:
      the first frame of a video passes alone, output ``k >= 1`` sees input frames ``2k-2 .. 2k``.
      Chunks after the first must have an even number of frames.
    """

    takes_cache = True

    def __init__(self, dim: int, mode: str, out_dim: int | None = None):
        super().__init__()
        self.mode = mode
        out_dim = dim if out_dim is None else out_dim
        if mode in ("upsample2d", "upsample3d"):
            self.resample = nn.Sequential(_NearestUp2x(), nn.Conv2d(dim, out_dim, 3, padding=1))
            if mode == "upsample3d":
                self.time_conv = CausalConv3d(dim, dim * 2, (3, 1, 1), padding=(1, 0, 0))
        elif mode in ("downsample2d", "downsample3d"):
            self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(dim, dim, 3, stride=2))
            if mode == "downsample3d":
                self.time_conv = nn.Conv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1))
                self.slot = -1  # history: the last frame of the previous chunk
        else:
            raise ValueError(f"unknown resample mode {mode!r}")

    def forward(self, x: torch.Tensor, cache: CausalConvCache) -> torch.Tensor:
        if self.mode == "upsample3d":
            x = self._time_double(x, cache)
        x = _per_frame(self.resample, x)
        if self.mode == "downsample3d":
            x = self._time_halve(x, cache)
        return x

    def _time_double(self, x: torch.Tensor, cache: CausalConvCache) -> torch.Tensor:
        # [B, C, T, H, W] -> [B, C, 2T (first chunk: 2T - 1), H, W]
        head = None
        if cache.first_chunk:
            head, x = x[:, :, :1], x[:, :, 1:]
        if x.shape[2] > 0:
            b, c, t, h, w = x.shape
            y = self.time_conv(x, cache).view(b, 2, c, t, h, w)
            x = y.permute(0, 2, 3, 1, 4, 5).reshape(b, c, 2 * t, h, w)  # frame 2t+j <- channel block j
        return x if head is None else torch.cat([head, x], dim=2)

    def _time_halve(self, x: torch.Tensor, cache: CausalConvCache) -> torch.Tensor:
        # [B, C, T, H, W] -> first chunk (T odd): 1 + (T-1)/2 frames; later (T even): T/2
        if cache.first_chunk:
            head = x[:, :, :1]
            y = self.time_conv(x) if x.shape[2] >= 3 else x[:, :, :0]
            out = torch.cat([head, y], dim=2)
        else:
            past = cache.history[self.slot]
            out = self.time_conv(torch.cat([past.to(x.dtype), x], dim=2))
        cache.store(self.slot, x[:, :, -1:])
        return out
