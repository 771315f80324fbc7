"""The Wan 2.1 / 2.2 DiT (every size and variant), with a full pass and a streaming chunk pass.

Parameter names equal the official ``WanModel`` state dict, so official checkpoints load 1:1.
Precision follows the official code: time embedding, modulation, LayerNorms, RMSNorms, RoPE and the
residual stream run in float32; Linear layers and attention run in the weights' dtype (the dtype of
``patch_embedding.weight``; fp8 Linears dequantize into it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..attention import attention
from .config import WanDiTConfig
from .kv_cache import CrossAttnCache, RollingKVCache
from .rope import WanRope, apply_rope

__all__ = ["WanDiT", "DualExpertDiT", "dit_experts", "sinusoidal_embedding", "PassRope", "pass_rope"]


def sinusoidal_embedding(dim: int, t: torch.Tensor) -> torch.Tensor:  # t [N] -> [N, dim] float32
    """``[cos(t w_i), sin(t w_i)]``, w_i = 10000^(-i/(dim/2)), computed in float64 (official)."""
    half = dim // 2
    t = t.to(torch.float64)
    freqs = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=t.device) / half)
    angles = torch.outer(t, freqs)
    return torch.cat([angles.cos(), angles.sin()], dim=1).float()


@dataclass
class PassRope:
    """cos/sin of one streaming pass, each ``[1, tokens, 1, head_dim/2]`` float32, computed once per pass
    and shared by every layer: queries (``n`` frames), the keys as written (the same, with the identity
    rotation for frames stored un-roped) and the sinks (relative RoPE with sinks, else None)."""

    cos_q: torch.Tensor
    sin_q: torch.Tensor
    cos_k: torch.Tensor
    sin_k: torch.Tensor
    cos_sink: torch.Tensor | None = None
    sin_sink: torch.Tensor | None = None


def pass_rope(rope: WanRope, cache, n: int, h: int, w: int) -> PassRope:
    """The RoPE tables of a planned pass of ``n`` frames of ``h x w`` tokens from the cache's device
    buffers (see the cache interface in ``kv_cache.py``): absolute mode from the 1024-row table, relative
    mode at unbounded positions (``WanRope.for_positions``)."""
    if cache.rope != "relative":
        cos, sin = rope.for_frames(cache.chunk_positions(n), h, w)
        return PassRope(cos, sin, cos, sin)
    cos_q, sin_q = rope.for_positions(cache.chunk_positions(n), h, w)
    unroped = cache.chunk_unroped(n)[:, None].expand(n, h * w).reshape(1, n * h * w, 1, 1)
    cos_k, sin_k = cos_q.masked_fill(unroped, 1.0), sin_q.masked_fill(unroped, 0.0)
    sinks = cache.sink_positions()
    if sinks.shape[0] == 0:
        return PassRope(cos_q, sin_q, cos_k, sin_k)
    return PassRope(cos_q, sin_q, cos_k, sin_k, *rope.for_positions(sinks, h, w))


class RMSNorm(nn.Module):
    """RMSNorm over the full width (before the head split), computed in float32."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return xf.to(x.dtype) * self.weight.to(x.dtype)


