#!/usr/bin/env python
"""Autoregressive streaming benchmark (issue #8): our path and a plain reference path, same run.

    python bench/bench_ar.py --model 1.3b --json $OUT/bench.json          # H100, the issue's setting
    python bench/bench_ar.py --tiny --device cpu --json /tmp/bench.json   # CPU smoke run, tiny model
    python bench/bench_ar.py --model 1.3b --decoder taehv --overlap-decode --json $OUT/overlap.json

Setting (issue #8, item 1): random weights, 480x832, chunks of 3 latent frames, 4 denoising steps
(1000, 937.5, 833.3, 625) + the clean-context pass, bf16, batch 1, 7 chunks (81 frames).
Reports per path: DiT ms per chunk (6th chunk = FlashDreams' figure), first-chunk latency, decode ms per
chunk (TAEHV and Wan VAE), end-to-end FPS, peak memory and MFU against the bf16 matmul rate measured in
the same run; the reference/ours ratio; the ceilings and the FLOP model (bench/flops.py).
``--overlap-decode`` adds, for ours, end-to-end rollouts with the decode inside the pipeline on a side
stream vs inline (``bench/overlap_timing.py``): wall time to the last frames on the host, FPS, first-chunk latency.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402

from bench.ceilings import measure_ceilings  # noqa: E402
from bench.decoders import make_decoders  # noqa: E402
from bench.eager_bytes import eager_pass_bytes  # noqa: E402
from bench.flops import Rates, RolloutSpec, floor_seconds, rollout_cost, shape_of  # noqa: E402
from bench.overlap_timing import add_bounds, format_overlap, time_overlap  # noqa: E402
from bench.profile_kernels import profile_rollout  # noqa: E402
from bench.random_weights import build_random  # noqa: E402
from bench.report import CHUNK6, format_table, ratios, summarize_path, write_json  # noqa: E402
from bench.rollout_timing import run_rollout  # noqa: E402
from bench.steppers import PipelineStepper, ReferenceStepper  # noqa: E402
from bench.timing import peak_memory_bytes, reset_peak_memory, synchronize  # noqa: E402

# model -> (DiT preset in wan_core.dit.config.PRESETS, default height, width)
MODELS = {
    "1.3b": ("wan2.1-t2v-1.3b", 480, 832),
    "14b": ("wan2.1-t2v-14b", 480, 832),
    "ti2v-5b": ("wan2.2-ti2v-5b", 704, 1280),
}
TINY_SIZE = {"1.3b": (64, 64), "14b": (64, 64), "ti2v-5b": (128, 128)}
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
DEFAULT_TIMESTEPS = "1000,937.5,833.3333,625"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=sorted(MODELS), default="1.3b")
    p.add_argument("--height", type=int, default=None, help="pixels (default: the model's, 64 with --tiny)")
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--chunks", type=int, default=7)
    p.add_argument("--frames-per-chunk", type=int, default=3, help="latent frames per chunk")
    p.add_argument("--timesteps", default=DEFAULT_TIMESTEPS, help="comma-separated denoising timesteps")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    p.add_argument("--device", default=None, help="cuda | cpu (default: cuda when available)")
    p.add_argument(
        "--reference-dtype",
        choices=sorted(DTYPES),
        default=None,
        help="dtype of the reference path (default: --dtype); fp32 gives the bf16-vs-fp32 error yardstick",
    )
    p.add_argument("--tiny", action="store_true", help="tiny random config (dim 64, 2 layers, 64x64) for CPU")
    p.add_argument("--decoder", choices=["taehv", "vae", "both", "none"], default="both")
    p.add_argument("--paths", default="reference,ours", help="which paths to run, comma-separated")
    p.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="ours: torch.compile the blocks (default: on for CUDA, off on CPU, as the pipeline)",
    )
    p.add_argument(
        "--cuda-graphs",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="ours: CUDA graphs over the chunk step (default: on for CUDA, off on CPU)",
    )
    p.add_argument(
        "--fuse-qkv",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="ours: one d -> 3d GEMM for q/k/v (default: on for CUDA, off on CPU, as the pipeline)",
    )
    p.add_argument(
        "--fp8-linear",
        action="store_true",
        help="ours: FP8 (e4m3) GEMMs for the blocks' Linears (wan_core.fp8_linear); the reference stays "
        "in --reference-dtype: latent_rel_err_ours_vs_reference is then the FP8 path's end-to-end error",
    )
    p.add_argument("--attn-backend", default="sdpa", help="ours: sdpa | sage | flash | auto")
    p.add_argument("--window", type=int, default=None, help="ours: attention window in latent frames")
    p.add_argument("--sink", type=int, default=0, help="ours: sink frames (with --window)")
    p.add_argument(
        "--rope",
        choices=["auto", "absolute", "relative"],
        default="auto",
        help="ours: RoPE mode of the KV cache (auto, as the pipeline: absolute for a known length within "
        "the 1024-position table; relative = the endless-stream mode)",
    )
    p.add_argument(
        "--no-context-pass-last", action="store_true", help="ours: skip the last chunk's context pass"
    )
    p.add_argument("--warmup", type=int, default=1, help="untimed rollouts per path before timing")
    p.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed rollouts per path, per-chunk median (default: 3 CUDA, 1 CPU)",
    )
    p.add_argument("--profile", action="store_true", help="one extra rollout per path under torch.profiler")
    p.add_argument(
        "--overlap-decode",
        action="store_true",
        help="ours: also time end-to-end rollouts with the pipeline decoding on a side stream vs inline",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write the report here")
    args = p.parse_args(argv)
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda but this torch sees no CUDA GPU; use --device cpu (with --tiny)")
    if args.repeats is None:
        args.repeats = 3 if torch.device(args.device).type == "cuda" else 1
    if args.height is None or args.width is None:
        h, w = TINY_SIZE[args.model] if args.tiny else MODELS[args.model][1:]
        args.height, args.width = args.height or h, args.width or w
    args.timesteps = [float(t) for t in args.timesteps.split(",")]
    names = [x.strip() for x in args.paths.split(",") if x.strip()]
    for x in names:
        if x not in ("reference", "ours"):
            p.error(f"unknown path {x!r}: use reference and/or ours")
    # the reference runs first: ours compiles the shared model's blocks in place
    args.paths = [x for x in ("reference", "ours") if x in names]
    if args.chunks < 1 or args.repeats < 1 or args.warmup < 0:
        p.error("need --chunks >= 1, --repeats >= 1, --warmup >= 0")
    return args


def ours_eager_bytes(cfg, args, dtype) -> dict:
    """Eager bytes of ours' last pass with its rolling window and RoPE mode (``--window`` / ``--rope``)."""
    if not args.window and args.rope != "relative":
        return {}
    frames = args.chunks * args.frames_per_chunk
    rope = args.rope
    if rope == "auto":
        rope = "absolute" if frames <= cfg.rope_max_positions else "relative"
    window = args.window or frames
    sink = args.sink if args.window else 0
    counted = eager_pass_bytes(
        cfg, args.height, args.width, args.frames_per_chunk, args.chunks - 1, dtype, rope, sink, window
    )
    return {"eager_pass_bytes_ours_last_chunk": {"rope": rope, "sink": sink, "window": window, **counted}}


