"""Image conditioning for image-to-video: the three ways Wan models take a start image.

* ``concat_y`` -- Wan2.1 I2V 14B / Wan2.2 I2V A14B: the DiT input is ``cat([noise, y])`` with
  ``y = cat([mask (4 ch), VAE(image, zeros...)])`` ``[B, 4 + C, T, h, w]``. The mask is 1 on every
  latent slot covering a given pixel frame: pixel frame 0 is replicated 4x so that latent frame 0's
  four slots are all "given", later latent frames cover 4 pixel frames each. Wan2.1 also feeds CLIP
  features of the image to its image cross-attention (``clip_fea``).
  The VAE input is ``[image, zeros(F - 1 frames)]``; its encoder is causal, so ``y`` is produced
  chunk by chunk with a streaming encode (``ConcatYStream``) and never needs the whole video.
* ``clean_t0`` -- Wan2.2 TI2V 5B: latent frame 0 is replaced by the clean image latent and its
  tokens get timestep 0 (per-frame / per-token timesteps).
* ``mask_inject`` -- any T2V model: latent frame 0 is replaced by the image latent noised to the
  current step's sigma before each model call, and by the clean image latent in every x0 prediction
  (inpainting with a noise mask, as ComfyUI's latent noise mask does).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .schedulers import renoise

__all__ = ["STAMP_MODES", "i2v_mask", "ImageCondition", "ConcatYStream", "stamp_input", "stamp_x0"]

STAMP_MODES = ("none", "concat_y", "clean_t0", "mask_inject")


def i2v_mask(
    num_latent_frames: int, h: int, w: int, given_pixel_frames=(0,), temporal_scale: int = 4, device=None
) -> torch.Tensor:
    """The 4-channel I2V mask ``[temporal_scale, T, h, w]`` (1 = pixel frame given).

    Pixel frames ``F = 1 + 4 (T - 1)``; frame 0 is repeated ``temporal_scale`` times so that the
    ``4T`` slots split evenly into ``T`` latent frames of 4 (official ``image2video.py`` layout).
    """
    num_pixel = 1 + temporal_scale * (num_latent_frames - 1)
    per_frame = torch.zeros(num_pixel, device=device)
    for f in given_pixel_frames:
        per_frame[f if f >= 0 else num_pixel + f] = 1.0
    slots = torch.cat([per_frame[:1].repeat(temporal_scale), per_frame[1:]])  # [4T]
    m = slots.view(num_latent_frames, temporal_scale).transpose(0, 1)  # [4, T]
    return m[:, :, None, None].expand(temporal_scale, num_latent_frames, h, w).contiguous()


@dataclass
class ImageCondition:
    """What a start image turns into for the DiT."""

    mode: str  # one of STAMP_MODES
    image_latent: torch.Tensor | None = None  # [B, C, 1, h, w] normalized (clean_t0 / mask_inject)
    clip_fea: torch.Tensor | None = None  # [B, 257, 1280] (Wan2.1 I2V)
    y_stream: ConcatYStream | None = None  # concat_y

    def __post_init__(self) -> None:
        if self.mode not in STAMP_MODES:
            raise ValueError(f"image conditioning mode must be one of {STAMP_MODES}, got {self.mode!r}")


class ConcatYStream:
    """Produces ``y`` ``[B, 4 + C, n, h, w]`` for consecutive latent chunks with a streaming VAE encode
    of ``[image, zeros, zeros, ...]`` (memory independent of the video length).

    ``vae`` must offer ``new_encode_cache()`` and ``encode_chunk(frames, cache) -> latents`` (normalized),
    taking 1 pixel frame for latent 0 and 4 per later latent frame.
    """

    def __init__(self, vae, image: torch.Tensor, temporal_scale: int = 4):
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"image must be [B, 3, H, W] in [-1, 1], got {tuple(image.shape)}")
        self.vae = vae
        self.image = image
        self.temporal_scale = temporal_scale
        self.cache = vae.new_encode_cache()
        self.next_frame = 0  # next latent frame to produce

    def _encode(self, frames: torch.Tensor) -> torch.Tensor:
        return self.vae.encode_chunk(frames, self.cache)

    def take(self, frame_start: int, n: int) -> torch.Tensor:
        """``y`` of latent frames ``[frame_start, frame_start + n)``; must be requested in order
        (re-requesting the last chunk is served from memory)."""
        if frame_start == getattr(self, "_last_start", None):
            return self._last
        if frame_start != self.next_frame:
            raise ValueError(f"ConcatYStream: expected latent frame {self.next_frame}, got {frame_start}")
        img = self.image
        b, _, hh, ww = img.shape
        parts = []
        f = frame_start
        if f == 0:
            parts.append(self._encode(img[:, :, None]))
            f = 1
        if frame_start + n > f:
            k = frame_start + n - f
            zeros = img.new_zeros(b, 3, self.temporal_scale * k, hh, ww)
            parts.append(self._encode(zeros))
        lat = torch.cat(parts, dim=2)  # [B, C, n, h, w]
        mask = torch.zeros(b, self.temporal_scale, n, *lat.shape[3:], dtype=lat.dtype, device=lat.device)
        if frame_start == 0:
            mask[:, :, 0] = 1.0
        y = torch.cat([mask, lat], dim=1)
        self.next_frame = frame_start + n
        self._last_start, self._last = frame_start, y
        return y


def stamp_input(
    x: torch.Tensor, cond: ImageCondition | None, frame_start: int, sigma: float, noise: torch.Tensor
):
    """Model input for a chunk ``x [B, C, n, h, w]`` at noise level ``sigma``; returns
    ``(x_in, frame0_clean)`` where ``frame0_clean`` tells the caller to give latent frame 0 t = 0."""
    if cond is None or frame_start != 0 or cond.mode in ("none", "concat_y"):
        return x, False
    x = x.clone()
    z = cond.image_latent.to(device=x.device, dtype=x.dtype)
    if cond.mode == "clean_t0":
        x[:, :, :1] = z
        return x, True
    x[:, :, :1] = renoise(z, noise[:, :, :1], sigma)  # mask_inject
    return x, False


def stamp_x0(x0: torch.Tensor, cond: ImageCondition | None, frame_start: int) -> torch.Tensor:
    """Replace latent frame 0 of a chunk's x0 prediction with the clean image latent."""
    if cond is None or frame_start != 0 or cond.mode in ("none", "concat_y"):
        return x0
    x0 = x0.clone()
    x0[:, :, :1] = cond.image_latent.to(device=x0.device, dtype=x0.dtype)
    return x0
