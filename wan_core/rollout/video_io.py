"""Writing generated frames to mp4 (PyAV) or animated WebP (Pillow), chunk by chunk.

Frames come in as decoder output ``[B, 3, F, H, W]`` in ``[-1, 1]`` (batch element 0 is written);
they are converted to uint8 ``[F, H, W, 3]`` and appended to the open file, so a streaming rollout
never holds the whole video. PyAV is not a hard dependency of this package (ComfyUI installs it): if
it is missing, ``open_video_writer`` falls back to animated WebP and says so.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

__all__ = ["to_uint8_frames", "VideoWriter", "Mp4Writer", "WebpWriter", "open_video_writer", "have_av"]


def have_av() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def to_uint8_frames(frames: torch.Tensor, batch_index: int = 0) -> np.ndarray:
    """``[B, 3, F, H, W]`` in [-1, 1] -> uint8 ``[F, H, W, 3]``."""
    if frames.ndim != 5 or frames.shape[1] != 3:
        raise ValueError(f"expected frames [B, 3, F, H, W], got {tuple(frames.shape)}")
    x = frames[batch_index].float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)  # [3, F, H, W]
    return x.permute(1, 2, 3, 0).contiguous().cpu().numpy()


class VideoWriter:
    """Append frames, then ``close()``. Usable as a context manager."""

    path: Path
    frames_written: int = 0

    def write(self, frames: torch.Tensor | np.ndarray) -> None:
        arr = (
            to_uint8_frames(frames)
            if isinstance(frames, torch.Tensor)
            else np.asarray(frames, dtype=np.uint8)
        )
        if arr.ndim != 4 or arr.shape[-1] != 3:
            raise ValueError(f"expected uint8 frames [F, H, W, 3], got {arr.shape}")
        self._write(arr)
        self.frames_written += arr.shape[0]

    def _write(self, arr: np.ndarray) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def abort(self) -> None:
        """After a failure: release the file and remove it, so no half-written video is left behind."""
        try:
            self.close()
        except Exception:
            pass
        finally:
            self.path.unlink(missing_ok=True)


class Mp4Writer(VideoWriter):
    """H.264 mp4 through PyAV (yuv420p, so width and height must be even)."""

    def __init__(self, path: str | os.PathLike, fps: int, crf: int = 18):
        import av

        self.path = Path(path)
        self.fps = int(fps)
        self.crf = crf
        self._container = av.open(str(self.path), mode="w")
        self._stream = None

    def _open_stream(self, h: int, w: int) -> None:
        if h % 2 or w % 2:
            raise ValueError(f"mp4 (yuv420p) needs even width and height, got {w}x{h}; use a .webp output")
        codec = "libx264" if "libx264" in _codecs() else "mpeg4"
        self._stream = self._container.add_stream(codec, rate=self.fps)
        self._stream.width, self._stream.height = w, h
        self._stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            self._stream.options = {"crf": str(self.crf)}

    def _write(self, arr: np.ndarray) -> None:
        import av

        if self._stream is None:
            self._open_stream(arr.shape[1], arr.shape[2])
        for frame in arr:
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            for packet in self._stream.encode(vf):
                self._container.mux(packet)

    def close(self) -> None:
        if self._container is None:
            return
        if self._stream is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
        self._container.close()
        self._container = None


def _codecs() -> set[str]:
    import av

    return set(av.codecs_available)


class WebpWriter(VideoWriter):
    """Animated WebP through Pillow. Pillow writes an animation in one go, so frames are kept as
    (compressed-size) PIL images until ``close()``; fine for previews and short clips."""

    def __init__(self, path: str | os.PathLike, fps: int, quality: int = 90):
        self.path = Path(path)
        self.fps = int(fps)
        self.quality = quality
        self._images = []

    def _write(self, arr: np.ndarray) -> None:
        from PIL import Image

        self._images.extend(Image.fromarray(f) for f in arr)

    def abort(self) -> None:
        self._images = []  # nothing was written to the file yet: leave it alone

    def close(self) -> None:
        if not self._images:
            return
        first, rest = self._images[0], self._images[1:]
        first.save(
            self.path,
            format="WEBP",
            save_all=True,
            append_images=rest,
            duration=max(1, round(1000 / self.fps)),
            loop=0,
            quality=self.quality,
        )
        self._images = []


def open_video_writer(path: str | os.PathLike, fps: int, log=print) -> VideoWriter:
    """A writer chosen by extension: ``.mp4`` (PyAV; falls back to ``.webp`` if PyAV is missing)
    or ``.webp``."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext == ".webp":
        return WebpWriter(path, fps)
    if ext in (".mp4", ".mov", ".mkv"):
        if have_av():
            return Mp4Writer(path, fps)
        alt = path.with_suffix(".webp")
        log(
            f"PyAV (`av`) is not installed, so {path.name} cannot be written; writing animated WebP {alt} instead. "
            "Install it with `pip install av` for mp4."
        )
        return WebpWriter(alt, fps)
    raise ValueError(f"unsupported video extension {ext!r} for {path}: use .mp4 or .webp")
