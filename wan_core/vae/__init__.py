"""Pixel decoders and encoders: Wan VAE 2.1 / 2.2 (streaming causal) and TAEHV.

Streaming contract (for the rollout / nodes): latents are **normalized** (DiT space) ``[B, C, T, h, w]``;
frames come out ``[B, 3, F, H, W]`` in [-1, 1].

- Wan VAE: ``cache = vae.new_decode_cache()``; ``frames = vae.decode_chunk(z_chunk, cache)``
  (first chunk of T latent frames -> 1 + 4 (T - 1) frames, later -> 4 T); ``vae.decode(z)``,
  ``vae.encode(video)``, ``vae.encode_chunk(frames, vae.new_encode_cache())``; see ``causal_vae.py``.
- TAEHV: ``state = tae.new_decode_state()``; ``frames = tae.decode_chunk(z_chunk, state)`` (same frame
  counts); ``tae.decode(z)``, ``tae.encode(video)``; see ``taehv.py``.
- ``latent_norm.to_raw`` / ``to_normalized``: the one raw <-> normalized conversion.
"""

from .causal_conv import CausalConvCache
from .causal_vae import StreamDecoder, WanCausalVAE
from .latent_norm import to_normalized, to_raw
from .loader import load_decoder, load_taehv, load_vae
from .taehv import TAEHV, TAEHVConfig, TAEHVState
from .wan21 import WanVAE21, WanVAE21Config
from .wan22 import WanVAE22, WanVAE22Config

__all__ = [
    "CausalConvCache",
    "StreamDecoder",
    "WanCausalVAE",
    "WanVAE21",
    "WanVAE21Config",
    "WanVAE22",
    "WanVAE22Config",
    "TAEHV",
    "TAEHVConfig",
    "TAEHVState",
    "load_vae",
    "load_decoder",
    "load_taehv",
    "to_normalized",
    "to_raw",
]
