"""What one video carries between chunks (``RolloutState``) and what a chunk returns (``ChunkResult``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .conditioning import ImageCondition
from .decode_stream import DecodedFrames, FrameDecodeStream
from .prompt import Prompt
from .video import VideoSpec

__all__ = ["ChunkResult", "RolloutState"]


@dataclass
class ChunkResult:
    index: int
    frame_start: int  # first latent frame of the chunk
    latents: torch.Tensor  # [B, C, n, h, w] normalized (DiT space)
    decoded: DecodedFrames | None = None  # the chunk's frames when a decoder is attached (maybe in flight)

    @property
    def num_latent_frames(self) -> int:
        return self.latents.shape[2]

    @property
    def frames(self) -> torch.Tensor | None:
        """``[B, 3, f, H, W]`` in [-1, 1] on the device, None without a decoder. Safe on the current
        stream: with decode overlap that stream waits (on the device) for this chunk's decode."""
        return None if self.decoded is None else self.decoded.device()

    def wait_frames(self) -> torch.Tensor | None:
        """Same as ``frames``: the device frames, after making the current stream wait for the decode."""
        return self.frames

    def host_frames(self) -> torch.Tensor | None:
        """``[B, 3, f, H, W]`` in [-1, 1] on the CPU (pinned when overlapped). Blocks the calling thread
        until this chunk's frames are on the host; never synchronizes the DiT's stream."""
        return None if self.decoded is None else self.decoded.host()


@dataclass
class RolloutState:
    """One video: its geometry, prompt, image, noise and call-order counters. The scheme's own state
    (KV cache, kept frames, ...) reads through it too: ``state.cache``, ``state.history``, ..."""

    video: VideoSpec
    seed: int
    noise: Callable  # (chunk, shape, device) -> [K, B, C, n, h, w] (noise.py)
    prompt: Prompt
    scheme: object
    switches: dict[int, object] = field(default_factory=dict)  # chunk index -> prompts (pending)
    image: ImageCondition | None = None
    vae: object = None  # the VAE encoder given for this video
    decoder_stream: FrameDecodeStream | None = None
    generated: int = 0  # chunks generated
    finalized: int = 0  # chunks whose clean K/V is written
    steps_done: int = 0

    @property
    def cache(self):
        return self.scheme.cache

    def __getattr__(self, name: str):  # batch / latent_h / ... of the video, else the scheme's state
        if name in ("video", "scheme"):
            raise AttributeError(name)
        return getattr(self.video if name in VideoSpec.__dataclass_fields__ else self.scheme, name)
