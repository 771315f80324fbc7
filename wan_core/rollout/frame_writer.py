"""Writing a rollout's chunks to a video file on a worker thread, so the file never stalls the GPU.

    with BackgroundFrameWriter(video_writer, max_frames=81) as sink:
        for i in range(pipe.num_chunks):
            sink.submit(pipe.generate(i))   # returns at once (blocks only when 2 chunks are pending)
            pipe.finalize(i)
    # leaving the block waits for the last chunk; an error on the thread is raised here

The thread takes each chunk's frames with ``ChunkResult.host_frames()`` (it waits for that chunk's
decode and copy only: the rollout thread keeps enqueueing the next chunk's DiT work), converts them to
uint8 and appends them to the ``VideoWriter``. At most ``max_in_flight`` chunks are submitted and not
yet written (``submit`` blocks the caller beyond that), so host and device memory stay bounded when
the file is slower than the GPU. An exception on the thread is raised in the caller at the next
``submit`` or at ``close``; on an exception in the caller (or the thread) the pending chunks are dropped
and the thread is joined before the ``with`` block of the ``VideoWriter`` aborts the partial file.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from .graphs import CAPTURE_LOCK
from .video_io import to_uint8_frames

__all__ = ["BackgroundFrameWriter"]

_DONE = object()


class BackgroundFrameWriter:
    """``submit(chunk)`` chunks (anything with ``host_frames()`` -> ``[B, 3, f, H, W]`` in [-1, 1]); a
    worker thread writes batch element 0 of each to ``writer`` in order.

    max_frames: stop writing after this many frames (the last chunk can decode more than the video needs).
    max_in_flight: chunks submitted but not yet written, at most.
    on_written: called on the thread after each chunk as ``on_written(chunk, frames_written_now)``; an
        exception there does not stop the video (it is kept in ``callback_error``).
    """

    def __init__(
        self,
        writer,
        *,
        max_frames: int | None = None,
        max_in_flight: int = 2,
        on_written: Callable[[object, int], None] | None = None,
    ):
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        self.writer = writer
        self.max_frames = max_frames
        self.max_in_flight = max_in_flight
        self.on_written = on_written
        self.frames_written = 0
        self.chunks_written = 0
        self.pending = 0  # submitted, not yet written
        self.peak_pending = 0
        self.callback_error: Exception | None = None
        self._slots = threading.Semaphore(max_in_flight)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._count = threading.Lock()
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="wan-frame-writer", daemon=True)
        self._thread.start()

    # -- caller side ----------------------------------------------------------------------------
    def submit(self, chunk) -> None:
        """Queue ``chunk`` for writing; blocks while ``max_in_flight`` chunks are pending. Raises the
        worker's error if it failed."""
        if self._closed:
            raise RuntimeError("BackgroundFrameWriter is closed")
        self._raise_if_failed()
        self._slots.acquire()  # the worker releases a slot per chunk, also after a failure
        self._raise_if_failed()
        with self._count:
            self.pending += 1
            self.peak_pending = max(self.peak_pending, self.pending)
        self._queue.put(chunk)

    def close(self) -> None:
        """Wait until every submitted chunk is written; raises the worker's error if it failed. An
        exception while waiting (a ``KeyboardInterrupt``) stops the thread before it is raised, so the
        video writer is never released under a running write."""
        try:
            self._finish()
        except BaseException:
            self.abort()
            raise
        self._raise_if_failed()

    def abort(self) -> None:
        """Stop: chunks not yet written are dropped; the thread is joined. Never raises."""
        self._stop.set()
        self._finish()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _finish(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(_DONE)
        self._thread.join()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            self._stop.set()
            raise self._error

    # -- worker side ----------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            try:
                if self._error is None and not self._stop.is_set():
                    self._write(item)
            except BaseException as e:  # handed to the caller at its next submit / close
                self._error = e
            finally:
                with CAPTURE_LOCK:  # the chunk's device tensors may be freed here (see graphs.CAPTURE_LOCK)
                    item = None
                with self._count:
                    self.pending -= 1
                self._slots.release()

    def _write(self, chunk) -> None:
        frames = chunk.host_frames()  # [B, 3, f, H, W], waits for this chunk's copy only
        if frames is None:
            raise ValueError("this chunk has no frames: the pipeline has no decoder (decoder=...)")
        keep = frames.shape[2]
        if self.max_frames is not None:
            keep = max(0, min(keep, self.max_frames - self.frames_written))
        if keep:
            arr = to_uint8_frames(frames[:, :, :keep])  # [f, H, W, 3] uint8
            with CAPTURE_LOCK:
                frames = None  # pinned memory back to its allocator before the (slow) encode
            self.writer.write(arr)
            self.frames_written += keep
        self.chunks_written += 1
        if self.on_written is not None:
            try:
                self.on_written(chunk, keep)
            except Exception as e:  # progress only (e.g. a terminal closed by SIGHUP): the video goes on
                if self.callback_error is None:
                    self.callback_error = e
