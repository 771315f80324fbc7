"""A pack model (DiT, Wan VAE, TAEHV) on the GPU between jobs, known to ComfyUI's model management.

ComfyUI frees GPU memory for its own models by unloading the models it knows. Registered here
(``comfy_runtime.hold_memory``, the model's size), a loaded DiT or VAE is one of them: when ComfyUI
needs the room (a UMT5 encoder or another workflow's model loading, "Free model and node cache") it
asks, and the model moves to the CPU (``offload_device``); ``ResidentModel.using(...)`` moves it back
before a node runs it, asking ComfyUI to make room first. A request that comes while the model runs is
carried out when it is done. What depends on the weights' addresses (the sampler's kept CUDA graphs,
``warm_rollout.py``) is released through ``on_offload``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import torch

from wan_core.memory import FREE_THE_GPU, explain_oom, gib, tensor_nbytes

from . import comfy_runtime as rt

log = logging.getLogger("wan_stream")


def module_nbytes(model: torch.nn.Module) -> int:
    return tensor_nbytes([*model.parameters(), *model.buffers()])


class ResidentModel:
    """One model's residency: on ``device`` and registered with ComfyUI, or offloaded by ComfyUI."""

    def __init__(
        self,
        model: torch.nn.Module,
        device: torch.device,
        name: str,
        offload_device: torch.device | str = "cpu",
        on_offload: Callable[[bool], None] | None = None,
        fixes: tuple[str, ...] = (),
    ):
        self.model = model
        self.device = torch.device(device)
        self.offload_device = torch.device(offload_device)
        self.name = name
        self.on_offload = on_offload
        self.fixes = tuple(fixes)  # what else shrinks this model, for out-of-memory errors
        self.offloaded = False
        self.offloads = 0  # times ComfyUI moved it off the device
        # in use inside ``using``; ComfyUI's unload waits for the end of the use
        self.registration = rt.MemoryRegistration(name, self._offload)

    def handles(self) -> tuple:
        return self.registration.handles()

    def register(self) -> None:
        """Tell ComfyUI the model is loaded (its size on the device)."""
        if not self.offloaded:
            self.registration.register(module_nbytes(self.model), self.device)

    def _acquire(self, keep: tuple) -> None:
        if self.offloaded:
            rt.free_memory_bytes(module_nbytes(self.model), self.device, keep=keep)
            self._move_back()
            self.offloaded = False
            log.info("%s: moved back to %s (ComfyUI had offloaded it)", self.name, self.device)
        self.register()
        self.registration.begin_use()

    @explain_oom(
        lambda self: (
            f"moving {self.name} ({gib(module_nbytes(self.model))}) back to the GPU",
            self.device,
            [FREE_THE_GPU, *self.fixes],
        )
    )
    def _move_back(self) -> None:
        try:
            self.model.to(self.device)
        except BaseException:  # not left half on the GPU; still marked offloaded: the next use retries
            self.model.to(self.offload_device)
            raise

    def _offload(self, inside_comfy: bool) -> None:
        """Never raises: it may run inside ComfyUI's unloading (an exception there would stop ComfyUI's
        prompt worker). A model that could not be moved whole is still marked offloaded, so its next
        use moves all of it back. ``on_offload(inside_comfy)``: whether this runs inside ComfyUI's
        unloading loop (registrations must not be dropped there) or after a job (deferred)."""
        self.offloaded = True
        self.offloads += 1
        try:
            if self.on_offload is not None:
                self.on_offload(inside_comfy)  # e.g. CUDA graphs that read the weights by address
            if self.offload_device != self.device:
                self.model.to(self.offload_device)
                log.info("%s: offloaded to %s for ComfyUI's other models", self.name, self.offload_device)
        except Exception as e:
            log.error(
                "%s: offloading failed (%s: %s); it is moved back to %s before its next use",
                self.name,
                type(e).__name__,
                e,
                self.device,
            )

    @staticmethod
    @contextlib.contextmanager
    def using(*residents: ResidentModel | None, keep: tuple = ()):
        """Around running these models: each on its device and registered (room made first, without
        unloading the others nor the handles in ``keep``); ComfyUI's requests to offload them wait until
        the block ends."""
        rs = [r for r in residents if r is not None]
        entered = []
        try:
            for r in rs:
                r._acquire(tuple(keep) + tuple(h for o in rs if o is not r for h in o.handles()))
                entered.append(r)
            yield
        finally:
            for r in reversed(entered):
                r.registration.end_use()  # an offload asked for meanwhile happens now
