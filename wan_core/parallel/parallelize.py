"""The rollout's ``StreamingPipeline`` over a context-parallel DiT.

``parallelize_pipeline(pipe, mode, ctx)`` returns a pipeline over the same loaded models whose DiT is a
``ContextParallelDiT`` and whose rolling KV cache is this rank's share. The rollout code is unchanged:
the causal scheme's ``cache_spec`` asks the DiT for its ``kv_cache_geometry`` (this rank's tokens per
frame and heads), so the pipeline needs no subclass.
"""

from __future__ import annotations

from ..rollout.pipeline import StreamingPipeline
from .context_parallel import wrap_for_context_parallel
from .group import ParallelContext

__all__ = ["parallelize_pipeline"]


def parallelize_pipeline(
    pipe: StreamingPipeline, mode: str | None, ctx: ParallelContext
) -> StreamingPipeline:
    """``pipe`` with its DiT split over the ranks of ``ctx`` (``pipe`` itself on one process).

    Only rank 0 keeps the decoder (the other ranks return latents only; every rank still runs the
    same chunk loop). The blocks are not compiled again (``compile_blocks`` compiles in place).
    """
    if mode in (None, "none") or ctx.world_size == 1:
        return pipe
    return StreamingPipeline(
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
        overlap_decode=pipe.overlap_decode,
    )
