#!/usr/bin/env python
"""FP8 linear layers at the DiT's shapes: is the FP8 lever worth it, and is its error acceptable?

    python bench/fp8_linear.py --model 1.3b --json $OUT/fp8.json        # GPU (H100: e4m3 tensor cores)
    python bench/fp8_linear.py --tiny --device cpu                      # CPU smoke (_scaled_mm on CPU: torch >= 2.10)

For each linear shape of one block at the chunk size (tokens = 3 latent frames), times:
- ``bf16``: ``F.linear`` in bf16 (what the model does today);
- ``fp8_weight_dequant``: ``wan_core.quant.ScaledFP8Linear`` (fp8 storage, dequantised to bf16 per call);
- ``fp8_rowwise``: ``torch._scaled_mm`` on e4m3 with per-token activation scales and per-channel
  weight scales, the activation quantised on every call (eager: amax, divide, cast) -- CUDA only;
- ``fp8_rowwise_gemm_only``: the same GEMM with the activation already quantised (what fusing the
  quantisation into the producer op would reach) -- CUDA only;
- ``fp8_linear_module``: the product's ``wan_core.fp8_linear.FP8Linear`` (what ``--fp8-linear`` /
  precision ``fp8_fast`` run), eager, wherever ``check_fp8_support`` passes (CPU too);
- ``fp8_linear_module_compiled``: the same module under ``torch.compile`` (the pipeline compiles the
  blocks on CUDA: quantisation and bias fused around the GEMM) -- CUDA only; ``..._fast_accum``: the
  same with ``use_fast_accum`` (faster on Hopper, less exact accumulation; off in the product).
Error: ``||y - y_fp32|| / ||y_fp32||`` against an fp32 product of the same (bf16-rounded) operands; the
yardstick is the bf16 path's own error (issue: FP8 is acceptable where its error stays within the
bf16-vs-fp32 error of the plain path -- per layer this is the honest comparison, end to end is for the
rollout benchmark). Block / pass totals multiply by the layer counts of one block and by the layers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bench.flops import SHAPES, DiTShape  # noqa: E402
from bench.timing import median_ms  # noqa: E402
from wan_core.fp8_linear import E4M3_MAX, quantize_rows  # noqa: E402  (the product's quantisation)


def block_linears(shape: DiTShape) -> list[tuple[str, int, int, int]]:
    """(name, in, out, how many per block) of one Wan block's linears on the video tokens."""
    d, f = shape.dim, shape.ffn_dim
    return [("qkvo+cross_qo (d->d)", d, d, 6), ("ffn up (d->ffn)", d, f, 1), ("ffn down (ffn->d)", f, d, 1)]


def rel_err(y: torch.Tensor, ref: torch.Tensor) -> float:
    return float((y.float() - ref).norm() / ref.norm().clamp_min(1e-30))


