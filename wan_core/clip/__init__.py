"""CLIP ViT-H/14 vision tower for Wan 2.1 I2V / FLF2V image conditioning.

    from wan_core.clip import load_clip_vision, encode_image

    clip = load_clip_vision(path, dtype=None, device="cpu")  # official open-clip .pth (visual.* only)
                                                             # or ComfyUI clip_vision_h.safetensors
    clip_fea = encode_image(clip, image)   # image [B, 3, H, W] in [-1, 1] -> [B, 257, 1280] float32
                                           # (penultimate hidden states; squash resize as official)

Lower level: ``clip_preprocess(images, mode="squash" | "center_crop", value_range=(-1, 1))`` ->
normalized ``[B, 3, 224, 224]``; ``clip.encode(pixels)`` -> ``[B, 257, 1280]``.
"""

from .clip_encode import encode_image
from .clip_loader import load_clip_vision
from .clip_preprocess import CLIP_MEAN, CLIP_STD, clip_preprocess
from .clip_vision import CLIP_VISION_PRESETS, CLIPVisionConfig, CLIPVisionTower

__all__ = [
    "encode_image",
    "load_clip_vision",
    "clip_preprocess",
    "CLIP_MEAN",
    "CLIP_STD",
    "CLIP_VISION_PRESETS",
    "CLIPVisionConfig",
    "CLIPVisionTower",
]
