#!/usr/bin/env python
"""Back-to-back jobs: a new ``StreamingPipeline`` per job (what the ComfyUI sampler did) vs one pipeline
kept between jobs (``nodes/warm_rollout.py``: same KV cache, graphs replayed from the first pass).

    python bench/kept_rollout.py --model 1.3b --json $OUT/kept.json      # H100
    python bench/kept_rollout.py --tiny --device cpu --jobs 2            # CPU smoke run

Each job is one 7-chunk video (another seed each time, like a user re-queueing); its wall time runs
from the job's start (for ``new``: building the pipeline) to its last latent chunk on the host. Both
modes run one untimed job first (compile, first capture), then ``--jobs`` timed ones. Reported per
mode: median job ms, first-chunk latency (job start -> chunk 0's latents on the host), graph captures
and replays per timed job. Takes ``bench_ar.py``'s geometry and speed flags (``--window``, ``--no-cuda-graphs``, ...).
"""

from __future__ import annotations

import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402

from bench.bench_ar import DTYPES, dit_config, environment  # noqa: E402
from bench.bench_ar import parse_args as bench_args  # noqa: E402
from bench.random_weights import build_random  # noqa: E402
from bench.report import write_json  # noqa: E402
from bench.steppers import bench_preset  # noqa: E402
from bench.timing import synchronize  # noqa: E402


def _new_pipeline(model, preset, args):
    from wan_core.rollout.pipeline import StreamingPipeline

    return StreamingPipeline(
        model, preset, cuda_graphs=args.cuda_graphs, compile=args.compile, rope=args.rope,
        context_pass_last=not args.no_context_pass_last,
    )  # fmt: skip


@torch.no_grad()
def run_job(pipe, context, seed: int, args) -> dict:
    """One video on ``pipe``; returns first-chunk and total ms (host clock, latents on the host)."""
    t0 = time.perf_counter()
    pipe.rebind()
    pipe.initialize_cache(context, seed=seed, height=args.height, width=args.width, num_chunks=args.chunks)
    first = None
    for i in range(args.chunks):
        lat = pipe.generate(i).latents.to("cpu")  # the job hands its latents on: a copy to the host
        if first is None:
            first = (time.perf_counter() - t0) * 1e3
        del lat
        pipe.finalize(i)
    synchronize(pipe.device)
    return {"first_chunk_ms": first, "job_ms": (time.perf_counter() - t0) * 1e3}


def time_mode(mode: str, model, context, preset, args) -> dict:
    kept = None
    jobs = []
    for j in range(args.jobs + 1):  # job 0: untimed warm-up
        t0 = time.perf_counter()
        if mode == "kept" and kept is not None:
            pipe = kept
        else:
            pipe = _new_pipeline(model, preset, args)
        build_ms = (time.perf_counter() - t0) * 1e3
        fr = pipe.forward_runner
        c0, r0 = fr.captures, fr.replays
        r = run_job(pipe, context, args.seed + j, args)
        r["job_ms"] += build_ms
        r["first_chunk_ms"] += build_ms
        r["captures"], r["replays"] = fr.captures - c0, fr.replays - r0
        if mode == "kept":
            pipe.end_video()
            kept = pipe
        else:
            pipe.release()
        if j:
            jobs.append(r)
    if kept is not None:
        kept.release()
    return {
        "job_ms_median": statistics.median(r["job_ms"] for r in jobs),
        "first_chunk_ms_median": statistics.median(r["first_chunk_ms"] for r in jobs),
        "captures_per_job": [r["captures"] for r in jobs],
        "replays_per_job": [r["replays"] for r in jobs],
        "jobs": jobs,
    }


def parse_args(argv=None):
    """``--jobs N`` (timed jobs per mode, default 3) + ``bench_ar.py``'s options (``--help`` lists both)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print(__doc__)
        print("  --jobs N    timed jobs per mode (default 3); the other options are bench_ar.py's:\n")
    jobs = 3
    if "--jobs" in argv:
        i = argv.index("--jobs")
        jobs = int(argv[i + 1])
        del argv[i : i + 2]
    args = bench_args([*argv, "--decoder", "none", "--paths", "ours"])
    args.jobs = jobs
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    dtype = DTYPES[args.dtype]
    cfg = dit_config(args)
    from wan_core.dit import WanDiT

    model = build_random(lambda: WanDiT(cfg, attn_backend=args.attn_backend), device, dtype, seed=args.seed)
    gen = torch.Generator(device="cpu").manual_seed(args.seed + 1)
    context = torch.randn(1, cfg.text_len, cfg.text_dim, generator=gen).to(device, dtype)
    preset = bench_preset(cfg, args, args.chunks * args.frames_per_chunk)
    report = {"environment": environment(device), "model": args.model, "tiny": args.tiny, "jobs": args.jobs}
    report["config"] = {
        "height": args.height, "width": args.width, "chunks": args.chunks, "cuda_graphs": args.cuda_graphs,
        "compile": args.compile, "window": preset.window_frames, "sink": preset.sink_frames,
    }  # fmt: skip
    for mode in ("new", "kept"):
        report[mode] = time_mode(mode, model, context, preset, args)
    new, kept = report["new"]["job_ms_median"], report["kept"]["job_ms_median"]
    report["saved_ms_per_job"] = new - kept
    print(f"{'mode':<6} {'job ms':>10} {'first chunk ms':>15} {'captures/job':>13} {'replays/job':>12}")
    for mode in ("new", "kept"):
        m = report[mode]
        print(
            f"{mode:<6} {m['job_ms_median']:>10.1f} {m['first_chunk_ms_median']:>15.1f} "
            f"{statistics.median(m['captures_per_job']):>13} {statistics.median(m['replays_per_job']):>12}"
        )
    print(f"kept saves {report['saved_ms_per_job']:.1f} ms per job ({100 * (new - kept) / new:.1f}%)")
    if args.json:
        write_json(report, args.json)
    return report


if __name__ == "__main__":
    main()
