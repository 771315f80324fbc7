"""Context-parallel Wan DiT: the plain ``WanDiT`` run on a token shard per rank, wrapped, not rewritten.

Every rank runs the same rollout (same inputs, same sampler) and calls the same methods as on one GPU
(``prepare_context``, ``new_kv_cache``, ``forward_chunk`` / ``forward_planned``, the full ``forward``).
Inside a call:

1. patchify the whole chunk (cheap), keep this rank's slice of every frame (``FrameShard``);
2. run the model's own blocks on the shard -- modulation, norms, FFN, cross-attention (full text K/V
   on every rank) are per token and need nothing; self-attention gets a context-parallel ``attend``:
   - ``ring``: RoPE with the shard's positions, write the shard's K/V into this rank's cache (its slice
     of every cached frame), then ring attention over the cache slices of all ranks;
   - ``ulysses``: one all-to-all turns the shard of q/k/v into all tokens of ``H/N`` heads; RoPE, cache
     (this rank's heads of every cached token) and attention are then the single-GPU code; a second
     all-to-all brings the output back to the token shard;
3. the head runs on the shard, ``all_gather`` restores the full token sequence on every rank, unpatchify.

KV cache memory per rank is 1/N of the single-GPU cache in both modes (ring: ``frame_tokens / N``
tokens per frame; Ulysses: ``num_heads / N`` heads); the cache bookkeeping (``plan_chunk``, window,
sink, RoPE modes) is the DiT's ``RollingKVCache`` unchanged, built with the local geometry by
``new_kv_cache`` (see ``kv_cache_geometry``). Inference only (collectives carry no gradients).
"""

from __future__ import annotations

import torch
from torch import nn

from ..attention import attention
from ..dit.kv_cache import CrossAttnCache, RollingKVCache
from ..dit.model import DualExpertDiT, WanDiT, pass_rope
from ..dit.rope import apply_rope
from .group import ParallelContext
from .ring import ring_attention
from .shard import FrameShard, check_frame_tokens
from .ulysses import check_heads, heads_to_tokens, qkv_tokens_to_heads

__all__ = ["MODES", "ContextParallelDiT", "wrap_for_context_parallel"]

MODES = ("ulysses", "ring")