class LayerNormF32(nn.Module):
    """LayerNorm computed in float32 (returns float32), optionally with affine weight/bias."""

    def __init__(self, dim: int, eps: float, affine: bool = False):
        super().__init__()
        self.dim, self.eps = dim, eps
        self.weight = nn.Parameter(torch.ones(dim)) if affine else None
        self.bias = nn.Parameter(torch.zeros(dim)) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.float() if self.weight is not None else None
        b = self.bias.float() if self.bias is not None else None
        return F.layer_norm(x.float(), (self.dim,), w, b, self.eps)


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``x * (1 + scale) + shift`` as one ``addcmul`` (one pass over x eagerly; same math, fused
    multiply-add rounding). x ``[B, L, dim]``; shift/scale ``[B, G, dim]`` with G dividing L (per batch /
    frame / token)."""
    b, L, d = x.shape
    g = shift.shape[1]
    return torch.addcmul(shift[:, :, None], x.view(b, g, L // g, d), 1 + scale[:, :, None]).view(b, L, d)


def _add_gated(x: torch.Tensor, y: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """Gated residual ``x + y * gate`` as one ``addcmul``: x ``[B, L, dim]`` float32, y ``[B, L, dim]`` in
    any float dtype (promoted to float32 element-wise: no float32 copy of y), gate ``[B, G, dim]``."""
    b, L, d = x.shape
    g = gate.shape[1]
    return torch.addcmul(x.view(b, g, L // g, d), y.view(b, g, L // g, d), gate[:, :, None]).view(b, L, d)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, eps: float):
        super().__init__()
        self.num_heads = num_heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q = RMSNorm(dim, eps)
        self.norm_k = RMSNorm(dim, eps)

    def qkv(self, x: torch.Tensor):  # x [B, L, dim] -> 3 x [B, L, heads, head_dim]
        b, L, _ = x.shape
        q = self.norm_q(self.q(x)).view(b, L, self.num_heads, -1)
        k = self.norm_k(self.k(x)).view(b, L, self.num_heads, -1)
        v = self.v(x).view(b, L, self.num_heads, -1)
        return q, k, v


class CrossAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, eps: float, image: bool):
        super().__init__()
        self.num_heads = num_heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q = RMSNorm(dim, eps)
        self.norm_k = RMSNorm(dim, eps)
        if image:
            self.k_img = nn.Linear(dim, dim)
            self.v_img = nn.Linear(dim, dim)
            self.norm_k_img = RMSNorm(dim, eps)

    def text_kv(self, ctx: torch.Tensor):  # ctx [B, Lt, dim] -> 2 x [B, Lt, heads, head_dim]
        b, L, _ = ctx.shape
        return self.norm_k(self.k(ctx)).view(b, L, self.num_heads, -1), self.v(ctx).view(
            b, L, self.num_heads, -1
        )

    def image_kv(self, img: torch.Tensor):  # img [B, Li, dim] -> 2 x [B, Li, heads, head_dim]
        b, L, _ = img.shape
        k = self.norm_k_img(self.k_img(img)).view(b, L, self.num_heads, -1)
        return k, self.v_img(img).view(b, L, self.num_heads, -1)

    def forward(self, x: torch.Tensor, kv, backend: str) -> torch.Tensor:  # x [B, L, dim]
        b, L, _ = x.shape
        tk, tv, ik, iv = kv
        q = self.norm_q(self.q(x)).view(b, L, self.num_heads, -1)
        out = attention(q, tk, tv, backend)
        if ik is not None:
            out = out + attention(q, ik, iv, backend)
        return self.o(out.flatten(2))


class WanBlock(nn.Module):
    def __init__(self, cfg: WanDiTConfig):
        super().__init__()
        d = cfg.dim
        self.norm1 = LayerNormF32(d, cfg.eps)
        self.self_attn = SelfAttention(d, cfg.num_heads, cfg.eps)
        self.norm3 = LayerNormF32(d, cfg.eps, affine=True)
        self.cross_attn = CrossAttention(d, cfg.num_heads, cfg.eps, cfg.image_cross_attn)
        self.norm2 = LayerNormF32(d, cfg.eps)
        self.ffn = nn.Sequential(
            nn.Linear(d, cfg.ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(cfg.ffn_dim, d)
        )
        self.modulation = nn.Parameter(torch.zeros(1, 6, d))

    def forward(
        self,
        x: torch.Tensor,  # [B, L, dim] float32 residual stream
        e0: torch.Tensor,  # [B, G, 6, dim] float32
        cross_kv,
        self_attend,  # (q, k, v) [B, L, heads, head_dim] -> [B, L, heads, head_dim]
        backend: str,
        cdtype: torch.dtype,
    ) -> torch.Tensor:
        mod = self.modulation.float()[:, None] + e0  # [B, G, 6, dim]
        shift_sa, scale_sa, gate_sa, shift_ff, scale_ff, gate_ff = mod.unbind(2)
        h = _modulate(self.norm1(x), shift_sa, scale_sa).to(cdtype)
        q, k, v = self.self_attn.qkv(h)
        y = self.self_attn.o(self_attend(q, k, v).flatten(2))
        x = _add_gated(x, y, gate_sa)
        x = x + self.cross_attn(self.norm3(x).to(cdtype), cross_kv, backend)  # float32 + cdtype -> float32
        h = _modulate(self.norm2(x), shift_ff, scale_ff).to(cdtype)
        return _add_gated(x, self.ffn(h), gate_ff)


class Head(nn.Module):
    def __init__(self, cfg: WanDiTConfig):
        super().__init__()
        self.norm = LayerNormF32(cfg.dim, cfg.eps)
        self.head = nn.Linear(cfg.dim, math.prod(cfg.patch) * cfg.out_dim)
        self.modulation = nn.Parameter(torch.zeros(1, 2, cfg.dim))

    def forward(self, x: torch.Tensor, e: torch.Tensor, cdtype) -> torch.Tensor:  # e [B, G, dim]
        shift, scale = (self.modulation.float()[:, None] + e[:, :, None]).unbind(2)
        return self.head(_modulate(self.norm(x), shift, scale).to(cdtype)).float()


class ImageEmbedding(nn.Module):
    """CLIP ViT-H penultimate tokens ``[B, 257 (x2 for FLF2V), 1280]`` -> ``[B, Li, dim]``."""

    def __init__(self, cfg: WanDiTConfig):
        super().__init__()
        c = cfg.clip_dim
        self.proj = nn.Sequential(
            nn.LayerNorm(c), nn.Linear(c, c), nn.GELU(), nn.Linear(c, cfg.dim), nn.LayerNorm(cfg.dim)
        )
        if cfg.model_type == "flf2v":
            self.emb_pos = nn.Parameter(torch.zeros(1, 2 * cfg.clip_tokens, c))
        else:
            self.emb_pos = None

    def forward(self, clip_fea: torch.Tensor, batch: int) -> torch.Tensor:
        if self.emb_pos is not None:  # FLF2V: the two images' tokens side by side
            clip_fea = clip_fea.reshape(batch, -1, clip_fea.shape[-1])
            if clip_fea.shape[1] != self.emb_pos.shape[1]:
                raise ValueError(
                    f"FLF2V needs CLIP tokens of 2 images ({self.emb_pos.shape[1]} per sample), "
                    f"got {clip_fea.shape[1]}"
                )
            clip_fea = clip_fea + self.emb_pos.to(clip_fea.dtype)
        return self.proj(clip_fea)


class WanDiT(nn.Module):
    """One network for every Wan DiT; see ``WanDiTConfig``. Output: the flow prediction v (float32)."""

    def __init__(self, cfg: WanDiTConfig, attn_backend: str = "sdpa"):
        super().__init__()
        self.config = cfg
        self.attn_backend = attn_backend
        d = cfg.dim
        self.patch_embedding = nn.Conv3d(cfg.in_dim, d, kernel_size=cfg.patch, stride=cfg.patch)
        self.text_embedding = nn.Sequential(
            nn.Linear(cfg.text_dim, d), nn.GELU(approximate="tanh"), nn.Linear(d, d)
        )
        self.time_embedding = nn.Sequential(nn.Linear(cfg.freq_dim, d), nn.SiLU(), nn.Linear(d, d))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))
        self.blocks = nn.ModuleList(WanBlock(cfg) for _ in range(cfg.num_layers))
        self.head = Head(cfg)
        self.img_emb = ImageEmbedding(cfg) if cfg.image_cross_attn else None
        self.rope = WanRope(cfg.head_dim, cfg.rope_max_positions, cfg.rope_theta)

    @property
    def compute_dtype(self) -> torch.dtype:
        return self.patch_embedding.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.patch_embedding.weight.device

    # -- embeddings ---------------------------------------------------------------------------------
    def time_groups(self, t: torch.Tensor, batch: int, frames: int, tokens: int) -> torch.Tensor:
        """t ``[B]`` | ``[B, F]`` | ``[B, L]`` -> ``[B, G]`` with G in {1, F, L}."""
        t = torch.as_tensor(t, device=self.device)
        if t.dim() == 0:
            t = t.expand(batch)
        if t.dim() == 1:
            t = t[:, None]
        if t.dim() != 2 or t.shape[1] not in (1, frames, tokens):
            raise ValueError(
                f"timestep of shape {tuple(t.shape)}: expected [B], [B, frames={frames}] or [B, tokens={tokens}]"
            )
        if t.shape[0] != batch:
            t = t.expand(batch, -1)
        return t

    def time_embed(self, t: torch.Tensor):  # t [B, G] -> e [B, G, dim], e0 [B, G, 6, dim] (float32)
        cd = self.compute_dtype
        b, g = t.shape
        sin = sinusoidal_embedding(self.config.freq_dim, t.reshape(-1))
        e = self.time_embedding(sin.to(cd)).float()
        e0 = self.time_projection(e.to(cd)).float()
        return e.view(b, g, -1), e0.view(b, g, 6, -1)

    def prepare_context(
        self,
        context: torch.Tensor,  # [B, L <= text_len, text_dim] umT5 features (zero-padded to text_len here)
        clip_fea: torch.Tensor | None = None,  # [B, 257, clip_dim]
    ) -> CrossAttnCache:
        """Cross-attention K/V of every layer, computed once per prompt (and image).

        ``clip_fea``: CLIP ViT-H penultimate tokens (Wan2.1 I2V); FLF2V takes both images as
        ``[B, 514, clip_dim]`` or ``[2B, 257, clip_dim]``."""
        cfg, cd = self.config, self.compute_dtype
        if context.dim() == 2:
            context = context[None]
        b, L, _ = context.shape
        if L < cfg.text_len:
            context = torch.cat([context, context.new_zeros(b, cfg.text_len - L, context.shape[2])], 1)
        ctx = self.text_embedding(context.to(device=self.device, dtype=cd))  # [B, Lt, dim]
        img = None
        if cfg.image_cross_attn:
            if clip_fea is None:
                raise ValueError(f"this {cfg.model_type} DiT needs CLIP image features (clip_fea)")
            img = self.img_emb(clip_fea.to(device=self.device, dtype=cd), b)  # [B, Li, dim]
        tk, tv, ik, iv = [], [], [], []
        for blk in self.blocks:
            k, v = blk.cross_attn.text_kv(ctx)
            tk.append(k)
            tv.append(v)
            if img is not None:
                k, v = blk.cross_attn.image_kv(img)
                ik.append(k)
                iv.append(v)
        return CrossAttnCache(tk, tv, ik if img is not None else None, iv if img is not None else None)

    def embed_video(self, x: torch.Tensor, y: torch.Tensor | None):
        """x ``[B, C, F, H, W]`` (+ y) -> tokens ``[B, L, dim]`` float32 and the token grid (f, h, w)."""
        cfg = self.config
        if cfg.cond_dim:
            if y is None:
                raise ValueError(
                    f"this {cfg.model_type} DiT (in_dim {cfg.in_dim}) needs the conditioning latent y"
                )
            x = torch.cat([x, y.to(x.dtype)], dim=1)
        if x.shape[1] != cfg.in_dim:
            raise ValueError(f"input has {x.shape[1]} channels, this DiT takes {cfg.in_dim}")
        tok = self.patch_embedding(x.to(device=self.device, dtype=self.compute_dtype))  # [B, dim, f, h, w]
        grid = tuple(tok.shape[2:])
        # one copy into a contiguous float32 [B, L, dim]: the transposed view kept its layout through the
        # residual adds of every block (strided LayerNorms / elementwise ops, an extra compiled graph)
        return tok.flatten(2).transpose(1, 2).to(
            torch.float32, copy=True, memory_format=torch.contiguous_format
        ), grid

    def unpatchify(self, x: torch.Tensor, grid) -> torch.Tensor:  # [B, L, p*C] -> [B, C, F, H, W]
        """Head output tokens back to a latent video; ``grid`` = (f, h, w) from ``embed_video``."""
        b = x.shape[0]
        f, h, w = grid
        pt, ph, pw = self.config.patch
        c = self.config.out_dim
        x = x.view(b, f, h, w, pt, ph, pw, c).permute(0, 7, 1, 4, 2, 5, 3, 6)
        return x.reshape(b, c, f * pt, h * ph, w * pw)

    def _run(self, x, t_groups, cross: CrossAttnCache, attend_for_layer, grid) -> torch.Tensor:
        if cross.batch != x.shape[0]:
            raise ValueError(f"cross-attention cache has batch {cross.batch}, the input {x.shape[0]}")
        cd, backend = self.compute_dtype, self.attn_backend
        e, e0 = self.time_embed(t_groups)
        for i, blk in enumerate(self.blocks):
            x = blk(x, e0, cross.layer(i), attend_for_layer(i), backend, cd)
        return self.unpatchify(self.head(x, e, cd), grid)

    # -- full bidirectional pass (= official WanModel) ----------------------------------------------
    def forward(
        self,
        x: torch.Tensor,  # [B, C, F, H, W] noisy latents (normalized)
        t: torch.Tensor,  # [B] | [B, F] | [B, L] timesteps in [0, 1000]
        context: torch.Tensor | CrossAttnCache,  # [B, L<=512, 4096] or a prepared CrossAttnCache
        clip_fea: torch.Tensor | None = None,
        y: torch.Tensor | None = None,  # [B, in_dim - out_dim, F, H, W] for i2v / flf2v
    ) -> torch.Tensor:  # [B, out_dim, F, H, W] float32
        """Full bidirectional pass over all frames; equals the official ``WanModel``."""
        cross = context if isinstance(context, CrossAttnCache) else self.prepare_context(context, clip_fea)
        tokens, grid = self.embed_video(x, y)
        b, L, _ = tokens.shape
        cos, sin = self.rope.for_grid(*grid, tokens.device)
        backend = self.attn_backend

        def attend(_i):
            return lambda q, k, v: attention(apply_rope(q, cos, sin), apply_rope(k, cos, sin), v, backend)

        t_groups = self.time_groups(t, b, grid[0], L)
        return self._run(tokens, t_groups, cross, attend, grid)

    # -- streaming chunk pass ------------------------------------------------------------------------
    def kv_cache_geometry(self, frame_tokens: int) -> tuple[int, int]:
        """``(tokens per frame, heads)`` this model keeps in its KV cache for frames of ``frame_tokens``
        tokens: all of them here; a context-parallel wrapper keeps its rank's share."""
        return frame_tokens, self.config.num_heads

    def new_kv_cache(
        self,
        batch: int,
        frame_tokens: int,
        window_frames: int,
        sink_frames: int = 0,
        dtype: torch.dtype | None = None,
        device: str | torch.device | None = None,
        rope: str = "absolute",
    ) -> RollingKVCache:
        """Preallocated self-attention cache; ``frame_tokens`` = (H/2)*(W/2) tokens per latent frame."""
        cfg = self.config
        cache_tokens, cache_heads = self.kv_cache_geometry(frame_tokens)
        return RollingKVCache(
            cfg.num_layers,
            batch,
            cache_tokens,
            cache_heads,
            cfg.head_dim,
            window_frames,
            sink_frames,
            dtype=dtype or self.compute_dtype,
            device=device if device is not None else self.device,
            rope=rope,
            max_positions=cfg.rope_max_positions,
        )

    def forward_chunk(
        self,
        x_chunk: torch.Tensor,  # [B, C, n, H, W]
        t_chunk: torch.Tensor,  # [B] | [B, n] | [B, n*frame_tokens]
        cross: CrossAttnCache,
        cache: RollingKVCache,
        frame_start: int,  # absolute latent frame index of x_chunk[:, :, 0]
        y: torch.Tensor | None = None,  # [B, in_dim - out_dim, n, H, W] for i2v / flf2v
    ) -> torch.Tensor:  # [B, out_dim, n, H, W] float32
        """One AR step: plans the cache slots on the host, then runs ``forward_planned``."""
        cache.plan_chunk(frame_start, x_chunk.shape[2] // self.config.patch[0])
        return self.forward_planned(x_chunk, t_chunk, cross, cache, y)

    def forward_planned(
        self,
        x_chunk: torch.Tensor,
        t_chunk: torch.Tensor,
        cross: CrossAttnCache,
        cache: RollingKVCache,
        y: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The capture-friendly part of ``forward_chunk`` (after ``cache.plan_chunk`` / ``plan_span``):
        reads only device buffers of the cache and its Python ints ``kv_tokens`` (static once the cache
        is full). ``cache``: any object with the interface documented in ``wan_core/dit/kv_cache.py``."""
        tokens, grid = self.embed_video(x_chunk, y)
        b, L, _ = tokens.shape
        n, h, w = grid
        if h * w != cache.frame_tokens or n != cache.chunk_frames:
            raise ValueError(
                f"chunk grid {grid} does not match the cache plan ({cache.chunk_frames} frames x "
                f"{cache.frame_tokens} tokens)"
            )
        # once per pass: relative RoPE ropes each key once when written (sinks: per pass, see kv_cache.py)
        rope = pass_rope(self.rope, cache, n, h, w)
        cos_q, sin_q, cos_k, sin_k, cos_s, sin_s = (
            rope.cos_q,
            rope.sin_q,
            rope.cos_k,
            rope.sin_k,
            rope.cos_sink,
            rope.sin_sink,
        )
        backend = self.attn_backend

        def attend(i):
            # per-layer tensors, not the layer index, reach the (possibly compiled) block: see LayerKV
            layer = cache.layer(i, n)

            def fn(q, k, v):
                q = apply_rope(q, cos_q, sin_q)
                layer.write(apply_rope(k, cos_k, sin_k), v)
                if cos_s is not None:
                    layer.rope_sinks(cos_s, sin_s)
                kk, vv = layer.visible()
                return attention(q, kk.to(q.dtype), vv.to(q.dtype), backend)

            return fn

        t_groups = self.time_groups(t_chunk, b, n, L)
        return self._run(tokens, t_groups, cross, attend, grid)


class DualExpertDiT(nn.Module):
    """Wan2.2 A14B: a high-noise and a low-noise expert; t >= boundary*1000 -> high-noise expert.

    ``select`` takes a host float (the scheduler's timestep), so picking an expert never syncs.
    Each expert needs its own ``prepare_context`` (different weights) and its own KV cache.
    """

    def __init__(self, high_noise_model: WanDiT, low_noise_model: WanDiT, boundary: float):
        super().__init__()
        if high_noise_model.config != low_noise_model.config:
            raise ValueError("the two A14B experts have different configs")
        self.high_noise_model = high_noise_model
        self.low_noise_model = low_noise_model
        self.boundary = float(boundary)

    @property
    def config(self) -> WanDiTConfig:
        return self.high_noise_model.config

    def select(self, timestep: float) -> WanDiT:
        return self.high_noise_model if float(timestep) >= self.boundary * 1000.0 else self.low_noise_model

    def experts(self) -> tuple[WanDiT, WanDiT]:
        return self.high_noise_model, self.low_noise_model


def dit_experts(model: nn.Module) -> tuple[nn.Module, ...]:
    """The ``WanDiT``s of a model: both experts of a ``DualExpertDiT``, else the model itself."""
    return tuple(model.experts()) if hasattr(model, "experts") else (model,)
