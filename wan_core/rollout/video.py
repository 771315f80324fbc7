"""``VideoSpec``: the geometry of one video in latent space, and how it splits into chunks.

Sizes: a pixel size must be a multiple of VAE stride x patch (8 x 2 = 16 for Wan2.1, 16 x 2 = 32 for
Wan2.2 TI2V). Frames: ``T`` latent frames cover ``1 + 4 (T - 1)`` pixel frames (the causal VAE's
first latent frame is one pixel frame, every later one four).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["VideoSpec", "latent_frames_for"]


def latent_frames_for(num_frames: int, temporal_scale: int = 4) -> int:
    """Latent frames covering ``num_frames`` pixel frames (``1 + 4 (T - 1) >= num_frames``)."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    return (num_frames - 1 + temporal_scale - 1) // temporal_scale + 1


@dataclass(frozen=True)
class VideoSpec:
    batch: int
    latent_channels: int
    latent_h: int
    latent_w: int
    num_latent_frames: int | None  # None = endless
    frames_per_chunk: int  # 0 = the whole video is one chunk

    @classmethod
    def plan(
        cls, preset, *, whole_video: bool, height=None, width=None, num_frames=None, num_chunks=None, batch=1
    ) -> VideoSpec:
        """The video ``preset`` makes at this size and length (defaults: the preset's); raises
        ``ValueError`` for a size the VAE / patching cannot take or a length the scheme cannot make."""
        p = preset
        height, width = height or p.height, width or p.width
        st, sh, sw = p.vae_stride
        ph, pw = p.patch_size[1:]
        if height % (sh * ph) or width % (sw * pw):
            raise ValueError(
                f"{width}x{height} is not a multiple of {sw * pw}x{sh * ph} (VAE stride x patch) for preset "
                f"{p.name!r}; try {width // (sw * pw) * sw * pw}x{height // (sh * ph) * sh * ph}"
            )
        if num_frames is not None and num_chunks is not None:
            raise ValueError("give num_frames or num_chunks, not both")
        if num_frames is not None:
            t = latent_frames_for(num_frames, st)
        elif num_chunks is not None:
            if whole_video:
                raise ValueError(f"preset {p.name!r} generates the whole video at once: give num_frames")
            t = num_chunks * p.frames_per_chunk
        elif not whole_video:
            t = None
        else:
            t = latent_frames_for(p.default_frames, st)
        n = 0 if whole_video else p.frames_per_chunk
        return cls(batch, p.latent_channels, height // sh, width // sw, t, n)

    @property
    def num_chunks(self) -> int | None:
        if self.frames_per_chunk == 0:
            return 1
        t = self.num_latent_frames
        return None if t is None else math.ceil(t / self.frames_per_chunk)

    def chunk_bounds(self, i: int) -> tuple[int, int]:
        """(first latent frame, number of latent frames) of chunk ``i``."""
        t = self.num_latent_frames
        if self.frames_per_chunk == 0:
            return 0, t
        n = self.frames_per_chunk
        start = i * n
        if t is not None:
            if not 0 <= i < self.num_chunks:
                raise IndexError(f"chunk {i} out of range: this video has {self.num_chunks} chunks")
            n = min(n, t - start)
        return start, n

    def noise_shape(self, i: int, draws: int) -> tuple[int, ...]:  # [K, B, C, n, h, w]
        _, n = self.chunk_bounds(i)
        return (draws, self.batch, self.latent_channels, n, self.latent_h, self.latent_w)
