"""The Streaming AR Sampler's pipeline kept with its loaded DiT between ComfyUI jobs.

Why: a new ``StreamingPipeline`` per job allocates the KV cache again, runs every KV fill level once
eagerly and captures its CUDA graph the next time it comes (7 captures for an 81-frame video, each one
a device sync, a ``gc.collect()`` and an ``empty_cache()`` inside ``torch.cuda.graph``). A kept
pipeline starts the next video of the same geometry on the same KV cache and replays the graphs from
its first pass (``StreamingPipeline.initialize_cache`` reuses them, ``rebind`` gives it the new job's
encoder / decoder / callbacks).

Memory: what is kept (KV cache, prompt cross-attention buffers, the graphs' pool) is registered with
ComfyUI's model management as a model of that size (``comfy_runtime.hold_memory``), so ComfyUI frees it
when its own models need the memory, and on "Free model and node cache". A job that fails or is
interrupted drops it (its cache may be half-written); a job with another preset, window or low-noise
model replaces it, so one DiT never holds two (another video size keeps the pipeline, which frees the
old KV cache before allocating the new one, and registers the new size). One ``WarmRollout`` per ``LoadedDiT``: the kept
pipeline goes with the loaded model.
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
        self._hold = None  # ComfyUI's handle on the kept memory (None: not registered)
        self._held_nbytes = 0
        self._retired: list = []  # handles ComfyUI unloaded: let go outside ComfyUI's unload loop
        self._busy = False
        self._release_requested = False
        self.builds = 0  # pipelines built (a cold start each)
        self.reuses = 0  # jobs that started on the kept pipeline

    @property
    def pipeline(self):
        return self._pipe

    def handles(self) -> tuple:
        """ComfyUI's handle on the kept memory, if registered (for ``free_memory_bytes(keep=...)``)."""
        return () if self._hold is None else (self._hold,)

    def acquire(self, key: Hashable, build: Callable[[], object]):
        """The pipeline for a job: the kept one when ``key`` equals its key, else a new one from
        ``build()`` (the kept one is dropped first). Marks it in use until ``keep`` or ``drop``."""
        self._retired.clear()
        if self._pipe is not None and self._key == key:
            self.reuses += 1
            graphs = getattr(getattr(self._pipe, "forward_runner", None), "num_graphs", 0)
            log.info("Streaming AR Sampler: starting on the kept rollout (KV cache, %d CUDA graphs)", graphs)
        else:
            self.drop()
            self._pipe = build()
            self._key = key
            self.builds += 1
        self._busy = True
        return self._pipe

    def keep(self, device) -> None:
        """After a job that ran to the end: keep the pipeline for the next job and let ComfyUI know its
        memory; drops it instead when ComfyUI asked for it during the job or cannot be told."""
        self._busy = False
        if self._pipe is None:
            return
        if self._release_requested:
            self.drop()
            return
        nbytes = self._pipe.held_nbytes()
        if self._hold is None or self._held_nbytes != nbytes:  # new, or the cache was resized (video size)
            self._hold = None  # unregisters the old size
            self._hold = rt.hold_memory(
                nbytes, device, rt.weak_call(self.release_from_comfy), name="Streaming AR Sampler KV cache"
            )
            self._held_nbytes = nbytes
            if self._hold is None:
                self.drop()

    def drop(self) -> None:
        """Free the kept pipeline now (its KV cache and graphs) and unregister its memory: the last
        reference to the handle goes, and ComfyUI forgets a model that is gone. Not to be called
        from inside ComfyUI's unloading (``release_from_comfy``), which iterates its model list."""
        self._retired.clear()
        self._hold = None
        self._busy = self._release_requested = False
        self._free_pipeline()

    def _free_pipeline(self) -> None:
        pipe, self._pipe, self._key = self._pipe, None, None
        if pipe is not None:
            pipe.release()

    def release_for_offload(self, inside_comfy: bool) -> None:
        """The DiT this pipeline runs on is offloaded (its CUDA graphs read the weights by address):
        free the pipeline; inside ComfyUI's unloading loop as ``release_from_comfy`` does, after a job
        (a deferred offload) with the registration dropped too."""
        if inside_comfy:
            self.release_from_comfy()
        else:
            self.drop()

    def release_from_comfy(self) -> None:
        """ComfyUI unloads the kept memory (``hold_memory``'s ``on_release``), or the DiT it runs on (its
        CUDA graphs read the weights by address). May run inside ComfyUI's unloading loop."""
        if self._busy:  # the job running now uses it: drop it when the job ends
            self._release_requested = True
            return
        log.info("Streaming AR Sampler: ComfyUI unloaded the kept rollout")
        # ComfyUI removes its entry itself; letting go of the handle here could run its clean-up of
        # dead models in the middle of its unloading loop
        if self._hold is not None:
            self._retired.append(self._hold)
        self._hold = None
        self._free_pipeline()
