"""``FrameHistory``: the clean latents (or pixels) of the recent frames a scheme still reads.

One eviction rule: after frames up to ``end`` are added, every frame ``f`` with
``sink_frames <= f < end - recent_frames`` is dropped; the first ``sink_frames`` frames stay for the
whole video. Memory is bounded by ``sink_frames + recent_frames`` entries, not by the video length.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from wan_core.memory import tensor_nbytes

__all__ = ["FrameHistory"]


class FrameHistory:
    """frame -> entry (a tensor ``[B, C, 1, h, w]`` or a tuple of them, e.g. ``(x0, y)``)."""

    def __init__(self, sink_frames: int, recent_frames: int):
        self.sink_frames, self.recent_frames = int(sink_frames), int(recent_frames)
        self._frames: dict[int, object] = {}
        self.end = 0  # one past the newest frame added

    def add(self, start: int, *chunks: torch.Tensor | None) -> None:
        """Frames ``[start, start + n)`` of ``chunks`` (each ``[B, C, n, h, w]`` or None), then evict.
        With one chunk an entry is its frame slice, with several a tuple of slices."""
        n = next(c for c in chunks if c is not None).shape[2]
        for j in range(n):
            parts = tuple(None if c is None else c[:, :, j : j + 1] for c in chunks)
            self._frames[start + j] = parts[0] if len(parts) == 1 else parts
        self.end = max(self.end, start + n)
        keep_from = self.end - self.recent_frames
        for f in [f for f in self._frames if self.sink_frames <= f < keep_from]:
            del self._frames[f]

    def append(self, frames: torch.Tensor) -> None:
        """Frames of ``frames [B, C, n, ...]`` after the newest one."""
        self.add(self.end, frames)

    def oldest(self):
        return self._frames[min(self._frames)]

    def clear(self) -> None:
        self._frames.clear()
        self.end = 0

    def __getitem__(self, frame: int):
        return self._frames[frame]

    def __contains__(self, frame: int) -> bool:
        return frame in self._frames

    def __iter__(self) -> Iterator[int]:
        return iter(self._frames)

    def __len__(self) -> int:
        return len(self._frames)

    def nbytes(self) -> int:
        entries = self._frames.values()
        return tensor_nbytes([t for e in entries for t in (e if isinstance(e, tuple) else (e,))])
