"""CPU stand-ins shared by the tests: a CUDA-graph capturer, and ComfyUI's runtime services for running
the nodes' bridge (``nodes.core_bridge``) in a plain process."""

import torch

from nodes import comfy_runtime as rt


class CpuCapturer:
    """Stands in for ``CudaGraphCapturer`` on CPU: ``replay()`` re-runs the captured function, which reads
    only the static input buffers, and writes the static output -- what a graph replay does (and, like a
    real capture's closure, it keeps the cache it was captured on alive until reset)."""

    def __init__(self, fail: bool = False):
        self.fail = fail
        self.pools: list[object] = []
        self.capture_pools: list[object] = []
        self.failures = 0

    def new_pool(self):
        self.pools.append(object())
        return self.pools[-1]

    def __call__(self, fn, pool):
        if self.fail:
            raise RuntimeError("operation not permitted when stream is capturing")
        self.capture_pools.append(pool)
        out = fn()

        def replay():
            out.copy_(fn())

        return replay, out

    def on_failure(self):
        self.failures += 1


def comfy_runtime_outside(mp, progress_cls) -> None:
    """Replace ComfyUI's runtime services (``nodes.comfy_runtime``) on ``mp`` (a ``pytest.MonkeyPatch``)
    for a plain process: CPU device, no server; ``progress_cls`` stands in for ``StepProgress``."""
    mp.setattr(rt, "torch_device", lambda: torch.device("cpu"))
    mp.setattr(rt, "free_memory_for", lambda path, device: None)
    mp.setattr(rt, "release_memory", lambda: None)
    FreedMemory.calls = []
    mp.setattr(rt, "free_memory_bytes", FreedMemory.record)
    mp.setattr(rt, "executing_ids", lambda: (None, None))
    mp.setattr(rt, "StepProgress", progress_cls)
    mp.setattr(rt, "check_interrupt", lambda: None)
    mp.setattr(rt, "hold_memory", HeldMemory.register)


class QuietProgress:
    """Stands in for ``comfy_runtime.StepProgress`` where the test does not look at progress."""

    def __init__(self, num_chunks, steps_per_chunk, node_id, prompt_id):
        self.steps_per_chunk = steps_per_chunk

    def step(self, chunk, step):
        pass

    def chunk_frames(self, chunk, frames, fps):
        pass


class FreedMemory:
    """Stands in for ``comfy_runtime.free_memory_bytes``: records (bytes, device, kept handles)."""

    calls: list = []

    @classmethod
    def record(cls, nbytes, device, keep=()):
        cls.calls.append((nbytes, device, tuple(keep)))


class HeldMemory:
    """Stands in for ComfyUI's model management behind ``comfy_runtime.hold_memory``: records what is
    registered; ``unload_all()`` is ComfyUI unloading every model (``POST /free``)."""

    held: list = []  # [HeldMemory], in registration order, while registered

    def __init__(self, nbytes, device, on_release, name=""):
        self.nbytes, self.device, self.on_release, self.name = nbytes, device, on_release, name

    @classmethod
    def register(cls, nbytes, device, on_release, name=""):
        h = cls(nbytes, device, on_release, name)
        cls.held.append(h)
        return h

    @classmethod
    def named(cls, text: str) -> list:
        return [h for h in cls.held if text in h.name]

    @classmethod
    def unload_all(cls) -> None:
        held, cls.held = cls.held, []
        for h in held:
            h.on_release()
