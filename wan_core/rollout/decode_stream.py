"""Decoding a video's chunks off the DiT's CUDA stream (decode overlap, issue #8).

``FrameDecodeStream`` owns one video's stream decoder (its causal TAEHV / Wan VAE state) and decodes
chunk after chunk, either inline on the caller's stream or, with a side stream, overlapped with
whatever the caller enqueues next (the clean-context pass of chunk i and the denoising of chunk i+1)::

    main stream:  denoise(i) -> [event] -> finalize(i) -> denoise(i+1) -> [event] -> ...
    side stream:          wait -> decode(i) -> D2H copy(i) -> wait -> decode(i+1) -> ...

Stream rules kept here:
- the side stream waits for the main stream's work up to the chunk's clean latents (``wait_stream``:
  an event recorded after them), so the decode reads finished latents;
- the latents are marked as used by the side stream (``record_stream``): when the main stream drops
  them (the rollout keeps them only until the window moves on), the caching allocator does not hand
  their memory to a main-stream allocation before the decode has read them;
- the decoder state is created and updated only on the side stream (the stream decoder is built inside
  the side-stream context), and every chunk's decode goes to the same stream, so chunk i+1 decodes after
  chunk i and the causal caches are never touched concurrently;
- each chunk's frames are copied into pinned CPU memory (``non_blocking``) on the side stream, and two
  events mark "frames decoded" and "frames on the host".

Without a side stream (``overlap_decode=False`` on CUDA) the decode runs inline on the caller's stream
and the pinned copy is still enqueued there (``non_blocking``), so no call of the rollout waits for the
device. On CPU everything is synchronous and ``host()`` is the frames tensor itself.

``DecodedFrames`` is what a consumer gets: ``device()`` (the frames on the device; the caller's current
stream waits for the decode on the device, no host sync, and the frames are marked as used by that
stream) and ``host()`` (the CPU frames; blocks the calling thread until *this* chunk's copy is done,
nothing else). ``host()`` may be called from another thread (a writer thread): it polls the chunk's
event under ``graphs.CAPTURE_LOCK`` instead of blocking in CUDA, because a blocking CUDA call from
another thread would invalidate a CUDA graph the rollout thread is capturing; ``release()`` drops the
tensors under the same lock (freeing pinned memory can record CUDA events).
"""

from __future__ import annotations

import contextlib
import time

import torch

from .graphs import CAPTURE_LOCK

__all__ = ["DecodedFrames", "FrameDecodeStream", "new_decode_side_stream"]

# The decode stream's priority: higher than the DiT's default stream (lower number = higher priority),
# so that chunk i's frames come out early while chunk i+1's DiT kernels fill the rest of the GPU; the
# total work is the same either way.
DECODE_STREAM_PRIORITY = -1


def new_decode_side_stream(device: torch.device | str) -> torch.cuda.Stream:
    return torch.cuda.Stream(device=torch.device(device), priority=DECODE_STREAM_PRIORITY)


class DecodedFrames:
    """One chunk's decoded frames ``[B, 3, f, H, W]`` in [-1, 1]; maybe still in flight on the device."""

    POLL_S = 0.0005  # host() polls the copy event this often (outside the lock)

    def __init__(
        self,
        frames: torch.Tensor,
        host: torch.Tensor | None = None,
        decoded: torch.cuda.Event | None = None,
        copied: torch.cuda.Event | None = None,
        overlapped: bool = False,
    ):
        self._frames = frames
        self._host = host
        self._decoded = decoded  # recorded after the decode, on the stream that decoded
        self._copied = copied  # recorded after the device -> pinned host copy, same stream
        self.overlapped = overlapped  # decoded on a side stream

    @property
    def shape(self) -> torch.Size:
        return self._frames.shape

    def device(self) -> torch.Tensor:
        """The frames on the decoder's device, usable on the current stream: that stream waits for the
        decode (on the device; the host does not block) and the frames are recorded as used by it."""
        if self._decoded is not None and self._frames.is_cuda:  # a CPU decoder's frames are ready
            stream = torch.cuda.current_stream(self._frames.device)
            stream.wait_event(self._decoded)
            self._frames.record_stream(stream)
        return self._frames

    def host(self) -> torch.Tensor:
        """The frames on the CPU (pinned on CUDA). Blocks the calling thread until this chunk's copy is
        done, never a device stream; safe from another thread while the rollout captures CUDA graphs."""
        if self._copied is None:
            if self._host is None:
                self._host = self._frames.cpu()  # CPU: the tensor itself
            return self._host
        while not self.on_host():
            time.sleep(self.POLL_S)
        return self._host

    def on_host(self) -> bool:
        """Whether ``host()`` would return without waiting (a non-blocking event query)."""
        if self._copied is None:
            return True
        with CAPTURE_LOCK:
            return self._copied.query()

    def release(self) -> None:
        """Drop the tensors and events (under ``CAPTURE_LOCK``: may be called from a writer thread)."""
        with CAPTURE_LOCK:
            self._frames = self._host = self._decoded = self._copied = None


class FrameDecodeStream:
    """One video's decoder state, decoding chunks in order; on ``side_stream`` when given (CUDA).

    ``factory``: a stream-decoder factory (``wan_core.vae.stream.as_rollout_decoder``): ``stream_decoder()``
    -> object with ``decode_chunk(latents [B, C, n, h, w]) -> frames [B, 3, f, H, W]``.
    """

    def __init__(self, factory, side_stream: torch.cuda.Stream | None = None):
        self.side_stream = side_stream
        with self._on_side():  # the causal state lives on the side stream from its first allocation
            self.decoder = factory.stream_decoder()

    def _on_side(self):
        return contextlib.nullcontext() if self.side_stream is None else torch.cuda.stream(self.side_stream)

    def decode(self, latents: torch.Tensor) -> DecodedFrames:
        """Enqueue the decode of the next chunk ``latents [B, C, n, h, w]`` (produced on the current
        stream); on CUDA returns without waiting for the device."""
        if latents.device.type != "cuda":
            return DecodedFrames(self.decoder.decode_chunk(latents))
        side = self.side_stream
        if side is not None:
            side.wait_stream(torch.cuda.current_stream(side.device))  # an event after the clean latents
            latents.record_stream(side)  # the main stream may drop them before the decode has read them
        with self._on_side():
            stream = torch.cuda.current_stream(latents.device)
            frames = self.decoder.decode_chunk(latents)
            decoded = torch.cuda.Event()
            decoded.record(stream)
            host = torch.empty(frames.shape, dtype=frames.dtype, pin_memory=True)
            host.copy_(frames, non_blocking=True)
            copied = torch.cuda.Event()
            copied.record(stream)
        return DecodedFrames(frames, host, decoded, copied, overlapped=side is not None)
