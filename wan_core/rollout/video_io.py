"""Writing generated frames to mp4 (PyAV) or animated WebP, chunk by chunk, without losing a file.

Frames come in as decoder output ``[B, 3, F, H, W]`` in ``[-1, 1]`` (batch element 0 is written);
they are converted to uint8 ``[F, H, W, 3]`` and appended to the open file, so a streaming rollout
never holds the whole video: the mp4 encoder keeps only its look-ahead (x264: 40 frames at most), the
WebP writer one frame (``webp_anim``).

Every writer writes into ``.<name>.<pid>.partial`` beside the destination and renames it over the
destination only when ``close()`` finishes the file (``atomic_file``): a failed, interrupted or killed
run never deletes, truncates or corrupts an older file of the same name. ``close()`` after zero frames
puts nothing there. ``check_output_path`` checks a destination up front (extension, folder creatable
and writable) without creating anything.

PyAV is a dependency of the command line (``requirements.txt``; ComfyUI installs it too). If it is
missing anyway, ``open_video_writer`` writes an animated WebP beside the ``.mp4`` name and says so.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from .atomic_file import AtomicOutput
from .output_path import VIDEO_EXTENSIONS, check_output_path, webp_fallback
from .webp_anim import AnimatedWebpStream

__all__ = [
    "to_uint8_frames",
    "VideoWriter",
    "Mp4Writer",
    "WebpWriter",
    "open_video_writer",
    "check_output_path",
    "have_av",
    "frame_rate",
    "VIDEO_EXTENSIONS",
]


def frame_rate(fps: float) -> Fraction:
    """``fps`` (whole or fractional, above 0) as the exact rate a container stores, e.g. 16, 1/2,
    30000/1001 for 29.97; a denominator up to 1001 keeps MPEG-4's 16-bit time base valid."""
    if isinstance(fps, bool) or not isinstance(fps, (int, float, Fraction)) or not fps > 0:
        raise ValueError(f"fps must be a number above 0, got {fps!r}")
    rate = Fraction(fps).limit_denominator(1001)
    if rate <= 0:
        raise ValueError(f"fps {fps!r} is below 1/1001")
    return rate


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
    """Append frames, then ``close()`` (the file appears at ``path``) or ``abort()`` (nothing changes
    at ``path``). Usable as a context manager: an exception in the block aborts.

    Subclasses write into ``self.output.tmp`` and implement ``_write(arr)``, ``_finish()`` (complete
    the partial file) and ``_release()`` (let go of it after a failure)."""

    path: Path  # the destination
    output: AtomicOutput
    frames_written: int = 0
    _done: bool = False
    _size: tuple[int, int] | None = None

    def _open_output(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.output = AtomicOutput(self.path)

    @property
    def committed(self) -> bool:
        """True once the finished file is at ``path``."""
        return self.output.committed

    def write(self, frames: torch.Tensor | np.ndarray) -> None:
        arr = (
            to_uint8_frames(frames)
            if isinstance(frames, torch.Tensor)
            else np.asarray(frames, dtype=np.uint8)
        )
        if arr.ndim != 4 or arr.shape[-1] != 3:
            raise ValueError(f"expected uint8 frames [F, H, W, 3], got {arr.shape}")
        if self._done:
            raise RuntimeError(f"the video {self.path} is already closed")
        size = (arr.shape[2], arr.shape[1])  # (width, height)
        if getattr(self, "_size", None) is None:
            self._size = size
        elif size != self._size:  # an encoder would rescale them silently
            w, h = self._size
            raise ValueError(f"every frame of a video has one size: {w}x{h}, got {size[0]}x{size[1]}")
        self._write(arr)
        self.frames_written += arr.shape[0]

    def close(self) -> bool:
        """Finish the file and rename it over ``path``; returns whether a file was put there (not after
        zero frames: an older file then stays). A failure while finishing aborts (and raises)."""
        if self._done:
            return self.committed
        self._done = True
        try:
            self._finish()
        except BaseException:
            self._release_quietly()
            self.output.discard()
            raise
        if self.frames_written == 0:
            self.output.discard()
            return False
        self.output.commit()
        return True

    def abort(self) -> None:
        """After a failure: let go of the partial file and remove it; ``path`` stays as it was. Never raises."""
        self._done = True
        self._release_quietly()
        self.output.discard()

    def _release_quietly(self) -> None:
        try:
            self._release()
        except Exception:  # noqa: BLE001 -- the file is being thrown away
            pass

    def _write(self, arr: np.ndarray) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        raise NotImplementedError

    def _release(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class Mp4Writer(VideoWriter):
    """H.264 mp4 (or .mov / .mkv) through PyAV (yuv420p, so width and height must be even)."""

    def __init__(self, path: str | os.PathLike, fps: float, crf: int = 18):
        import av

        self.fps = frame_rate(fps)
        self.crf = crf
        self._stream = None
        self._open_output(path)
        fmt = VIDEO_EXTENSIONS.get(self.path.suffix.lower()) or "mp4"
        try:
            self._container = av.open(str(self.output.tmp), mode="w", format=fmt)
        except BaseException:
            self.output.discard()
            raise

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

    def _finish(self) -> None:
        if self._stream is not None:
            for packet in self._stream.encode():  # the encoder's look-ahead frames
                self._container.mux(packet)
        self._release()

    def _release(self) -> None:
        container, self._container = self._container, None
        if container is not None:
            container.close()


def _codecs() -> set[str]:
    import av

    return set(av.codecs_available)


class WebpWriter(VideoWriter):
    """Animated WebP, one frame in memory at a time (``webp_anim.AnimatedWebpStream``)."""

    def __init__(self, path: str | os.PathLike, fps: float, quality: int = 90):
        self.fps = frame_rate(fps)
        self.quality = quality
        duration_ms = max(1, round(1000 / self.fps))
        self._open_output(path)
        self._file = None
        try:
            self._file = open(self.output.tmp, "wb")  # noqa: SIM115 -- closed by _finish / _release
            self._anim = AnimatedWebpStream(self._file, duration_ms=duration_ms, quality=quality)
        except BaseException:
            self._release_quietly()
            self.output.discard()
            raise

    def _write(self, arr: np.ndarray) -> None:
        for frame in arr:
            self._anim.add(frame)

    def _finish(self) -> None:
        self._anim.close()
        self._release()

    def _release(self) -> None:
        if self._file is not None and not self._file.closed:
            self._file.close()


def open_video_writer(path: str | os.PathLike, fps: float, log=print) -> VideoWriter:
    """A writer chosen by extension (see ``check_output_path``): ``.mp4`` / ``.mov`` / ``.mkv`` (PyAV;
    without PyAV an animated ``.webp`` of the same name, announced through ``log``) or ``.webp``."""
    path = check_output_path(path)
    ext = path.suffix.lower()
    if VIDEO_EXTENSIONS[ext] is None:
        writer = WebpWriter(path, fps)
    elif have_av():
        writer = Mp4Writer(path, fps)
    else:
        check_output_path(path, pyav=False)  # the WebP must not replace a file no one named
        alt = check_output_path(webp_fallback(path))
        log(
            f"PyAV (`av`) is not installed, so {path.name} cannot be written; writing animated WebP {alt} instead "
            "(frame by frame, constant memory; a larger file than an mp4). Install it with `pip install av` "
            "for mp4."
        )
        writer = WebpWriter(alt, fps)
    if writer.output.removed_stale:
        names = ", ".join(p.name for p in writer.output.removed_stale)
        log(f"removed {len(writer.output.removed_stale)} partial file(s) left by an interrupted run: {names}")
    return writer
