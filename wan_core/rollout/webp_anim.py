"""Animated WebP written frame by frame, in constant memory.

Pillow writes an animated WebP only in one call with every frame at hand. This writer builds the
container itself (Google's WebP container specification, "Extended File Format") and appends each
frame as it comes, so only one frame is ever in memory:

- ``RIFF`` <u32 file size - 8> ``WEBP``; the size is written as 0 first and patched at ``close()``;
- ``VP8X`` (10 bytes): flags (0x02 = animation), 3 reserved bytes, canvas width - 1 and height - 1
  (24-bit little endian each);
- ``ANIM`` (6 bytes): background colour (4 bytes, B G R A) and loop count (u16, 0 = forever);
- one ``ANMF`` per frame: X / 2, Y / 2, width - 1, height - 1, duration in ms (24 bits each), a flags
  byte (bit 1: do not blend, bit 0: dispose to background), then the frame's bitstream chunks.

Each frame's bitstream (``VP8 `` lossy, or ``VP8L`` lossless, with ``ALPH`` if it had alpha) comes from
Pillow encoding that frame alone as a still WebP: its chunks after the 12-byte RIFF header are copied
into the ``ANMF`` chunk as they are. Every chunk's payload is padded to an even length.
"""

from __future__ import annotations

import struct
from io import BytesIO
from typing import BinaryIO

import numpy as np

__all__ = ["AnimatedWebpStream", "MAX_WEBP_SIDE"]

MAX_WEBP_SIDE = 16383  # VP8 / VP8L frame width and height limit
_FRAME_CHUNKS = (b"ALPH", b"VP8 ", b"VP8L")


def _u24(v: int) -> bytes:
    return int(v).to_bytes(3, "little")


def _chunk(fourcc: bytes, payload: bytes) -> bytes:
    pad = b"\0" if len(payload) % 2 else b""
    return fourcc + struct.pack("<I", len(payload)) + payload + pad


def _still_chunks(webp: bytes) -> bytes:
    """The bitstream chunks of a still WebP file (``ALPH`` / ``VP8 `` / ``VP8L``), as bytes."""
    if webp[:4] != b"RIFF" or webp[8:12] != b"WEBP":
        raise ValueError("the WebP encoder did not return a RIFF/WEBP file")
    out, pos = [], 12
    while pos + 8 <= len(webp):
        fourcc, size = webp[pos : pos + 4], struct.unpack("<I", webp[pos + 4 : pos + 8])[0]
        end = pos + 8 + size + (size & 1)
        if fourcc in _FRAME_CHUNKS:
            out.append(webp[pos:end])
        pos = end
    if not out:
        raise ValueError("the WebP encoder returned no image data")
    return b"".join(out)


class AnimatedWebpStream:
    """Append uint8 RGB frames ``[H, W, 3]`` to an animated WebP in ``file`` (binary, seekable).

    duration_ms: display time of each frame. quality: lossy quality 0-100 (``lossless=True`` instead
    for exact pixels). ``close()`` patches the RIFF size; the file object stays open (the caller's)."""

    def __init__(
        self, file: BinaryIO, *, duration_ms: int, quality: int = 90, lossless: bool = False, loop: int = 0
    ):
        if not 1 <= duration_ms < 2**24:
            raise ValueError(f"a WebP frame lasts 1 .. {2**24 - 1} ms, got {duration_ms}")
        self.file = file
        self.duration_ms = int(duration_ms)
        self.quality = int(quality)
        self.lossless = lossless
        self.loop = int(loop)
        self.size: tuple[int, int] | None = None  # (width, height), from the first frame
        self.frames = 0
        self._start = file.tell()
        self._closed = False

    def _header(self, width: int, height: int) -> None:
        if not (1 <= width <= MAX_WEBP_SIDE and 1 <= height <= MAX_WEBP_SIDE):
            raise ValueError(f"WebP frames are at most {MAX_WEBP_SIDE}x{MAX_WEBP_SIDE}, got {width}x{height}")
        self.size = (width, height)
        vp8x = bytes([0x02, 0, 0, 0]) + _u24(width - 1) + _u24(height - 1)
        anim = struct.pack("<IH", 0, self.loop)  # background 0 (transparent black), loop count
        self.file.write(
            b"RIFF" + struct.pack("<I", 0) + b"WEBP" + _chunk(b"VP8X", vp8x) + _chunk(b"ANIM", anim)
        )

    def add(self, frame: np.ndarray) -> None:
        """Append one frame, uint8 ``[H, W, 3]``."""
        from PIL import Image

        if self._closed:
            raise RuntimeError("the animated WebP is closed")
        if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected a uint8 frame [H, W, 3], got {frame.dtype} {frame.shape}")
        h, w = frame.shape[:2]
        if self.size is None:
            self._header(w, h)
        elif (w, h) != self.size:
            raise ValueError(
                f"every frame of a video has one size: {self.size[0]}x{self.size[1]}, got {w}x{h}"
            )
        buf = BytesIO()
        Image.fromarray(frame, "RGB").save(buf, format="WEBP", quality=self.quality, lossless=self.lossless)
        head = _u24(0) + _u24(0) + _u24(w - 1) + _u24(h - 1) + _u24(self.duration_ms) + bytes([0x02])
        self.file.write(_chunk(b"ANMF", head + _still_chunks(buf.getvalue())))
        self.frames += 1

    def close(self) -> None:
        """Write the RIFF size: from here on the file is a complete animation of ``frames`` frames."""
        if self._closed:
            return
        self._closed = True
        if self.size is None:
            return  # no frame: nothing was written
        end = self.file.tell()
        self.file.seek(self._start + 4)
        self.file.write(struct.pack("<I", end - self._start - 8))
        self.file.seek(end)
        self.file.flush()
