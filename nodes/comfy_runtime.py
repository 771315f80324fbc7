"""ComfyUI's services, used by the nodes: device, precision, memory, interruption, progress, preview.

Imported only inside a running ComfyUI (it imports ``comfy.*`` and ``server`` lazily).
"""

from __future__ import annotations

import base64
import io
import os

import torch

PRECISIONS = ["auto", "bf16", "fp16", "fp8"]
# Load Wan DiT only: fp8_fast = fp8 weights *and* FP8 math (wan_core.fp8_linear). Combo values are saved
# by name in workflows: new choices go at the end.
DIT_PRECISIONS = [*PRECISIONS, "fp8_fast"]
VAE_PRECISIONS = ["auto", "bf16", "fp16", "fp32"]
ATTENTION_BACKENDS = ["auto", "sdpa", "sage", "flash"]

PREVIEW_EVENT = "wanstream.preview"  # one per finished chunk: its decoded frames
PROGRESS_EVENT = "wanstream.progress"  # one per denoising step: chunk / step counters
PREVIEW_MAX_SIDE = 512


def torch_device() -> torch.device:
    import comfy.model_management as mm

    return mm.get_torch_device()


def compute_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The dtype math runs in. fp8 stores weights in 8 bits and computes in bf16/fp16."""
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if precision == "fp32":
        return torch.float32
    if device.type == "cpu":
        return torch.float32
    import comfy.model_management as mm

    return torch.bfloat16 if mm.should_use_bf16(device) else torch.float16


def free_memory_for(path: str, device: torch.device, factor: float = 1.2) -> None:
    """Ask ComfyUI to unload its own models until a file of this size fits on ``device``."""
    import comfy.model_management as mm

    need = int(os.path.getsize(path) * factor) if os.path.isfile(path) else 0
    mm.free_memory(need, device)
    mm.soft_empty_cache()


def weak_call(method):
    """A callable that calls the bound ``method`` (with the call's arguments) while its object lives: a
    registration with ComfyUI must not keep the pack's objects (a loaded model, a kept rollout) alive
    once they are dropped."""
    import weakref

    ref = weakref.WeakMethod(method)

    def call(*args):
        m = ref()
        if m is not None:
            m(*args)

    return call


class MemoryRegistration:
    """Memory the pack keeps on a device, registered with ComfyUI (``hold_memory``), and the two rules
    around ComfyUI unloading it:

    - while it is in use (``begin_use`` .. ``end_use``) an unload request waits for the end of the use;
    - inside ComfyUI's unloading loop the handle is not let go (ComfyUI removes its entry itself, and a
      handle dropped there would run ComfyUI's dead-model clean-up in the middle of the loop): it is
      kept aside and let go at the next call from the pack.

    ``on_release(inside_comfy)`` frees the memory: inside ComfyUI's loop, or after the use it waited for.
    """

    def __init__(self, name: str, on_release):
        self.name = name
        self._on_release = weak_call(on_release)  # no reference cycle with the owner
        self._hold = None
        self._retired: list = []
        self.nbytes = 0
        self.in_use = 0
        self._release_requested = False

    def handles(self) -> tuple:
        """ComfyUI's handle, if registered (for ``free_memory_bytes(keep=...)``)."""
        return () if self._hold is None else (self._hold,)

    def register(self, nbytes: int, device: torch.device) -> bool:
        """Registered with this size (again if the size changed); False where ComfyUI cannot be told."""
        self._retired.clear()
        if self._hold is None or self.nbytes != nbytes:
            self._hold = None  # unregisters the old size
            self._hold = hold_memory(nbytes, device, weak_call(self._released_by_comfy), name=self.name)
            self.nbytes = nbytes
        return self._hold is not None

    def unregister(self) -> None:
        """Forget the registration and any use now (not from inside ComfyUI's unloading loop)."""
        self._retired.clear()
        self._hold = None
        self.in_use = 0
        self._release_requested = False

    def let_go(self, inside_comfy: bool) -> None:
        """Give the registration up because its memory is freed for another reason."""
        if inside_comfy:
            self._retire()
        else:
            self.unregister()

    def begin_use(self) -> None:
        self._retired.clear()
        self.in_use += 1

    def end_use(self) -> None:
        """End of a use; carries out an unload request that came during it (``on_release(False)``)."""
        self.in_use = max(0, self.in_use - 1)
        if not self.in_use and self._release_requested:
            self._release_requested = False
            self._hold = None  # ComfyUI already dropped its entry
            self._on_release(False)

    def _retire(self) -> None:
        if self._hold is not None:
            self._retired.append(self._hold)
        self._hold = None

    def _released_by_comfy(self) -> None:
        if self.in_use:
            self._release_requested = True
            return
        self._retire()
        self._on_release(True)


def free_memory_bytes(nbytes: int, device: torch.device, keep: tuple = ()) -> None:
    """Ask ComfyUI to unload models until ``nbytes`` more (and its inference headroom) fit on ``device``
    (a GPU), keeping the models registered under the handles in ``keep`` (``hold_memory``)."""
    if torch.device(device).type == "cpu":
        return
    import comfy.model_management as mm

    _free_memory_bytes(mm, nbytes, device, keep)


def _free_memory_bytes(mm, nbytes: int, device: torch.device, keep: tuple) -> None:
    keep_loaded = [lm for lm in mm.current_loaded_models if any(lm.model is h for h in keep)]
    # plus ComfyUI's own headroom for running a model (~1 GB + its reserve), as load_models_gpu asks
    mm.free_memory(int(nbytes) + int(mm.minimum_inference_memory()), device, keep_loaded=keep_loaded)


def release_memory() -> None:
    import comfy.model_management as mm

    mm.soft_empty_cache()


class WanStreamKeptMemory(torch.nn.Module):
    """No weights: stands, in ComfyUI's list of loaded models, for memory the pack keeps on ``device``
    between jobs (``hold_memory``). It reports itself fully loaded (``model_loaded_weight_memory``), so
    ComfyUI never asks to make room for it again; unloading it is the only thing ComfyUI can do to it."""

    def __init__(self, nbytes: int, device: torch.device, name: str = ""):
        super().__init__()
        self.device = device
        self.held_name = name
        self.model_loaded_weight_memory = int(nbytes)


def hold_memory(nbytes: int, device: torch.device, on_release, name: str = ""):
    """Register ``nbytes`` that the pack keeps on ``device`` between jobs with ComfyUI's model
    management, as a model of that size. When ComfyUI needs the memory for its own models, or the user
    frees models ("Free model and node cache", ``POST /free``), it unloads that model and
    ``on_release()`` is called (once), which must free the memory. Returns the handle: drop every
    reference to it to unregister without ``on_release`` (ComfyUI forgets models that are gone).
    Returns None where this ComfyUI's model management lacks what this needs (the memory then is not
    known to ComfyUI; the caller should not keep it). ``name``: what is held (logs, tests)."""
    try:
        import comfy.model_management as mm
        import comfy.model_patcher as mp

        patcher = mp.ModelPatcher(
            WanStreamKeptMemory(nbytes, device, name),
            load_device=device,
            offload_device=torch.device("cpu"),
            size=int(nbytes),
        )
        fired = []

        def on_detach(_patcher, unpatch_all=True):
            # ComfyUI also detaches a model (without unpatching) to re-register it when the same one
            # is loaded again; only an unload frees the memory
            if unpatch_all and not fired:
                fired.append(True)
                on_release()

        patcher.add_callback(mp.CallbacksMP.ON_DETACH, on_detach)
        # what ``load_models_gpu`` does for a model already in memory, minus its ``free_memory`` calls:
        # registering memory that is already allocated must not unload anything (it would evict the
        # pack's other models to keep ComfyUI's ~1 GB of inference headroom); making room is
        # ``free_memory_bytes``' job, before an allocation
        loaded = mm.LoadedModel(patcher)
        loaded.model_load(0)
        mm.current_loaded_models.insert(0, loaded)
    except Exception as e:  # registering must never fail a job: the memory then stays unknown to ComfyUI
        import logging

        logging.getLogger("wan_stream").warning(
            "Wan Stream: cannot register kept memory with ComfyUI's model management (%s: %s)",
            type(e).__name__,
            e,
        )
        return None
    return patcher


def check_interrupt() -> None:
    """Raises ComfyUI's InterruptProcessingException when the user pressed cancel / POST /interrupt."""
    import comfy.model_management as mm

    mm.throw_exception_if_processing_interrupted()


def temp_folder() -> str:
    """ComfyUI's temp folder (on disk beside its output, emptied at its start), created if missing: for
    files that can grow with a stream (the live latent spool) instead of the system's /tmp (often RAM)."""
    import os

    import folder_paths

    folder = folder_paths.get_temp_directory()
    os.makedirs(folder, exist_ok=True)
    return folder


def executing_ids() -> tuple[str | None, str | None]:
    """(prompt_id, node_id) of the node that is running now."""
    from comfy_execution.utils import get_executing_context

    ctx = get_executing_context()
    return (ctx.prompt_id, ctx.node_id) if ctx is not None else (None, None)


def _send(event: str, data: dict) -> None:
    from server import PromptServer

    server = PromptServer.instance
    server.send_sync(event, data, server.client_id)


def send_progress_text(text: str, node_id: str | None) -> bool:
    """The node's progress text (``PromptServer.send_progress_text``, shown on the node by current
    front ends); False where this ComfyUI has no such call."""
    from server import PromptServer

    server = PromptServer.instance
    send = getattr(server, "send_progress_text", None)
    if send is None or node_id is None:
        return False
    send(text, node_id, server.client_id)
    return True


def send_progress_preview(node_id: str | None, value: int, total: int, image) -> bool:
    """The node's preview image (a PIL image) with its progress, through ComfyUI's progress registry
    (``comfy_execution.progress``: a ``progress_state`` message and, for front ends that read
    preview metadata, the image shown on the node); False where this ComfyUI has no registry. Not a
    ``ProgressBar`` update: that would send the same progress value twice."""
    try:
        from comfy_execution.progress import get_progress_state
    except ImportError:
        return False
    if node_id is None:
        return False
    max_side = PREVIEW_MAX_SIDE if max(image.size) > PREVIEW_MAX_SIDE else None  # ComfyUI would upscale
    get_progress_state().update_progress(node_id, value, total, ("JPEG", image, max_side))
    return True


class StepProgress:
    """A ComfyUI progress bar over every denoising step of every chunk, plus chunk/step events.

    Every ComfyUI: the progress bar (``ProgressBar.update_absolute``, one per step) and the pack's own
    events (``wanstream.progress`` per step, ``wanstream.preview`` per chunk: the player). Where the
    running ComfyUI has them, also today's API: the progress text ("chunk 2/7 ...") and the last
    frame of each finished chunk as the node's preview image (``send_progress_text``,
    ``send_progress_preview``)."""

    def __init__(self, num_chunks: int, steps_per_chunk: int, node_id: str | None, prompt_id: str | None):
        import comfy.utils

        self.num_chunks = num_chunks
        self.steps_per_chunk = steps_per_chunk
        self.node_id = node_id
        self.prompt_id = prompt_id
        self.total = num_chunks * steps_per_chunk
        self.done = 0
        self.frames_sent = 0
        self.bar = comfy.utils.ProgressBar(self.total, node_id=node_id)

    def step(self, chunk: int, step: int) -> None:
        """Called after denoising step ``step`` (0-based) of chunk ``chunk`` finished."""
        self.done = chunk * self.steps_per_chunk + step + 1
        self.bar.update_absolute(self.done)
        if step == 0 or step + 1 == self.steps_per_chunk:  # a chunk starts / is denoised
            state = "denoised" if step + 1 == self.steps_per_chunk else f"step 1/{self.steps_per_chunk}"
            send_progress_text(
                f"chunk {chunk + 1}/{self.num_chunks} {state} · {self.frames_sent} frames", self.node_id
            )
        _send(
            PROGRESS_EVENT,
            {
                "node": self.node_id,
                "prompt_id": self.prompt_id,
                "chunk": chunk,
                "num_chunks": self.num_chunks,
                "step": step + 1,
                "num_steps": self.steps_per_chunk,
            },
        )

    def chunk_frames(self, chunk: int, frames: torch.Tensor, fps: float) -> None:
        """Send a finished chunk's decoded frames ``[F, H, W, 3]`` in [0, 1] to the browser as JPEGs
        (the player), and its last frame as the node's preview image where ComfyUI has the API."""
        self.frames_sent += int(frames.shape[0])
        send_progress_preview(self.node_id, self.done, self.total, preview_image(frames[-1]))
        done = "done" if chunk + 1 >= self.num_chunks else "shown"
        send_progress_text(
            f"chunk {chunk + 1}/{self.num_chunks} {done} · {self.frames_sent} frames at {fps:g} fps",
            self.node_id,
        )
        _send(
            PREVIEW_EVENT,
            {
                "node": self.node_id,
                "prompt_id": self.prompt_id,
                "chunk": chunk,
                "num_chunks": self.num_chunks,
                "fps": fps,
                "width": int(frames.shape[2]),
                "height": int(frames.shape[1]),
                "frames": encode_jpeg_frames(frames),
            },
        )


def preview_image(frame: torch.Tensor):
    """One frame ``[H, W, 3]`` in [0, 1] as a PIL image."""
    from PIL import Image

    return Image.fromarray((frame.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy())


def encode_jpeg_frames(
    frames: torch.Tensor, max_side: int = PREVIEW_MAX_SIDE, quality: int = 80
) -> list[str]:
    """``[F, H, W, 3]`` floats in [0, 1] -> base64 JPEG strings (downscaled to ``max_side``)."""
    from PIL import Image

    arr = (frames.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    out = []
    for frame in arr:
        img = Image.fromarray(frame)
        scale = max_side / max(img.size)
        if scale < 1:
            img = img.resize(
                (max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BILINEAR
            )
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=quality)
        out.append(base64.b64encode(buf.getvalue()).decode("ascii"))
    return out
