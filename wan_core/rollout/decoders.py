"""One streaming-decoder interface for the pipeline: ``factory.stream_decoder()`` -> ``s.decode_chunk(z)``.

Normalized latents ``[B, C, n, h, w]`` in, frames ``[B, 3, f, H, W]`` in [-1, 1] out; the first chunk
gives ``1 + 4 (n - 1)`` frames, later chunks ``4 n``. The Wan VAE has ``stream_decoder()`` already;
TAEHV (``new_decode_state`` / ``decode_chunk(z, state)``) is adapted here.
"""

from __future__ import annotations

import torch

__all__ = ["as_stream_decoder_factory", "TAEHVDecoder", "VAEDecoder"]


class _TAEHVStream:
    def __init__(self, tae):
        self.tae = tae
        self.state = tae.new_decode_state()

    @torch.no_grad()
    def decode_chunk(self, latents: torch.Tensor) -> torch.Tensor:
        return self.tae.decode_chunk(latents.to(self.tae.dtype), self.state)


class TAEHVDecoder:
    """A TAEHV as a stream-decoder factory."""

    kind = "taehv"  # what decodes (out-of-memory advice names the lighter decoder)

    def __init__(self, tae):
        self.tae = tae

    def stream_decoder(self):
        return _TAEHVStream(self.tae)


class _VAEStream:
    def __init__(self, vae, latents_per_step: int):
        # at most a few latent frames per decoder pass: same frames (causal), bounded activation memory
        self.inner = vae.stream_decoder(latents_per_step=latents_per_step)
        self.dtype = vae.dtype

    @torch.no_grad()
    def decode_chunk(self, latents: torch.Tensor) -> torch.Tensor:
        return self.inner.decode_chunk(latents.to(self.dtype))


class VAEDecoder:
    """A Wan VAE as a stream-decoder factory (``latents_per_step`` latent frames per decoder pass)."""

    kind = "wan_vae"

    def __init__(self, vae, latents_per_step: int = 4):
        self.vae = vae
        self.latents_per_step = latents_per_step

    def stream_decoder(self):
        return _VAEStream(self.vae, self.latents_per_step)


def as_stream_decoder_factory(decoder):
    """Accept a Wan VAE, a TAEHV, or anything with ``stream_decoder()``; None stays None."""
    if decoder is None or isinstance(decoder, (TAEHVDecoder, VAEDecoder)):
        return decoder
    if hasattr(decoder, "new_decode_state") and hasattr(decoder, "decode_chunk"):
        return TAEHVDecoder(decoder)
    if hasattr(decoder, "new_decode_cache") and hasattr(decoder, "stream_decoder"):
        return VAEDecoder(decoder)
    if hasattr(decoder, "stream_decoder"):
        return decoder
    raise TypeError(
        f"{type(decoder).__name__} is not a decoder: expected a Wan VAE, a TAEHV or a stream_decoder() factory"
    )
