"""Pixel decoders and encoders: Wan VAE 2.1 / 2.2 (streaming causal) and TAEHV.

Streaming contract (for the rollout / nodes): latents are **normalized** (DiT space) ``[B, C, T, h, w]``;
frames come out ``[B, 3, F, H, W]`` in [-1, 1]; the first chunk of T latent frames gives
1 + 4 (T - 1) frames, later chunks 4 T.

- Every decoder (Wan VAE 2.1 / 2.2, TAEHV): ``state = dec.new_decode_state()``;
  ``frames = dec.decode_chunk(z_chunk, state, latents_per_step=None, clamp=True)``; or
  ``s = dec.stream_decoder(...)``; ``frames = s.decode_chunk(z_chunk)``; ``dec.decode(z)``;
  ``dec.decoder_kind`` is "wan_vae" or "taehv" (``stream.py``).
- ``OnDevice(dec, device, dtype)``: a stream-decoder factory whose streams move / cast the latents;
  ``rollout_decoder(dec)`` is that with the rollout's latents per pass. ``EncoderOnDevice(vae)``: the
  Wan VAE's streaming encoder with float32 frames in and float32 latents out.
- Encode: ``vae.encode(video)``, ``vae.encode_chunk(frames, vae.new_encode_cache())`` (Wan VAE,
  ``causal_vae.py``); ``tae.encode(video)``, ``tae.encode_chunk`` / ``encode_flush`` (``taehv.py``).
- ``latent_norm.to_raw`` / ``to_normalized``: the one raw <-> normalized conversion.
"""

from .causal_conv import CausalConvCache
from .causal_vae import WanCausalVAE
from .latent_norm import to_normalized, to_raw
from .loader import load_decoder, load_taehv, load_vae
from .stream import EncoderOnDevice, OnDevice, StreamDecoder, as_rollout_decoder, rollout_decoder
from .taehv import TAEHV, TAEHVConfig, TAEHVState
from .wan21 import WanVAE21, WanVAE21Config
from .wan22 import WanVAE22, WanVAE22Config

__all__ = [
    "CausalConvCache",
    "StreamDecoder",
    "OnDevice",
    "EncoderOnDevice",
    "rollout_decoder",
    "as_rollout_decoder",
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
