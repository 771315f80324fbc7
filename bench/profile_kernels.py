"""Where the DiT time goes: one rollout under ``torch.profiler``, device time summed per kernel class.

On CUDA the device kernels are classified (attention / GEMM / Triton-fused / copies / other elementwise)
by name; on CPU the ATen ops' self time is used the same way. The profiled rollout is separate from the
timed ones (the profiler adds overhead), DiT only (no decoders).
"""

from __future__ import annotations

import re

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from bench.rollout_timing import run_rollout

# first match wins
CLASSES = (
    ("attention", re.compile(r"flash|fmha|cudnn.*(attn|sdpa)|attention|sdpa|sage|mha", re.I)),
    (
        "gemm",
        re.compile(
            r"gemm|cutlass|xmma|nvjet|cublas|scaled_mm|aten::(mm|addmm|bmm|baddbmm)$|convolution|implicit_gemm",
            re.I,
        ),
    ),
    ("triton (compiled)", re.compile(r"triton", re.I)),
    (
        "copy / layout",
        re.compile(r"copy|memcpy|memset|index|cat|aten::(clone|contiguous|_to_copy|stack)$", re.I),
    ),
)
# CPU-side wrappers whose self time is not work (their children are counted)
_CPU_SKIP = re.compile(
    r"^aten::(linear|matmul|scaled_dot_product_attention|to|t|transpose|view|reshape|"
    r"as_strided|empty.*|unsqueeze|expand|flatten|unflatten|select|slice|permute|"
    r"resolve_conj|resolve_neg|detach|alias|split|unbind|chunk)$"
)


def classify(name: str) -> str:
    for label, pat in CLASSES:
        if pat.search(name):
            return label
    return "elementwise / other"


def profile_rollout(stepper, num_chunks: int, device, top: int = 15) -> dict:
    cuda = torch.device(device).type == "cuda"
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=acts) as prof:
        run_rollout(stepper, {}, num_chunks, device)
    rows = []
    for ev in prof.key_averages():
        if cuda:  # device-side events only (kernels, memcpy, memset); CPU ops carry no self device time
            if getattr(ev, "device_type", None) != DeviceType.CUDA:
                continue
            us = getattr(ev, "self_device_time_total", 0) or getattr(ev, "self_cuda_time_total", 0)
            if us <= 0:
                continue
        else:
            us = ev.self_cpu_time_total
            if not ev.key.startswith("aten::") or _CPU_SKIP.match(ev.key) or us <= 0:
                continue
        rows.append((ev.key, us / 1e3, ev.count))
    by_class: dict[str, float] = {}
    for name, ms, _ in rows:
        by_class[classify(name)] = by_class.get(classify(name), 0.0) + ms
    rows.sort(key=lambda r: -r[1])
    return {
        "source": "cuda kernels (device time)" if cuda else "cpu aten ops (self time)",
        "total_ms": sum(r[1] for r in rows),
        "by_class_ms": dict(sorted(by_class.items(), key=lambda kv: -kv[1])),
        "launches": sum(r[2] for r in rows),
        "top": [{"name": n[:160], "ms": ms, "count": c, "class": classify(n)} for n, ms, c in rows[:top]],
    }
