"""The DiT's ``RollingKVCache`` plus a RoPE position offset, for re-encoding after a prompt switch.

A prompt switch (LongLive) re-encodes the K/V of the frames the next chunk can see: the sink frames
``[0, S)`` and the window frames ``[g, start)``. Replayed into an empty cache they become the
contiguous cache frames ``[0, S)`` and ``[S, S + start - g)``; later chunks continue from there with
``cache frame = real frame - (g - S)``. With absolute RoPE (Self-Forcing convention) the window
frames must keep their real positions, so positions of non-sink frames are shifted by
``position_offset = g - S``. With relative RoPE positions only depend on the cache layout, which the
replay reproduces exactly, so the offset stays 0.
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
