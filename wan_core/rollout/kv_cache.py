"""The DiT's ``RollingKVCache`` plus what the rollout schemes need on top of it.

``plan_span``: plan one pass over an arbitrary span of frames -- LongLive's re-cache after a prompt
switch (the frames already held, re-encoded in place, see ``prompt_switch.py``) and Krea's KV
recompute (the cache rebuilt from frame 0 before every chunk, see ``kv_recompute.py``).

``position_offset`` (absolute RoPE): non-sink frames get RoPE position ``frame + position_offset``,
for a caller that replays frames into an empty cache with a gap. The pipeline keeps it at 0.
"""

from __future__ import annotations

from wan_core.dit.kv_cache import RollingKVCache

__all__ = ["OffsetRollingKVCache"]


class OffsetRollingKVCache(RollingKVCache):
    """``RollingKVCache`` whose non-sink frames get RoPE position ``frame + position_offset`` (absolute mode)."""

    position_offset: int = 0

    def _position(self, frame: int, end: int) -> int:
        if self.rope == "absolute" and frame >= self.sink_frames:
            return frame + self.position_offset
        return super()._position(frame, end)

    def plan_chunk(self, frame_start: int, n: int) -> None:
        end = int(frame_start) + int(n) + (self.position_offset if self.rope == "absolute" else 0)
        if self.rope == "absolute" and end > self.max_positions:
            raise ValueError(
                f"latent frame {end - 1} is past the {self.max_positions}-position RoPE table of Wan "
                "(absolute RoPE, as Self-Forcing); use rope='relative' for longer videos"
            )
        super().plan_chunk(frame_start, n)

    def reset(self) -> None:
        super().reset()
        self.position_offset = 0

    def plan_span(self, frame_start: int, n: int) -> None:
        """Plan frames ``[frame_start, frame_start + n)`` as one pass, whatever the previous chunk was:
        re-encoding after a prompt switch (the frames already in the cache, ``frame_start + n`` = the
        current end) or rebuilding the cache from frame 0 (KV recompute). Spans longer than the window
        are allowed only from frame 0 up to ``sink + window`` frames, where slot == frame."""
        frame_start, n = int(frame_start), int(n)
        if n > self.window_frames:
            if frame_start != 0 or n > self.capacity_frames:
                raise ValueError(
                    f"a span of {n} frames from frame {frame_start} does not fit the cache "
                    f"({self.sink_frames} sink + {self.window_frames} window frames)"
                )
            # From frame 0 with n <= S + W every frame sits in slot f and every position is f, with any
            # ring length >= n - S: plan with the ring length n, then restore it.
            window = self.window_frames
            self.window_frames = n
            try:
                self.plan_chunk(0, n)
            finally:
                self.window_frames = window
            return
        self.chunk_start = frame_start  # a re-run of this start is always allowed
        self.plan_chunk(frame_start, n)
