"""GPU speed features around the plain DiT: CUDA-graph replay of the chunk forward, and
``torch.compile`` of the transformer blocks. Both are wrappers; the model code stays eager and plain.

CUDA graphs. ``WanDiT.forward_planned`` (after ``RollingKVCache.plan_chunk``) reads only device
buffers plus the Python ints ``cache.kv_tokens`` / ``cache.chunk_frames``. ``kv_tokens`` takes one
value per fill level while the cache fills (chunk k of n frames sees ``min(k n, S + W)`` frames) and
then stays at ``capacity_tokens``, so one graph per (model, prompt cache, KV cache, chunk shape,
``kv_tokens``) covers every pass: a 7-chunk video with a 21-frame window has 7 levels, each replayed
for its denoising steps and its clean-context pass. All graphs of a runner share one memory pool
(``torch.cuda.graph_pool_handle()``): they never run concurrently and every output is cloned right
after its replay, so the pool holds about one pass's activations, not one per level. Inputs
(latents, timesteps, y) are copied into static buffers before each replay. A key is captured the
second time it is seen (the first call runs eagerly), so one-off shapes (a shorter last chunk, prompt
switch re-encodes) never pay for a capture. Replacing the prompt cache (prompt switch) or the KV
cache invalidates the graphs (``reset()``); a new video of the same geometry keeps them: the pipeline
reuses its KV cache and hands the new prompt's cross-attention K/V to ``bind_cross``, which copies them
into the buffers the graphs read when it can. A capture failure falls back to eager (warned).

The capture itself is a ``GraphCapturer`` (``CudaGraphCapturer`` on CUDA); the key, static-buffer
and fallback logic of ``ChunkForward`` is device independent, so tests drive it on CPU with a
capturer whose "graph" re-runs the function on the static buffers.

On CPU, or with ``enabled=False``, ``ChunkForward`` is a plain call.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import torch

from wan_core.dit.model import dit_experts

from .prompt import cross_tensors, same_shapes

__all__ = [
    "CAPTURE_LOCK",
    "ChunkForward",
    "CudaGraphCapturer",
    "compile_blocks",
    "uncompile_blocks",
    "compile_failed",
    "is_compile_error",
    "default_speed_flags",
]

log = logging.getLogger("wan_core.rollout")

# Held while a CUDA graph is captured. A capture (torch's default "global" mode) is invalidated by a
# possibly synchronizing CUDA call from any other thread (an event query or wait, a blocking copy), so a
# thread that calls CUDA beside the rollout (the frame writer waiting for decoded frames,
# ``decode_stream.py``) takes this lock around those calls.
CAPTURE_LOCK = threading.Lock()


def default_speed_flags(device: torch.device | str) -> tuple[bool, bool]:
    """(cuda_graphs, compile): on by default on CUDA, off elsewhere."""
    on = torch.device(device).type == "cuda"
    return on, on


def compile_blocks(
    model: torch.nn.Module, mode: str | None = None, dynamic: bool | None = None, backend: str = "inductor"
) -> int:
    """``torch.compile`` every transformer block in place (``nn.Module.compile``); returns how many.

    Works on a ``WanDiT`` or a ``DualExpertDiT`` (both experts). ``mode`` is passed to
    ``torch.compile`` (e.g. ``"max-autotune-no-cudagraphs"``; CUDA graphs are applied separately);
    ``backend="eager"`` traces without code generation (tests). The streaming pass hands each block a
    per-layer ``LayerKV`` (no layer index), so all blocks share a few compiled graphs (per chunk shape /
    visible length, dynamic after the first change) instead of one per layer.
    """
    experts = dit_experts(model)
    n = 0
    for m in experts:
        for blk in m.blocks:
            blk.compile(backend=backend, mode=mode, dynamic=dynamic)
            n += 1
    return n


def uncompile_blocks(model: torch.nn.Module) -> None:
    """Undo ``compile_blocks`` for good (back to eager blocks): the compile failed, and
    ``prepare_dit`` does not compile this model again (a later pipeline on the same loaded DiT, e.g.
    ComfyUI's next job, would pay for the same failing compile and warn again)."""
    experts = dit_experts(model)
    for m in experts:
        m.compile_failed = True
        for blk in m.blocks:
            blk._compiled_call_impl = None


def compile_failed(model: torch.nn.Module) -> bool:
    """Whether ``uncompile_blocks`` put this model back to eager blocks after a failed compile."""
    return any(getattr(m, "compile_failed", False) for m in dit_experts(model))


def is_compile_error(e: BaseException) -> bool:
    """Whether an exception comes from torch.compile (dynamo / inductor), not from the model itself."""
    mod = type(e).__module__ or ""
    return mod.startswith(("torch._dynamo", "torch._inductor")) or "BackendCompilerFailed" in type(e).__name__


@dataclass
class _Captured:
    replay: Callable[[], None]
    x: torch.Tensor  # static input buffers, read by every replay
    t: torch.Tensor
    y: torch.Tensor | None
    out: torch.Tensor  # static output buffer, written by every replay


class CudaGraphCapturer:
    """``capturer(fn, pool) -> (replay, out)``: captures ``fn()`` (which reads only static buffers) into
    a ``torch.cuda.CUDAGraph`` allocated from ``pool``; ``replay()`` reruns it, writing ``out``.

    Warm-up: ``warmup`` side-stream runs before this capturer's first capture only (process- and
    stream-level lazy initialisation: cuBLAS handles and workspaces, allocator growth). Later captures
    run none: ``ChunkForward`` captures a key only after running it eagerly once, which already built
    the shape-specific state (cuDNN attention plans, compiled kernels, autotuning). A warm-up run costs
    a full DiT pass, so warming up per fill level would add one pass per level to every video.
    """

    def __init__(self, warmup: int = 1):
        self.warmup = warmup
        self.warmed_up = False

    def new_pool(self):
        return torch.cuda.graph_pool_handle()

    def __call__(self, fn: Callable[[], torch.Tensor], pool) -> tuple[Callable[[], None], torch.Tensor]:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            # warm-up runs (cuBLAS / cuDNN workspaces on this stream) write this chunk's K/V into its
            # planned slots: the values the replay writes right after, so the cache ends up as eager
            for _ in range(0 if self.warmed_up else self.warmup):
                fn()
        torch.cuda.current_stream().wait_stream(side)
        self.warmed_up = True
        graph = torch.cuda.CUDAGraph()
        with CAPTURE_LOCK, torch.cuda.graph(graph, pool=pool):
            out = fn()
        return graph.replay, out

    @staticmethod
    def on_failure() -> None:
        torch.cuda.synchronize()


class ChunkForward:
    """Runs ``model.forward_planned(x, t, cross, cache, y)``; replays one CUDA graph per fill level.

    ``capturer``: a ``GraphCapturer`` (``new_pool()``, ``__call__(fn, pool) -> (replay, out)``,
    ``on_failure()``); default ``CudaGraphCapturer``. ``device_types``: devices whose tensors are
    graphed (CUDA; tests pass ``("cpu",)`` with a CPU capturer).
    """

    def __init__(
        self,
        enabled: bool = True,
        warmup: int = 1,
        capturer=None,
        device_types: tuple[str, ...] = ("cuda",),
    ):
        self.enabled = enabled
        self.capturer = capturer if capturer is not None else CudaGraphCapturer(warmup)
        self.device_types = tuple(device_types)
        self._graphs: dict[tuple, _Captured] = {}
        self._seen: set[tuple] = set()
        self._pool = None
        self._bound: tuple[list, object] | None = None  # (per-expert cross K/V, KV cache) graphs read
        self.replays = 0
        self.captures = 0

    def reset(self) -> None:
        """Drop every captured graph and their memory pool (new prompt cache or KV cache)."""
        self._graphs.clear()
        self._seen.clear()
        self._pool = None
        self._bound = None

    @torch.no_grad()
    def bind_cross(self, crosses: list, cache) -> list:
        """The per-expert ``CrossAttnCache`` list a new video's passes should read. When ``cache`` is the
        KV cache the captured graphs were bound to and ``crosses`` has the shapes of the bound buffers,
        the new K/V are copied into those buffers and they are returned (the graphs replay); otherwise
        the graphs are dropped and ``crosses`` becomes the bound set."""
        if self._bound is not None:
            old, old_cache = self._bound
            if cache is not None and cache is old_cache and same_shapes(old, crosses):
                for dst, src in zip(old, crosses):
                    for d, s in zip(cross_tensors(dst), cross_tensors(src)):
                        d.copy_(s)
                return old
        self.reset()
        self._bound = (crosses, cache)
        return crosses

    @property
    def num_graphs(self) -> int:
        return len(self._graphs)

    def key(self, model, x, t, cross, cache, y) -> tuple:
        """Everything ``forward_planned`` reads as a Python value or a buffer address."""
        return (
            id(model),
            id(cross),
            id(cache),
            getattr(model, "attn_backend", None),
            tuple(x.shape),
            x.dtype,
            tuple(t.shape),
            t.dtype,
            None if y is None else (tuple(y.shape), y.dtype),
            cache.kv_tokens,
            cache.chunk_frames,
        )

    def __call__(self, model, x, t, cross, cache, y=None) -> torch.Tensor:
        if not (self.enabled and x.device.type in self.device_types):
            return model.forward_planned(x, t, cross, cache, y)
        key = self.key(model, x, t, cross, cache, y)
        cap = self._graphs.get(key)
        if cap is None:
            if key not in self._seen:  # first time: run eagerly, capture when it comes again
                self._seen.add(key)
                return model.forward_planned(x, t, cross, cache, y)
            try:
                cap = self._capture(model, x, t, cross, cache, y)
            except Exception as e:  # a capture failure must never cost the user the video
                log.warning(
                    "CUDA graph capture failed (%s: %s); continuing without CUDA graphs", type(e).__name__, e
                )
                self.enabled = False
                self.reset()
                self.capturer.on_failure()
                return model.forward_planned(x, t, cross, cache, y)
            self._graphs[key] = cap
        cap.x.copy_(x)
        cap.t.copy_(t)
        if y is not None:
            cap.y.copy_(y)
        cap.replay()
        self.replays += 1
        return cap.out.clone()  # the pool is shared: the next graph may reuse the output's memory

    def _capture(self, model, x, t, cross, cache, y) -> _Captured:
        sx, st = x.clone(), t.clone()
        sy = None if y is None else y.clone()
        if self._pool is None:
            self._pool = self.capturer.new_pool()
        replay, out = self.capturer(lambda: model.forward_planned(sx, st, cross, cache, sy), self._pool)
        self.captures += 1
        return _Captured(replay, sx, st, sy, out)