class ContextParallelDiT(nn.Module):
    """A ``WanDiT`` whose token axis is split over the ranks of ``ctx`` (same interface as ``WanDiT``)."""

    def __init__(self, model: WanDiT, ctx: ParallelContext, mode: str = "ulysses"):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"context parallel mode must be one of {MODES}, got {mode!r}")
        if not isinstance(model, WanDiT):
            raise TypeError(
                f"ContextParallelDiT wraps a WanDiT, got {type(model).__name__}; "
                "use wrap_for_context_parallel for a dual-expert model"
            )
        if mode == "ulysses":
            check_heads(model.config.num_heads, ctx.world_size)
        self.model = model
        self.ctx = ctx
        self.mode = mode

    # -- the WanDiT interface, delegated --------------------------------------------------------------
    @property
    def config(self):
        return self.model.config

    @property
    def compute_dtype(self) -> torch.dtype:
        return self.model.compute_dtype

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def attn_backend(self) -> str:
        return self.model.attn_backend

    @property
    def blocks(self) -> nn.ModuleList:  # the model's own blocks (compile_blocks compiles them in place)
        return self.model.blocks

    def prepare_context(self, context: torch.Tensor, clip_fea: torch.Tensor | None = None) -> CrossAttnCache:
        """Full text (+ image) cross-attention K/V on every rank: cross-attention stays local."""
        return self.model.prepare_context(context, clip_fea)

    def extra_repr(self) -> str:
        return f"mode={self.mode}, rank={self.ctx.rank}, world_size={self.ctx.world_size}"

    # -- geometry --------------------------------------------------------------------------------------
    def _shard(self, frame_tokens: int) -> FrameShard:
        check_frame_tokens(frame_tokens, self.ctx.world_size, self.config.patch[1:])
        return FrameShard(self.ctx, frame_tokens)

    def kv_cache_geometry(self, frame_tokens: int) -> tuple[int, int]:
        """``(frame_tokens, num_heads)`` of this rank's KV cache for frames of ``frame_tokens`` tokens:
        ring ``(frame_tokens / N, heads)``, Ulysses ``(frame_tokens, heads / N)``."""
        shard = self._shard(frame_tokens)
        heads = self.config.num_heads
        if self.mode == "ring":
            return shard.local_tokens, heads
        return frame_tokens, check_heads(heads, self.ctx.world_size)

    # this rank's share of the rolling KV cache: the plain model's constructor with our geometry
    new_kv_cache = WanDiT.new_kv_cache

    def _check_cache(self, cache: RollingKVCache, frame_tokens: int, frames: int) -> None:
        want = self.kv_cache_geometry(frame_tokens)
        have = (cache.frame_tokens, cache.num_heads)
        if have != want:
            whole = have == (frame_tokens, self.config.num_heads)
            raise ValueError(
                f"KV cache geometry (frame_tokens, heads) = {have}, but {self.mode} context parallelism "
                f"over {self.ctx.world_size} ranks needs {want} on each rank"
                + (" (this is a single-GPU cache of whole frames)" if whole else "")
                + ": create it with new_kv_cache() of the context-parallel model, or pass "
                "kv_cache_geometry(frame_tokens) as (frame_tokens, num_heads) to RollingKVCache"
            )
        if frames != cache.chunk_frames:
            raise ValueError(
                f"chunk of {frames} frames does not match the cache plan ({cache.chunk_frames} frames)"
            )

    # -- passes ------------------------------------------------------------------------------------------
    def _run(self, tokens, t, cross: CrossAttnCache, grid, attend_for_layer) -> torch.Tensor:
        """Blocks and head on this rank's shard; returns the full ``[B, C_out, F, H, W]`` on every rank."""
        m = self.model
        b, L, _ = tokens.shape
        f, h, w = grid
        if cross.batch != b:
            raise ValueError(f"cross-attention cache has batch {cross.batch}, the input {b}")
        shard = self._shard(h * w)
        t_groups = m.time_groups(t, b, f, L)  # [B, G], G in {1, f, L}
        if t_groups.shape[1] == L:  # per-token timesteps follow the tokens
            t_groups = shard.take(t_groups[..., None], f)[..., 0]
        x = shard.take(tokens, f)  # [B, f * ft_local, dim] float32
        cd = m.compute_dtype
        e, e0 = m.time_embed(t_groups)
        for i, blk in enumerate(m.blocks):
            x = blk(x, e0, cross.layer(i), attend_for_layer(i), m.attn_backend, cd)
        out = shard.gather(m.head(x, e, cd), f)  # [B, L, p * C_out]
        return m.unpatchify(out, grid)

    @torch.no_grad()
    def forward(
        self,
        x: torch.Tensor,  # [B, C, F, H, W]
        t: torch.Tensor,  # [B] | [B, F] | [B, L]
        context: torch.Tensor | CrossAttnCache,
        clip_fea: torch.Tensor | None = None,
        y: torch.Tensor | None = None,
    ) -> torch.Tensor:  # [B, out_dim, F, H, W] float32, the same on every rank
        """Full bidirectional pass (= ``WanDiT.forward``) with the tokens split over the ranks."""
        m = self.model
        cross = context if isinstance(context, CrossAttnCache) else m.prepare_context(context, clip_fea)
        tokens, grid = m.embed_video(x, y)
        f, h, w = grid
        cos, sin = m.rope.for_grid(f, h, w, tokens.device)  # [1, L, 1, hd/2]
        ctx, backend = self.ctx, m.attn_backend
        if self.mode == "ring":
            shard = self._shard(h * w)
            cos_l, sin_l = shard.take(cos, f), shard.take(sin, f)

            def attend(_i):
                return lambda q, k, v: ring_attention(
                    apply_rope(q, cos_l, sin_l), apply_rope(k, cos_l, sin_l), v, ctx
                )
        else:

            def attend(_i):
                def fn(q, k, v):
                    q, k, v = qkv_tokens_to_heads(q, k, v, ctx, f)
                    out = attention(apply_rope(q, cos, sin), apply_rope(k, cos, sin), v, backend)
                    return heads_to_tokens(out, ctx, f)

                return fn

        return self._run(tokens, t, cross, grid, attend)

    def forward_chunk(
        self,
        x_chunk: torch.Tensor,  # [B, C, n, H, W]
        t_chunk: torch.Tensor,  # [B] | [B, n] | [B, n * frame_tokens]
        cross: CrossAttnCache,
        cache: RollingKVCache,  # this rank's share (new_kv_cache)
        frame_start: int,
        y: torch.Tensor | None = None,
    ) -> torch.Tensor:  # [B, out_dim, n, H, W] float32, the same on every rank
        """One AR step (= ``WanDiT.forward_chunk``): plan the cache on the host, then ``forward_planned``."""
        cache.plan_chunk(frame_start, x_chunk.shape[2] // self.config.patch[0])
        return self.forward_planned(x_chunk, t_chunk, cross, cache, y)

    @torch.no_grad()
    def forward_planned(
        self,
        x_chunk: torch.Tensor,
        t_chunk: torch.Tensor,
        cross: CrossAttnCache,
        cache: RollingKVCache,
        y: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """After ``cache.plan_chunk``: reads only the cache's device buffers and Python ints."""
        m = self.model
        tokens, grid = m.embed_video(x_chunk, y)
        n, h, w = grid
        self._check_cache(cache, h * w, n)
        # once per pass (see WanDiT.forward_planned): queries, keys as written, relative-RoPE sinks
        rope = pass_rope(m.rope, cache, n, h, w)  # each [1, frames * ft, 1, hd/2]
        cos_q, sin_q, cos_k, sin_k = rope.cos_q, rope.sin_q, rope.cos_k, rope.sin_k
        cos_s, sin_s = rope.cos_sink, rope.sin_sink
        ctx, backend = self.ctx, m.attn_backend
        if self.mode == "ring":  # this rank's slice of every frame: queries, keys and sinks alike
            shard = self._shard(h * w)
            cos_q, sin_q, cos_k, sin_k = (shard.take(c, n) for c in (cos_q, sin_q, cos_k, sin_k))
            if cos_s is not None:
                sinks = cache.sink_positions().shape[0]
                cos_s, sin_s = shard.take(cos_s, sinks), shard.take(sin_s, sinks)

            def attend(i):
                layer = cache.layer(i, n)  # per-layer tensors, no layer index, reach the block (LayerKV)

                def fn(q, k, v):  # [B, n * ft_local, H, hd]
                    q = apply_rope(q, cos_q, sin_q)
                    layer.write(apply_rope(k, cos_k, sin_k), v)
                    if cos_s is not None:
                        layer.rope_sinks(cos_s, sin_s)
                    kk, vv = layer.visible()  # this rank's slice of every visible frame
                    return ring_attention(q, kk, vv, ctx)

                return fn
        else:

            def attend(i):
                layer = cache.layer(i, n)  # per-layer tensors, no layer index, reach the block (LayerKV)

                def fn(q, k, v):
                    q, k, v = qkv_tokens_to_heads(q, k, v, ctx, n)  # [B, n * ft, H/N, hd]
                    q = apply_rope(q, cos_q, sin_q)
                    layer.write(apply_rope(k, cos_k, sin_k), v)
                    if cos_s is not None:
                        layer.rope_sinks(cos_s, sin_s)
                    kk, vv = layer.visible()  # every visible token, this rank's heads
                    out = attention(q, kk.to(q.dtype), vv.to(q.dtype), backend)
                    return heads_to_tokens(out, ctx, n)

                return fn

        return self._run(tokens, t_chunk, cross, grid, attend)


def wrap_for_context_parallel(model, mode: str, ctx: ParallelContext):
    """``model`` split over the ranks of ``ctx``: a ``ContextParallelDiT`` (a ``DualExpertDiT`` of two for
    Wan2.2 A14B); the model itself when ``ctx.world_size == 1`` or ``mode`` is None / "none"."""
    if mode in (None, "none") or ctx.world_size == 1:
        return model
    if isinstance(model, DualExpertDiT):
        high, low = model.experts()
        return DualExpertDiT(
            ContextParallelDiT(high, ctx, mode), ContextParallelDiT(low, ctx, mode), model.boundary
        )
    return ContextParallelDiT(model, ctx, mode)
