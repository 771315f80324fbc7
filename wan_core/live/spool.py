"""``LatentSpool``: the latent chunks of a live stream kept on disk, not in memory, so a stream of any
length holds flat RAM while it runs; ``read()`` gives the whole latent back once at the end.

File layout: the chunks' float32 values one after another (``[B, C, n_i, h, w]`` each, same
``B, C, h, w``), concatenated along the frame axis on read.
"""

from __future__ import annotations

import os
import tempfile

import torch

__all__ = ["LatentSpool"]


class LatentSpool:
    def __init__(self, folder: str | os.PathLike | None = None):
        fd, self.path = tempfile.mkstemp(prefix="wanstream_live_", suffix=".latents", dir=folder)
        self._file = os.fdopen(fd, "wb")
        self.shape: tuple[int, ...] | None = None  # [B, C, _, h, w] of the chunks
        self.frames = 0  # latent frames written

    def append(self, latents: torch.Tensor) -> None:  # [B, C, n, h, w]
        x = latents.detach().to("cpu", torch.float32).contiguous()
        b, c, n, h, w = x.shape
        if self.shape is None:
            self.shape = (b, c, 0, h, w)
        elif (b, c, h, w) != (self.shape[0], self.shape[1], self.shape[3], self.shape[4]):
            raise ValueError(f"latent chunk {tuple(x.shape)} does not match the spool's {self.shape}")
        # frame-major on disk: [n, B, C, h, w], so chunks concatenate along frames
        self._file.write(x.permute(2, 0, 1, 3, 4).contiguous().numpy().tobytes())
        self.frames += n

    def read(self) -> torch.Tensor | None:
        """``[B, C, frames, h, w]`` float32, or None if nothing was written."""
        self._file.flush()
        if self.shape is None:
            return None
        b, c, _, h, w = self.shape
        flat = torch.from_file(self.path, shared=False, size=self.frames * b * c * h * w, dtype=torch.float32)
        return flat.view(self.frames, b, c, h, w).permute(1, 2, 0, 3, 4).contiguous()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
