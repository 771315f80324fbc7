"""The DiT's ``RollingKVCache`` plus what the rollout schemes need on top of it.

``position_offset`` (absolute RoPE): non-sink frames get RoPE position ``frame + position_offset``,
for a caller that replays frames into an empty cache with a gap. The pipeline keeps it at 0.

(``plan_span``, one pass over an arbitrary span of frames for LongLive's re-cache after a prompt switch
and Krea's KV recompute, is a ``RollingKVCache`` method.)
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

    def reset(self) -> None:
        super().reset()
        self.position_offset = 0
