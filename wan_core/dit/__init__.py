"""Wan 2.1 / 2.2 DiT: config, model, RoPE, streaming caches, checkpoint loading."""

from .config import BOUNDARIES, PRESETS, WanDiTConfig, config_from_shapes
from .kv_cache import CrossAttnCache, RollingKVCache
from .model import DualExpertDiT, WanDiT

__all__ = [
    "BOUNDARIES",
    "PRESETS",
    "WanDiTConfig",
    "config_from_shapes",
    "CrossAttnCache",
    "RollingKVCache",
    "WanDiT",
    "DualExpertDiT",
]