def dit_config(args):
    from wan_core.dit.config import PRESETS

    cfg = PRESETS[MODELS[args.model][0]]
    if args.tiny:
        from dataclasses import replace

        cfg = replace(cfg, dim=64, ffn_dim=128, num_heads=2, num_layers=2)
    return cfg


def environment(device) -> dict:
    env = {"torch": torch.__version__, "python": platform.python_version(), "device": str(device)}
    if torch.device(device).type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["capability"] = list(torch.cuda.get_device_capability(device))
        env["cuda"] = torch.version.cuda
        env["gpu_memory_bytes"] = torch.cuda.get_device_properties(device).total_memory
    else:
        env["cpu"] = platform.processor() or platform.machine()
        env["threads"] = torch.get_num_threads()
    return env


def _median_per_chunk(runs: list[list[float]]) -> list[float]:
    return [statistics.median(vals) for vals in zip(*runs)]


def time_path(name, make_stepper, decoders, args, device, after=None):
    """Build the path, warm it up (setup_s), then time ``args.repeats`` rollouts; ``after(stepper)``
    runs before the path is released (extra measurements on the built path)."""
    synchronize(device)
    t0 = time.perf_counter()
    stepper = make_stepper()
    try:
        for _ in range(args.warmup):
            run_rollout(stepper, decoders, args.chunks, device)
        synchronize(device)
        setup_s = time.perf_counter() - t0
        reset_peak_memory(device)
        runs = [run_rollout(stepper, decoders, args.chunks, device) for _ in range(args.repeats)]
        peak = peak_memory_bytes(device)
        desc = getattr(stepper, "description", name)
        prof = profile_rollout(stepper, args.chunks, device) if args.profile else None
        if after is not None:
            after(stepper)
    finally:
        release = getattr(stepper, "release", None)
        if release:
            release()
        del stepper
        if torch.device(device).type == "cuda":
            torch.cuda.empty_cache()
    denoise = _median_per_chunk([r.denoise_ms for r in runs])
    context = _median_per_chunk([r.context_ms for r in runs])
    decode = {d: _median_per_chunk([r.decode_ms[d] for r in runs]) for d in decoders}
    return desc, denoise, context, decode, peak, setup_s, runs, prof


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    dtype = DTYPES[args.dtype]
    torch.manual_seed(args.seed)
    cfg = dit_config(args)
    shape = shape_of(cfg)
    frame_tokens = shape.tokens_per_frame(args.height, args.width)
    vs = shape.vae_stride
    latent_shape = (1, cfg.out_dim, args.frames_per_chunk, args.height // vs[1], args.width // vs[2])
    chunk_q = args.frames_per_chunk * frame_tokens
    kv6 = min(CHUNK6 + 1, args.chunks) * chunk_q
    cuda = device.type == "cuda"

    ceilings = measure_ceilings(
        device,
        dtype,
        gemm_n=8192 if cuda else 256,
        copy_bytes=(1 << 30) if cuda else (1 << 22),
        attn_shape=(cfg.num_heads, cfg.head_dim, chunk_q, kv6),
    )

    from wan_core.dit import WanDiT

    model = build_random(lambda: WanDiT(cfg, attn_backend="sdpa"), device, dtype, seed=args.seed)
    gen = torch.Generator(device="cpu").manual_seed(args.seed + 1)
    context = torch.randn(1, cfg.text_len, cfg.text_dim, generator=gen).to(device, dtype)
    decoders = make_decoders(args.decoder, cfg.out_dim, device, dtype, args.tiny)
    decode_flops = {name: d.count_flops(latent_shape, dtype) for name, d in decoders.items()}

    base_spec = RolloutSpec(
        height=args.height,
        width=args.width,
        num_chunks=args.chunks,
        frames_per_chunk=args.frames_per_chunk,
        denoise_steps=len(args.timesteps),
    )
    specs = {
        "reference": base_spec,
        "ours": RolloutSpec(
            **{
                **base_spec.__dict__,
                "window_frames": args.window,
                "sink_frames": args.sink if args.window else 0,
                "context_pass_last_chunk": not args.no_context_pass_last,
            }
        ),
    }
    ref_dtype = DTYPES[args.reference_dtype or args.dtype]

    def reference_model():
        # same (bf16-rounded) weights in another dtype: a copy, freed with the reference path
        return model if ref_dtype == dtype else copy.deepcopy(model).to(ref_dtype)

    makers = {
        "reference": lambda: ReferenceStepper(
            reference_model(), context.to(ref_dtype), latent_shape, args.chunks, args.timesteps, args.seed
        ),
        "ours": lambda: PipelineStepper(model, context, args.chunks, args),
    }
    paths, latents, errors, overlap = {}, {}, {}, {}

    def save(rep: dict) -> None:
        if args.json:
            write_json(rep, args.json)

    ref_cost = rollout_cost(shape, base_spec)
    rates = Rates(
        ceilings["matmul_flops"], ceilings["attention_flops_best"], ceilings["copy_bandwidth_bytes_per_s"]
    )
    chunk6 = min(CHUNK6, args.chunks - 1)
    report = {
        "config": {
            "model": args.model,
            "dit": {
                k: getattr(cfg, k) for k in ("dim", "ffn_dim", "num_heads", "num_layers", "in_dim", "out_dim")
            },
            "tiny": args.tiny,
            "height": args.height,
            "width": args.width,
            "chunks": args.chunks,
            "frames_per_chunk": args.frames_per_chunk,
            "timesteps": args.timesteps,
            "video_frames": base_spec.video_frames,
            "tokens_per_frame": frame_tokens,
            "dtype": args.dtype,
            "reference_dtype": args.reference_dtype or args.dtype,
            "batch": 1,
            "decoders": {k: d.name for k, d in decoders.items()},
            "compile": args.compile,
            "cuda_graphs": args.cuda_graphs,
            "fuse_qkv": args.fuse_qkv,
            "fp8_linear_ours": args.fp8_linear,
            "attn_backend_ours": args.attn_backend,
            "window_ours": args.window,
            "overlap_decode": args.overlap_decode,
            "sink_ours": args.sink if args.window else 0,
            "rope_ours": args.rope,
            "warmup": args.warmup,
            "repeats": args.repeats,
        },
        "environment": environment(device),
        "ceilings": ceilings,
        "model_cost": {
            "params": shape.params(),
            "total_tflop": ref_cost.total.flops / 1e12,
            "linear_tflop": ref_cost.total.linear_flops / 1e12,
            "self_attn_tflop": ref_cost.total.self_attn_flops / 1e12,
            "cross_attn_tflop": ref_cost.total.cross_attn_flops / 1e12,
            "per_chunk_tflop": [c.flops / 1e12 for c in ref_cost.per_chunk],
            "per_pass_tflop": [c.flops / 1e12 for c in ref_cost.per_pass],
            "chunk6_pass_bytes": ref_cost.per_pass[chunk6].bytes,
            "chunk6_arithmetic_intensity": ref_cost.per_pass[chunk6].arithmetic_intensity,
            "floor_s": floor_seconds(ref_cost.total, rates),
            "chunk6_floor_s": floor_seconds(ref_cost.per_chunk[chunk6], rates),
            "eager_pass_bytes_chunk6": eager_pass_bytes(
                cfg, args.height, args.width, args.frames_per_chunk, chunk6, dtype
            ),
            **ours_eager_bytes(cfg, args, dtype),
            "decode_tflop_first_and_later_chunk": {k: [f / 1e12 for f in v] for k, v in decode_flops.items()},
        },
        "paths": paths,
        "ratio_reference_over_ours": {},
        "errors": errors,
    }
    save(report)  # partial results survive a crash or a time limit later on
    for name in args.paths:
        try:
            after = None
            if name == "ours" and args.overlap_decode and decoders:
                after = lambda stepper: overlap.update(time_overlap(stepper, decoders, args, device))  # noqa: E731
            desc, den, ctx, dec, peak, setup_s, runs, prof = time_path(
                name, makers[name], decoders, args, device, after
            )
        except Exception as e:  # keep the other path's numbers (one GPU run is precious)
            errors[name] = f"{type(e).__name__}: {e}"
            print(f"path {name} failed:\n{traceback.format_exc()}", file=sys.stderr)
            if cuda:
                torch.cuda.empty_cache()
            save(report)
            continue
        last = runs[-1]
        cost = rollout_cost(shape, specs[name])
        paths[name] = summarize_path(
            desc,
            den,
            ctx,
            dec,
            specs[name],
            cost,
            ceilings["matmul_flops"],
            peak,
            setup_s,
            bool(torch.isfinite(last.latents).all()),
            decode_flops,
            statistics.median(r.wall_ms for r in runs),
            statistics.median(r.gaps_ms for r in runs),
        )
        paths[name]["tflop_total"] = cost.total.flops / 1e12
        # build + compile + graph capture: the warm-up rollouts minus what a warm rollout costs
        paths[name]["cold_start_overhead_s"] = max(0.0, setup_s - args.warmup * paths[name]["rollout_wall_s"])
        paths[name]["frames_decoded"] = last.frames_out
        # run-to-run spread: a difference between versions smaller than this is noise
        paths[name]["dit_total_s_runs"] = [(sum(r.denoise_ms) + sum(r.context_ms)) / 1e3 for r in runs]
        latents[name] = last.latents
        if prof is not None:
            paths[name]["profile"] = prof
        if name == "ours" and overlap:
            add_bounds(overlap, paths[name])
            paths[name]["overlap_decode"] = overlap

        save(report)

    if {"reference", "ours"} <= set(paths):
        report["ratio_reference_over_ours"] = ratios(paths["reference"], paths["ours"])
        ref, ours = latents["reference"], latents["ours"]
        report["latent_rel_err_ours_vs_reference"] = float((ours - ref).norm() / ref.norm().clamp_min(1e-30))
    print(format_table(report))
    if overlap:
        print(format_overlap(overlap))
    save(report)
    if args.json:
        print(f"wrote {args.json}")
    return report


if __name__ == "__main__":
    main()
