"""The one streaming interface of the pixel decoders (Wan VAE 2.1 / 2.2, TAEHV) and its device wrappers.

Every decoder offers ``new_decode_state()``, ``decode_chunk(z, state, latents_per_step=None,
clamp=True)`` and ``stream_decoder(latents_per_step=None, clamp=True, tile_size=None,
tile_overlap=8)``; a stream has ``decode_chunk(z)`` and ``reset()``. Latents are normalized
``[B, C, n, h, w]``, frames ``[B, 3, f, H, W]`` in [-1, 1]: the first chunk of a stream gives
``1 + 4 (n - 1)`` frames, later chunks ``4 n``.
"""

from __future__ import annotations

import torch

__all__ = [
    "StreamDecoder",
    "OnDevice",
    "EncoderOnDevice",
    "ROLLOUT_LATENTS_PER_STEP",
    "rollout_decoder",
    "as_rollout_decoder",
    "new_decode_state",
]

# latent frames per decoder pass in the rollout, by ``decoder_kind``: the Wan VAE at most 4 (the same
# frames, it is causal; bounded activation memory on a whole-video chunk), the TAEHV a chunk at once
ROLLOUT_LATENTS_PER_STEP = {"wan_vae": 4, "taehv": None}


def new_decode_state(decoder):
    """A fresh per-video decode state of ``decoder`` (``new_decode_cache`` for decoders of the old name)."""
    make = getattr(decoder, "new_decode_state", None) or decoder.new_decode_cache
    return make()


class StreamDecoder:
    """A decode stream bound to one decoder: ``frames = dec.decode_chunk(z_chunk)`` (or ``dec(z)``);
    ``reset()`` starts a new video. ``decode_kwargs`` go to every ``decode_chunk`` call
    (``latents_per_step``, ``clamp``)."""

    def __init__(self, decoder, **decode_kwargs):
        self.vae = decoder
        self.cache = new_decode_state(decoder)
        self.decode_kwargs = decode_kwargs

    @torch.no_grad()
    def decode_chunk(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalized latents ``[B, C, n, h, w]`` -> frames ``[B, 3, f, H, W]`` in [-1, 1]."""
        return self.vae.decode_chunk(latents, self.cache, **self.decode_kwargs)

    __call__ = decode_chunk

    def reset(self) -> None:
        self.cache.reset()


class _CastingStream:
    def __init__(self, inner, device: torch.device, dtype: torch.dtype):
        self.inner, self.device, self.dtype = inner, device, dtype

    @torch.no_grad()
    def decode_chunk(self, latents: torch.Tensor) -> torch.Tensor:  # [B, C, n, h, w] -> [B, 3, f, H, W]
        return self.inner.decode_chunk(latents.to(self.device, self.dtype))

    def reset(self) -> None:
        self.inner.reset()


class OnDevice:
    """A decoder as a stream-decoder factory whose streams take latents on any device and dtype.

    ``device`` / ``dtype`` default to the decoder's; ``stream_options`` go to ``decoder.stream_decoder``.
    ``kind`` ("wan_vae" | "taehv") names what decodes (out-of-memory advice suggests the lighter one).
    """

    def __init__(self, decoder, device: torch.device | str | None = None, dtype=None, **stream_options):
        self.decoder = decoder
        self.device = decoder.device if device is None else torch.device(device)
        self.dtype = decoder.dtype if dtype is None else dtype
        self.kind: str = decoder.decoder_kind
        self.stream_options = stream_options

    def stream_decoder(self) -> _CastingStream:
        return _CastingStream(self.decoder.stream_decoder(**self.stream_options), self.device, self.dtype)


def rollout_decoder(decoder, device=None, dtype=None) -> OnDevice:
    """``decoder`` (a Wan VAE or a TAEHV) as the rollout decodes with it (``ROLLOUT_LATENTS_PER_STEP``)."""
    per_step = ROLLOUT_LATENTS_PER_STEP[decoder.decoder_kind]
    return OnDevice(decoder, device, dtype, latents_per_step=per_step)


def as_rollout_decoder(decoder):
    """A Wan VAE or a TAEHV -> ``rollout_decoder(decoder)``; a ``stream_decoder()`` factory stays as it
    is; None stays None."""
    if decoder is None:
        return None
    if hasattr(decoder, "decoder_kind"):
        return rollout_decoder(decoder)
    if hasattr(decoder, "stream_decoder"):
        return decoder
    raise TypeError(
        f"{type(decoder).__name__} is not a decoder: expected a Wan VAE, a TAEHV or a stream_decoder() factory"
    )


class EncoderOnDevice:
    """A Wan VAE's streaming encoder taking float32 frames ``[B, 3, F, H, W]`` in [-1, 1] on any device;
    runs on the VAE's device in its dtype (or ``device`` / ``dtype``) and returns float32 normalized
    latents ``[B, C, T, h, w]``."""

    def __init__(self, vae, device: torch.device | str | None = None, dtype=None):
        self.vae = vae
        self.device = vae.device if device is None else torch.device(device)
        self.dtype = vae.dtype if dtype is None else dtype

    def new_encode_cache(self):
        return self.vae.new_encode_cache()

    @torch.no_grad()
    def encode_chunk(self, frames: torch.Tensor, cache) -> torch.Tensor:
        return self.vae.encode_chunk(frames.to(self.device, self.dtype), cache).float()
