"""Image preprocessing for the CLIP vision tower.

``images [B, 3, H, W]`` with values in ``value_range`` (default ``(-1, 1)``, wan_core's frame
convention; pass ``(0, 1)`` for ComfyUI IMAGEs after ``.movedim(-1, 1)``) -> normalized
``[B, 3, 224, 224]`` float32.

- ``mode="squash"`` (official Wan 2.1 ``CLIPModel.visual``): bicubic resize of the whole image to
  224x224 (aspect ratio not kept, no antialias, no crop), then to [0, 1], then CLIP mean/std.
- ``mode="center_crop"`` (ComfyUI ``clip_preprocess``, crop=True): shortest side to 224 (bicubic,
  antialias), center crop, quantize to 8 bit, CLIP mean/std. An image already 224x224 is not resized.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["clip_preprocess", "CLIP_MEAN", "CLIP_STD"]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _normalize(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(CLIP_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


def clip_preprocess(
    images: torch.Tensor,
    mode: str = "squash",
    size: int = 224,
    value_range: tuple[float, float] = (-1.0, 1.0),
) -> torch.Tensor:
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"clip_preprocess expects images [B, 3, H, W], got {tuple(images.shape)}")
    lo, hi = value_range
    if hi <= lo:
        raise ValueError(f"value_range must be (low, high) with low < high, got {value_range}")
    x = images.float()
    if mode == "squash":
        # resize in the input range first (as official), the affine map to [0, 1] commutes with it
        x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)
        return _normalize((x - lo) / (hi - lo))
    if mode == "center_crop":
        x = (x - lo) / (hi - lo)
        h, w = x.shape[-2:]
        if (h, w) != (size, size):
            scale = size / min(h, w)
            x = F.interpolate(x, size=(round(scale * h), round(scale * w)), mode="bicubic", antialias=True)
            top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
            x = x[:, :, top : top + size, left : left + size]
        x = torch.clamp(x * 255.0, 0, 255).round() / 255.0
        return _normalize(x)
    raise ValueError(f"mode must be 'squash' (official Wan) or 'center_crop' (ComfyUI), got {mode!r}")