def bench_shape(tokens: int, n_in: int, n_out: int, device, iters: int) -> dict:
    gen = torch.Generator(device="cpu").manual_seed(n_in * 7 + n_out)
    x = torch.randn(tokens, n_in, generator=gen).to(device, torch.bfloat16)
    w = (torch.randn(n_out, n_in, generator=gen) / n_in**0.5).to(device, torch.bfloat16)
    b = (0.02 * torch.randn(n_out, generator=gen)).to(device, torch.bfloat16)
    ref = F.linear(x.float(), w.float(), b.float())
    flops = 2 * tokens * n_in * n_out
    out: dict = {"tokens": tokens, "in": n_in, "out": n_out, "gflop": flops / 1e9, "variants": {}}

    def record(name, fn):
        y = fn()
        ms = median_ms(fn, device, warmup=3, iters=iters)
        out["variants"][name] = {
            "ms": ms,
            "tflops": flops / (ms * 1e-3) / 1e12,
            "rel_err_vs_fp32": rel_err(y, ref),
        }

    record("bf16", lambda: F.linear(x, w, b))

    from wan_core.quant import ScaledFP8Linear

    lin = ScaledFP8Linear(n_in, n_out, device=device)
    w_scale = w.float().abs().amax() / E4M3_MAX
    with torch.no_grad():
        lin.weight.copy_((w.float() / w_scale).to(torch.float8_e4m3fn))
        lin.weight_scale.fill_(float(w_scale))
        lin.bias.copy_(b.float())
    record("fp8_weight_dequant", lambda: lin(x))

    from wan_core.fp8_linear import FP8Linear, check_fp8_support

    try:
        mode = check_fp8_support(device)
    except ValueError as e:
        out["variants"]["fp8_linear_module"] = {"error": str(e)[:200]}
    else:
        dense = torch.nn.Linear(n_in, n_out, device="meta")
        dense.weight, dense.bias = torch.nn.Parameter(w), torch.nn.Parameter(b)
        module = FP8Linear.from_linear(dense.requires_grad_(False), mode=mode)
        with torch.no_grad():
            record("fp8_linear_module", lambda: module(x))
            if torch.device(device).type == "cuda":
                compiled = torch.compile(module, fullgraph=True)
                record("fp8_linear_module_compiled", lambda: compiled(x))
                fast = FP8Linear.from_linear(dense, mode=mode, fast_accum=True)
                compiled_fast = torch.compile(fast, fullgraph=True)
                record("fp8_linear_module_compiled_fast_accum", lambda: compiled_fast(x))

    if torch.device(device).type == "cuda" and hasattr(torch, "_scaled_mm"):
        wq, ws = quantize_rows(w)  # per output channel: [N, K], [N, 1]
        wq_t, ws_t = wq.t(), ws.t()  # column-major [K, N], [1, N]

        def fp8_bias_in_gemm(xq, xs):
            return torch._scaled_mm(xq, wq_t, scale_a=xs, scale_b=ws_t, bias=b, out_dtype=torch.bfloat16)

        def fp8_bias_after(xq, xs):
            return torch._scaled_mm(xq, wq_t, scale_a=xs, scale_b=ws_t, out_dtype=torch.bfloat16) + b

        # decided once, outside the timed calls (an exception per call would time the host's raise)
        try:
            fp8_bias_in_gemm(*quantize_rows(x))
            fp8 = fp8_bias_in_gemm
        except (RuntimeError, ValueError):  # builds without bias support for rowwise scaling
            fp8 = fp8_bias_after

        try:
            record("fp8_rowwise", lambda: fp8(*quantize_rows(x)))
            xq, xs = quantize_rows(x)
            record("fp8_rowwise_gemm_only", lambda: fp8(xq, xs))
        except (RuntimeError, ValueError) as e:  # TORCH_CHECK_VALUE failures are ValueErrors
            out["variants"]["fp8_rowwise"] = {"error": str(e).splitlines()[0][:200]}
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=sorted(SHAPES), default="1.3b")
    p.add_argument("--tokens", type=int, default=None, help="tokens per pass (default: 3 latent frames)")
    p.add_argument("--device", default=None)
    p.add_argument("--tiny", action="store_true", help="tiny widths (64 / 128) and 48 tokens, for CPU")
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    shape = SHAPES[args.model]
    if args.tiny:
        shape = DiTShape(dim=64, ffn_dim=128, num_heads=2, num_layers=2)
    h, w = {"ti2v-5b": (704, 1280)}.get(args.model, (480, 832))
    tokens = args.tokens or (48 if args.tiny else 3 * shape.tokens_per_frame(h, w))
    rows = []
    totals: dict[str, float] = {}
    for name, n_in, n_out, count in block_linears(shape):
        r = bench_shape(tokens, n_in, n_out, device, args.iters)
        r.update(name=name, per_block=count)
        rows.append(r)
        for v, m in r["variants"].items():
            if "ms" in m:
                totals[v] = totals.get(v, 0.0) + count * m["ms"]
    report = {
        "model": args.model,
        "tiny": args.tiny,
        "device": str(device),
        "gpu": torch.cuda.get_device_name() if str(device).startswith("cuda") else None,
        "torch": torch.__version__,
        "tokens": tokens,
        "shapes": rows,
        "per_pass_ms": {v: t * shape.num_layers for v, t in totals.items()},
    }
    print(f"{'shape':26}{'variant':24}{'ms':>9}{'TFLOP/s':>10}{'rel err':>10}")
    for r in rows:
        for v, m in r["variants"].items():
            if "ms" in m:
                print(f"{r['name']:26}{v:24}{m['ms']:9.3f}{m['tflops']:10.1f}{m['rel_err_vs_fp32']:10.2e}")
            else:
                print(f"{r['name']:26}{v:24}  {m['error']}")
    for v, t in report["per_pass_ms"].items():
        print(f"linears of one pass ({shape.num_layers} layers), {v}: {t:.2f} ms")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return report


if __name__ == "__main__":
    main()
