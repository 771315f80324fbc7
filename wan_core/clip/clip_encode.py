"""Wan 2.1 I2V / FLF2V image features: ``encode_image(clip, image) -> clip_fea``.

The official ``CLIPModel.visual`` path (Wan 2.1 ``clip.py``): the image in [-1, 1] is resized to the
tower's input size (``mode="squash"``, see ``clip_preprocess``) and the penultimate hidden states of
the vision tower are the DiT's ``clip_fea`` (``[B, 257, 1280]`` for ViT-H/14).
"""

from __future__ import annotations

import torch

from .clip_preprocess import clip_preprocess
from .clip_vision import CLIPVisionTower

__all__ = ["encode_image"]


@torch.no_grad()
def encode_image(clip: CLIPVisionTower, image: torch.Tensor) -> torch.Tensor:
    """``image [B, 3, H, W]`` in [-1, 1] on any device -> ``clip_fea [B, 257, 1280]`` float32 on the
    tower's device (preprocessed there in float32, run in the tower's dtype)."""
    pixels = clip_preprocess(image.to(clip.device).float(), mode="squash", size=clip.cfg.image_size)
    return clip.encode(pixels.to(clip.dtype)).float()
