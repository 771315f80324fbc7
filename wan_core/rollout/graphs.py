"""GPU speed features around the plain DiT: CUDA-graph replay of the steady-state chunk forward, and
``torch.compile`` of the transformer blocks. Both are wrappers; the model code stays eager and plain.

CUDA graphs. ``WanDiT.forward_planned`` (after ``RollingKVCache.plan_chunk``) reads only device
buffers plus the Python int ``cache.kv_tokens``; once the cache is full that int no longer changes,
so one captured graph per (model, prompt cache, KV cache, chunk shape) replays every later denoising
step and clean-context pass. Inputs are copied into static buffers before each replay. While the
cache fills (``kv_tokens`` grows) the forward runs eagerly, and a shape is only captured the second
time it is seen in steady state, so one-off shapes (a shorter last chunk) never pay for a capture.
Replacing the prompt cache (prompt switch) or the KV cache invalidates the graphs (``reset()``).

On CPU, or with ``enabled=False``, ``ChunkForward`` is a plain call.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

__all__ = ["ChunkForward", "compile_blocks", "uncompile_blocks", "is_compile_error", "default_speed_flags"]

log = logging.getLogger("wan_core.rollout")


def default_speed_flags(device: torch.device | str) -> tuple[bool, bool]:
    """(cuda_graphs, compile): on by default on CUDA, off elsewhere."""
    on = torch.device(device).type == "cuda"
    return on, on


def compile_blocks(model: torch.nn.Module, mode: str | None = None, dynamic: bool | None = None) -> int:
    """``torch.compile`` every transformer block in place (``nn.Module.compile``); returns how many.

    Works on a ``WanDiT`` or a ``DualExpertDiT`` (both experts). ``mode`` is passed to
    ``torch.compile`` (e.g. ``"max-autotune-no-cudagraphs"``; CUDA graphs are applied separately).
    """
    experts = model.experts() if hasattr(model, "experts") else (model,)
    n = 0
    for m in experts:
        for blk in m.blocks:
            blk.compile(mode=mode, dynamic=dynamic)
            n += 1
    return n


def uncompile_blocks(model: torch.nn.Module) -> None:
    """Undo ``compile_blocks`` (back to eager blocks)."""
    experts = model.experts() if hasattr(model, "experts") else (model,)
    for m in experts:
        for blk in m.blocks:
            blk._compiled_call_impl = None


def is_compile_error(e: BaseException) -> bool:
    """Whether an exception comes from torch.compile (dynamo / inductor), not from the model itself."""
    mod = type(e).__module__ or ""
    return mod.startswith(("torch._dynamo", "torch._inductor")) or "BackendCompilerFailed" in type(e).__name__


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    x: torch.Tensor
    t: torch.Tensor
    y: torch.Tensor | None
    out: torch.Tensor


class ChunkForward:
    """Runs ``model.forward_planned(x, t, cross, cache, y)``; replays a CUDA graph in steady state."""

    def __init__(self, enabled: bool = True, warmup: int = 2):
        self.enabled = enabled
        self.warmup = warmup
        self._graphs: dict[tuple, _Captured] = {}
        self._seen: set[tuple] = set()
        self.replays = 0
        self.captures = 0

    def reset(self) -> None:
        """Drop every captured graph (new prompt cache, new KV cache, new video)."""
        self._graphs.clear()
        self._seen.clear()

    def _key(self, model, x, t, cross, cache, y) -> tuple:
        return (
            id(model),
            id(cross),
            id(cache),
            tuple(x.shape),
            x.dtype,
            tuple(t.shape),
            None if y is None else tuple(y.shape),
            cache.kv_tokens,
            cache.chunk_frames,
        )

    def __call__(self, model, x, t, cross, cache, y=None) -> torch.Tensor:
        steady = cache.kv_tokens == cache.capacity_tokens
        if not (self.enabled and steady and x.is_cuda):
            return model.forward_planned(x, t, cross, cache, y)
        key = self._key(model, x, t, cross, cache, y)
        cap = self._graphs.get(key)
        if cap is None:
            if key not in self._seen:  # first time in steady state: run eagerly, capture next time
                self._seen.add(key)
                return model.forward_planned(x, t, cross, cache, y)
            try:
                cap = self._capture(model, x, t, cross, cache, y)
            except Exception as e:  # a capture failure must never cost the user the video
                log.warning(
                    "CUDA graph capture failed (%s: %s); continuing without CUDA graphs", type(e).__name__, e
                )
                self.enabled = False
                torch.cuda.synchronize()
                return model.forward_planned(x, t, cross, cache, y)
            self._graphs[key] = cap
        cap.x.copy_(x)
        cap.t.copy_(t)
        if y is not None:
            cap.y.copy_(y)
        cap.graph.replay()
        self.replays += 1
        return cap.out.clone()

    def _capture(self, model, x, t, cross, cache, y) -> _Captured:
        sx, st = x.clone(), t.clone()
        sy = None if y is None else y.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            # warm-up runs write this chunk's K/V into its planned slots: the same values the replay
            # writes right after, so the cache ends up exactly as with an eager call
            for _ in range(self.warmup):
                model.forward_planned(sx, st, cross, cache, sy)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = model.forward_planned(sx, st, cross, cache, sy)
        self.captures += 1
        return _Captured(graph, sx, st, sy, out)
