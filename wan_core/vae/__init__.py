"""Pixel decoders and encoders: Wan VAE 2.1 / 2.2 (streaming causal) and TAEHV."""

from .causal_conv import CausalConvCache
from .latent_norm import to_normalized, to_raw
from .wan21 import WanVAE21, WanVAE21Config

__all__ = ["CausalConvCache", "WanVAE21", "WanVAE21Config", "to_normalized", "to_raw"]
