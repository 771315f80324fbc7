"""The Streaming AR Sampler's pipeline kept with its loaded DiT between ComfyUI jobs.

Why: a new ``StreamingPipeline`` per job allocates the KV cache again, runs every KV fill level once
eagerly and captures its CUDA graph the next time it comes (7 captures for an 81-frame video, each one
a device sync and an ``empty_cache()`` inside ``torch.cuda.graph``). A kept
pipeline starts the next video of the same geometry on the same KV cache and replays the graphs from
its first pass (``StreamingPipeline.initialize_cache`` reuses them, ``rebind`` gives it the new job's
encoder / decoder / callbacks).

Memory: what is kept (KV cache, prompt cross-attention buffers and the graphs' pool) is registered
with ComfyUI's model management as a model of the first two's size (``comfy_runtime.MemoryRegistration``),
so ComfyUI frees it when its own models need the memory, and on "Free model and node cache". A job that fails or is
interrupted drops it (its cache may be half-written); a job with another preset, window or low-noise
model replaces it, so one DiT never holds two (another video size keeps the pipeline, which frees the
old KV cache before allocating the new one, and registers the new size). One ``WarmRollout`` per
``LoadedDiT``: the kept pipeline goes with the loaded model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable

from . import comfy_runtime as rt

log = logging.getLogger("wan_stream")


class WarmRollout:
    """At most one kept ``StreamingPipeline``, keyed by what its constructor depends on."""

    def __init__(self) -> None:
        self._key: Hashable | None = None
        self._pipe = None
        # in use from acquire to keep / drop; ComfyUI's unload waits for the end of a job
        self.registration = rt.MemoryRegistration("Streaming AR Sampler KV cache", self._released)
        self.builds = 0  # pipelines built (a cold start each)
        self.reuses = 0  # jobs that started on the kept pipeline

    @property
    def pipeline(self):
        return self._pipe

    def handles(self) -> tuple:
        """ComfyUI's handle on the kept memory, if registered (for ``free_memory_bytes(keep=...)``)."""
        return self.registration.handles()

    def acquire(self, key: Hashable, build: Callable[[], object]):
        """The pipeline for a job: the kept one when ``key`` equals its key, else a new one from
        ``build()`` (the kept one is dropped first). Marks it in use until ``keep`` or ``drop``."""
        if self._pipe is not None and self._key == key:
            self.reuses += 1
            graphs = getattr(getattr(self._pipe, "forward_runner", None), "num_graphs", 0)
            log.info("Streaming AR Sampler: starting on the kept rollout (KV cache, %d CUDA graphs)", graphs)
        else:
            self.drop()
            self._pipe = build()
            self._key = key
            self.builds += 1
        self.registration.begin_use()
        return self._pipe

    def keep(self, device) -> None:
        """After a job that ran to the end: keep the pipeline for the next job and let ComfyUI know its
        memory; drops it instead when ComfyUI asked for it during the job or cannot be told."""
        self.registration.end_use()  # an unload asked for during the job happens now
        if self._pipe is not None and not self.registration.register(self._pipe.held_nbytes(), device):
            self.drop()

    def drop(self) -> None:
        """Free the kept pipeline now (its KV cache and graphs) and unregister its memory. Not to be
        called from inside ComfyUI's unloading loop (``release_for_offload(True)`` is)."""
        self.registration.unregister()
        self._free_pipeline()

    def release_for_offload(self, inside_comfy: bool) -> None:
        """The DiT this pipeline runs on is offloaded (its CUDA graphs read the weights by address):
        free the pipeline and give up its registration."""
        self.registration.let_go(inside_comfy)
        self._free_pipeline()

    def _released(self, inside_comfy: bool) -> None:
        """ComfyUI unloaded the kept memory (inside its unloading loop, or after the job it waited for)."""
        log.info("Streaming AR Sampler: ComfyUI unloaded the kept rollout")
        self._free_pipeline()

    def _free_pipeline(self) -> None:
        pipe, self._pipe, self._key = self._pipe, None, None
        if pipe is not None:
            pipe.release()
