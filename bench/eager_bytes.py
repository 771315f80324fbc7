"""Bytes an eager forward moves through memory, counted op by op on the meta device.

Every ATen op is assumed to read each tensor input once and write each output once (views cost
nothing; an in-place op reads and writes its first argument; ``index_copy_`` / ``index_put_`` only
touch the indexed rows). Summed over one DiT pass this is the unfused traffic that fusion
(torch.compile) can remove; compared with ``flops.pass_cost(...).bytes`` (the fused minimum) it
predicts the elementwise overhead of the eager path. No memory is allocated and nothing is computed.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

_FREE = {
    "view",
    "_unsafe_view",
    "reshape",
    "transpose",
    "t",
    "expand",
    "permute",
    "slice",
    "select",
    "as_strided",
    "unsqueeze",
    "squeeze",
    "split",
    "split_with_sizes",
    "unbind",
    "alias",
    "detach",
    "lift_fresh",
    "empty",
    "empty_like",
    "empty_strided",
    "new_empty",
    "_reshape_alias",
    "unflatten",
    "flatten",
    "chunk",
    "view_as_real",
    "view_as_complex",
    "_to_copy_noop",
    "zeros",
    "resolve_conj",
    "resolve_neg",
    "expand_as",
    "narrow",
}


def _nbytes(t) -> int:
    return t.numel() * t.element_size() if isinstance(t, torch.Tensor) else 0


class ByteCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.bytes_by_op: dict[str, int] = defaultdict(int)
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = func.__name__.split(".")[0]
        base = name.rstrip("_")
        if base in _FREE:
            return out
        ins = [a for a in tree_flatten((args, kwargs))[0] if isinstance(a, torch.Tensor)]
        if base in ("index_copy", "index_put", "index_add") and name.endswith("_"):
            src = ins[-1] if base == "index_copy" else ins[-1]
            b = 2 * _nbytes(src) + sum(_nbytes(a) for a in ins[1:-1])
        elif base == "copy":  # copy_(dst, src): read src, write dst (dst is not read)
            b = _nbytes(ins[0]) + _nbytes(ins[1])
        elif name.endswith("_") and ins:  # in place: read + write self, read the others
            b = 2 * _nbytes(ins[0]) + sum(_nbytes(a) for a in ins[1:])
        else:
            outs = [o for o in tree_flatten(out)[0] if isinstance(o, torch.Tensor)]
            b = sum(_nbytes(a) for a in ins) + sum(_nbytes(o) for o in outs)
        self.bytes_by_op[base] += b
        self.calls += 1
        return out

    @property
    def total(self) -> int:
        return sum(self.bytes_by_op.values())


@contextlib.contextmanager
def fused_sdpa_counted(counter: ByteCounter):
    """On the meta device SDPA decomposes into the unfused math path; a fused kernel (cuDNN / flash)
    reads q, k, v once and writes the output once. Count it that way while counting a forward."""
    original = F.scaled_dot_product_attention

    def counted(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kw):
        out = torch.empty(*q.shape[:-1], v.shape[-1], dtype=q.dtype, device=q.device)
        counter.bytes_by_op["sdpa"] += _nbytes(q) + _nbytes(k) + _nbytes(v) + _nbytes(out)
        counter.calls += 1
        return out

    F.scaled_dot_product_attention = counted
    try:
        yield
    finally:
        F.scaled_dot_product_attention = original


GEMM_OPS = (
    "sdpa",
    "mm",
    "addmm",
    "bmm",
    "baddbmm",
    "convolution",
    "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_cudnn_attention",
    "_scaled_dot_product_efficient_attention",
    "scaled_dot_product_attention",
    "_scaled_dot_product_flash_attention_for_cpu",
)


def eager_pass_bytes(
    cfg,
    height: int,
    width: int,
    frames_per_chunk: int,
    chunk_index: int,
    dtype,
    rope: str = "absolute",
    sink_frames: int = 0,
    window_frames: int | None = None,
) -> dict:
    """Bytes of one eager ``forward_chunk`` of chunk ``chunk_index`` (0-based) at real size, split into
    matrix products / attention and everything else. ``window_frames`` None: a cache of every frame so
    far (growing, never rolling: the benchmark's reference); else a rolling cache of ``sink_frames`` +
    ``window_frames`` with RoPE mode ``rope`` (an endless stream: "relative")."""
    from wan_core.dit import WanDiT

    with torch.device("meta"):
        model = WanDiT(cfg).to(dtype)
        lh, lw = (
            height // 8 if cfg.out_dim != 48 else height // 16,
            width // 8 if cfg.out_dim != 48 else width // 16,
        )
        ft = (lh // cfg.patch[1]) * (lw // cfg.patch[2])
        n = frames_per_chunk
        cross = model.prepare_context(torch.empty(1, cfg.text_len, cfg.text_dim, dtype=dtype))
        window = (chunk_index + 1) * n if window_frames is None else window_frames
        sink = 0 if window_frames is None else sink_frames
        cache = model.new_kv_cache(1, ft, window, sink, dtype=dtype, device="meta", rope=rope)
        for i in range(chunk_index):
            cache.plan_chunk(i * n, n)
        cache.plan_chunk(chunk_index * n, n)
        x = torch.empty(1, cfg.out_dim, n, lh, lw)
        t = torch.empty(1, n)
        counter = ByteCounter()
        with fused_sdpa_counted(counter), counter, torch.no_grad():
            model.forward_planned(x, t, cross, cache)
    big = sum(b for op, b in counter.bytes_by_op.items() if op in GEMM_OPS)
    return {
        "total_bytes": float(counter.total),
        "gemm_and_attention_io_bytes": float(big),
        "other_bytes": float(counter.total - big),
        "ops": counter.calls,
        "top_other": sorted(
            ((op, float(b)) for op, b in counter.bytes_by_op.items() if op not in GEMM_OPS),
            key=lambda kv: -kv[1],
        )[:12],
    }
