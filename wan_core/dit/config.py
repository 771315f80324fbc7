"""Configuration of every Wan 2.1 / 2.2 DiT, and its inference from a checkpoint's keys and shapes.

Sizes from the official configs (FACTS 1a): head_dim is 128 in every released model, patch (1, 2, 2),
sinusoidal time embedding of 256, umT5 text features of 4096 padded to 512 tokens, eps 1e-6.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

__all__ = ["WanDiTConfig", "PRESETS", "BOUNDARIES", "config_from_shapes", "preset_name_for"]

MODEL_TYPES = ("t2v", "i2v", "flf2v", "ti2v")


@dataclass(frozen=True)
class WanDiTConfig:
    """One Wan DiT. ``model_type``:

    - ``t2v``: text to video (in_dim == out_dim, 16 channels);
    - ``i2v``: image to video with a conditioning latent ``y`` concatenated on channels (in_dim 36 =
      16 noise + 4 mask + 16 image latent); Wan2.1 I2V adds CLIP image cross-attention
      (``image_cross_attn=True``), Wan2.2 I2V A14B does not;
    - ``flf2v``: first-last-frame (Wan2.1 FLF2V 14B): i2v + a learned position table ``img_emb.emb_pos``
      over the two images' 2x257 CLIP tokens;
    - ``ti2v``: Wan2.2 TI2V 5B (48 channels, no ``y``; the image replaces latent frame 0, whose tokens
      get timestep 0 via per-token timesteps).
    """

    dim: int = 1536
    ffn_dim: int = 8960
    num_heads: int = 12
    num_layers: int = 30
    in_dim: int = 16
    out_dim: int = 16
    model_type: str = "t2v"
    image_cross_attn: bool = False  # CLIP image tokens cross-attention (Wan2.1 I2V / FLF2V)
    text_len: int = 512
    text_dim: int = 4096
    freq_dim: int = 256
    patch: tuple[int, int, int] = (1, 2, 2)
    eps: float = 1e-6
    clip_dim: int = 1280
    clip_tokens: int = 257  # per image; FLF2V uses 2 images
    rope_theta: float = 10000.0
    rope_max_positions: int = 1024  # length of the official RoPE table per axis

    def __post_init__(self):
        if self.model_type not in MODEL_TYPES:
            raise ValueError(f"model_type must be one of {MODEL_TYPES}, got '{self.model_type}'")
        if self.dim % self.num_heads:
            raise ValueError(f"dim {self.dim} is not divisible by num_heads {self.num_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim {self.head_dim} must be even for RoPE")
        if self.model_type == "flf2v" and not self.image_cross_attn:
            raise ValueError("flf2v needs image_cross_attn=True")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def cond_dim(self) -> int:
        """Channels of the conditioning latent ``y`` concatenated to the noise (0 when none)."""
        return self.in_dim - self.out_dim if self.model_type in ("i2v", "flf2v") else 0

    @property
    def image_tokens(self) -> int:
        return 2 * self.clip_tokens if self.model_type == "flf2v" else self.clip_tokens


_14B = dict(dim=5120, ffn_dim=13824, num_heads=40, num_layers=40)

PRESETS: dict[str, WanDiTConfig] = {
    "wan2.1-t2v-1.3b": WanDiTConfig(dim=1536, ffn_dim=8960, num_heads=12, num_layers=30),
    "wan2.1-t2v-14b": WanDiTConfig(**_14B),
    "wan2.1-i2v-14b": WanDiTConfig(**_14B, in_dim=36, model_type="i2v", image_cross_attn=True),
    "wan2.1-flf2v-14b": WanDiTConfig(**_14B, in_dim=36, model_type="flf2v", image_cross_attn=True),
    "wan2.2-ti2v-5b": WanDiTConfig(
        dim=3072, ffn_dim=14336, num_heads=24, num_layers=30, in_dim=48, out_dim=48, model_type="ti2v"
    ),
    # A14B: one config per expert (high_noise_model / low_noise_model share it)
    "wan2.2-t2v-a14b": WanDiTConfig(**_14B),
    "wan2.2-i2v-a14b": WanDiTConfig(**_14B, in_dim=36, model_type="i2v"),
}

# Wan2.2 A14B: timestep t >= boundary * 1000 -> high-noise expert (W22 configs, diffusers boundary_ratio).
BOUNDARIES = {"wan2.2-t2v-a14b": 0.875, "wan2.2-i2v-a14b": 0.900}

_UNSUPPORTED_FAMILIES = {
    "vace_": "Wan VACE",
    "control_adapter.": "Wan Fun control",
    "casual_audio_encoder.": "Wan S2V",
    "audio_proj.": "HuMo",
    "face_adapter.": "Wan Animate",
    "ref_conv.": "Wan Fun reference",
    "motion_encoder.": "Wan Animate",
}


def unsupported_family(keys) -> str | None:
    """Name of a known Wan variant with extra modules this pack does not implement, else None."""
    for k in keys:
        for prefix, name in _UNSUPPORTED_FAMILIES.items():
            if k.startswith(prefix):
                return name
    return None


def config_from_shapes(shapes: dict[str, tuple], head_dim: int = 128) -> WanDiTConfig:
    """Infer the config from official-named keys (prefix stripped, diffusers names mapped back).

    Every released Wan DiT uses head_dim 128; pass ``head_dim`` for other (test) sizes.
    """
    need = ("head.modulation", "patch_embedding.weight", "head.head.weight", "blocks.0.ffn.0.weight")
    missing = [k for k in need if k not in shapes]
    if missing:
        raise ValueError(f"not a Wan DiT state dict: missing {missing}")
    dim = int(shapes["head.modulation"][-1])
    in_dim = int(shapes["patch_embedding.weight"][1])
    patch = tuple(int(s) for s in shapes["patch_embedding.weight"][2:])
    out_dim = int(shapes["head.head.weight"][0]) // (patch[0] * patch[1] * patch[2])
    ffn_dim = int(shapes["blocks.0.ffn.0.weight"][0])
    layers = 1 + max(int(m.group(1)) for k in shapes if (m := re.match(r"blocks\.(\d+)\.", k)))
    image = "img_emb.proj.0.weight" in shapes
    if "img_emb.emb_pos" in shapes:
        model_type = "flf2v"
    elif image or in_dim > out_dim:
        model_type = "i2v"
    elif out_dim == 48:
        model_type = "ti2v"
    else:
        model_type = "t2v"
    kw = {}
    if image:
        kw["clip_dim"] = int(shapes["img_emb.proj.0.weight"][0])
    if "img_emb.emb_pos" in shapes:
        kw["clip_tokens"] = int(shapes["img_emb.emb_pos"][1]) // 2
    if "text_embedding.0.weight" in shapes:
        kw["text_dim"] = int(shapes["text_embedding.0.weight"][1])
    if "time_embedding.0.weight" in shapes:
        kw["freq_dim"] = int(shapes["time_embedding.0.weight"][1])
    if dim % head_dim:
        raise ValueError(f"dim {dim} is not a multiple of head_dim {head_dim}")
    return WanDiTConfig(
        dim=dim,
        ffn_dim=ffn_dim,
        num_heads=dim // head_dim,
        num_layers=layers,
        in_dim=in_dim,
        out_dim=out_dim,
        model_type=model_type,
        image_cross_attn=image,
        patch=patch,
        **kw,
    )


def preset_name_for(cfg: WanDiTConfig) -> str | None:
    """The preset a config equals (A14B experts report the Wan2.1 / A14B-shared name first), else None."""
    for name, p in PRESETS.items():
        if p == cfg:
            return name
    return None


def with_overrides(cfg: WanDiTConfig, **kw) -> WanDiTConfig:
    return replace(cfg, **kw)
