"""The rollout's ``StreamingPipeline`` over a context-parallel DiT.

``parallelize_pipeline(pipe, mode, ctx)`` returns a pipeline over the same loaded models whose DiT is a
``ContextParallelDiT`` and whose rolling KV cache is this rank's share. The rollout code is unchanged:
``ContextParallelPipeline`` only replaces the cache geometry -- the pipeline chooses the cache (window,
sink, RoPE mode, dtype) in ``_cache_spec`` and this subclass swaps in the DiT's ``kv_cache_geometry``
(this rank's tokens per frame and heads). (If ``StreamingPipeline._cache_spec`` asks the DiT for
``kv_cache_geometry`` itself, this subclass becomes unnecessary.)
"""

from __future__ import annotations

from ..rollout.pipeline import StreamingPipeline
from .context_parallel import wrap_for_context_parallel
from .group import ParallelContext

__all__ = ["ContextParallelPipeline", "parallelize_pipeline"]


class ContextParallelPipeline(StreamingPipeline):
    """``StreamingPipeline`` whose KV cache holds this rank's share (see the module docstring)."""

    def _cache_spec(self, batch: int, lh: int, lw: int, t: int | None) -> dict:
        spec = super()._cache_spec(batch, lh, lw, t)  # the pipeline's choices (window, sink, RoPE, dtype)
        geometry = getattr(self.experts[0], "kv_cache_geometry", None)
        if geometry is not None:
            spec["frame_tokens"], spec["num_heads"] = geometry(spec["frame_tokens"])
        return spec


def parallelize_pipeline(
    pipe: StreamingPipeline, mode: str | None, ctx: ParallelContext
) -> StreamingPipeline:
    """``pipe`` with its DiT split over the ranks of ``ctx`` (``pipe`` itself on one process).

    Only rank 0 keeps the decoder (the other ranks return latents only; every rank still runs the
    same chunk loop). The blocks are not compiled again (``compile_blocks`` compiles in place).
    """
    if mode in (None, "none") or ctx.world_size == 1:
        return pipe
    return ContextParallelPipeline(
        wrap_for_context_parallel(pipe.dit, mode, ctx),
        pipe.preset,
        text_encoder=pipe.text_encoder,
        vae=pipe.vae,
        decoder=pipe.decoder if ctx.is_main else None,
        clip_vision=pipe.clip_vision,
        cuda_graphs=pipe.cuda_graphs,
        compile=False,
        rope=pipe.rope,
        cache_dtype=pipe.cache_dtype,
        progress=pipe.progress if ctx.is_main else None,
        interrupt=pipe.interrupt,
    )
