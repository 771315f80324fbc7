"""End-to-end rollouts with the decode inside the pipeline (``bench_ar.py --overlap-decode``, ours path).

The default benchmark times DiT and decode as separate segments on one stream (``rollout_timing.py``).
With decode overlap those segments run at the same time on two streams, so per-segment times no longer
add up; what counts is the end-to-end span. Here the pipeline decodes itself (``StreamingPipeline``
with the benchmark's decoder attached, as the CLI runs it) and each rollout is timed with CUDA events:
``t0`` on the main stream before chunk 0, then after each chunk an event on the decode stream behind
that chunk's device -> pinned host copy ("frames on the host"), and one on the main stream after the
last DiT pass. Reported per decoder and mode:

- ``overlap``: ``overlap_decode=True`` (decode + copy on the side stream);
- ``inline``: ``overlap_decode=False`` (decode + copy on the DiT's stream: the sequential baseline with
  the same work, measured the same way).

``wall_s`` = t0 -> last chunk's frames on the host, ``fps_end_to_end`` = frames / wall_s,
``first_chunk_latency_ms`` = t0 -> chunk 0's frames on the host, ``dit_stream_s`` = t0 -> main stream
done (the DiT under contention with the decode). One synchronisation per rollout (at the end).
"""

from __future__ import annotations

import contextlib
import statistics

import torch

from bench.timing import EventTimer, peak_memory_bytes, reset_peak_memory
from wan_core.vae.stream import as_rollout_decoder

MODES = {"overlap": True, "inline": False}


@torch.no_grad()
def run_pipeline_rollout(stepper, decoder_model, overlap: bool, num_chunks: int, device) -> dict:
    """One rollout of ``stepper`` (a ``PipelineStepper``) with ``decoder_model`` attached to its pipeline."""
    pipe = stepper.pipe
    pipe.decoder = as_rollout_decoder(decoder_model)
    pipe.overlap_decode = bool(overlap) and torch.device(device).type == "cuda"
    try:
        timer = EventTimer(device)
        stepper.start_video()  # initialize_cache: builds the video's decoder stream (on the side stream)
        t0 = timer.mark()
        ready, frames = [], 0
        for i in range(num_chunks):
            r = pipe.generate(i)
            side = pipe.decode_stream if pipe.overlap_decode else None
            with torch.cuda.stream(side) if side is not None else contextlib.nullcontext():
                ready.append(timer.mark())  # behind chunk i's decode and host copy
            frames += r.decoded.shape[2]
            del r
            pipe.finalize(i)
        dit_done = timer.mark()
        timer.finish()
        host = [timer.elapsed_ms(t0, m) for m in ready]
        return {
            "wall_ms": host[-1],
            "first_chunk_ms": host[0],
            "host_ready_ms_per_chunk": host,
            "dit_stream_ms": timer.elapsed_ms(t0, dit_done),
            "frames": frames,
        }
    finally:
        pipe.decoder = None  # the state is kept: the next video reuses its KV cache and CUDA graphs


def time_overlap(stepper, decoders: dict, args, device) -> dict:
    """Per decoder and mode: ``args.warmup`` untimed rollouts, then ``args.repeats`` timed (medians)."""
    out = {}
    for name, dec in decoders.items():
        out[name] = {}
        for mode, overlap in MODES.items():
            for _ in range(args.warmup):
                run_pipeline_rollout(stepper, dec.model, overlap, args.chunks, device)
            reset_peak_memory(device)
            runs = [
                run_pipeline_rollout(stepper, dec.model, overlap, args.chunks, device)
                for _ in range(args.repeats)
            ]
            peak = peak_memory_bytes(device)
            wall = statistics.median(r["wall_ms"] for r in runs)
            per_chunk = [statistics.median(v) for v in zip(*(r["host_ready_ms_per_chunk"] for r in runs))]
            out[name][mode] = {
                "wall_s": wall / 1e3,
                "fps_end_to_end": runs[0]["frames"] / (wall / 1e3),
                "first_chunk_latency_ms": statistics.median(r["first_chunk_ms"] for r in runs),
                "host_ready_ms_per_chunk": per_chunk,
                "dit_stream_s": statistics.median(r["dit_stream_ms"] for r in runs) / 1e3,
                "frames": runs[0]["frames"],
                "wall_s_runs": [r["wall_ms"] / 1e3 for r in runs],
                "peak_memory_gib": None if peak is None else peak / 2**30,
                "decode_stream": "side stream"
                if overlap and torch.device(device).type == "cuda"
                else "DiT stream",
            }
    return out


def add_bounds(overlap: dict, path: dict) -> None:
    """The sequential segments of the same path give the bound: ideal overlap hides every decode but
    the last chunk's (nothing runs after it), i.e. wall >= DiT total + last decode."""
    dit_s = path["dit_total_s"]
    for name, modes in overlap.items():
        dec = path["decode_ms_per_chunk"].get(name)
        if not dec:
            continue
        ideal = dit_s + dec[-1] / 1e3
        modes["bound"] = {
            "sequential_wall_s": dit_s + sum(dec) / 1e3,
            "ideal_overlap_wall_s": ideal,
            "ideal_overlap_fps": modes["overlap"]["frames"] / ideal,
        }


def format_overlap(overlap: dict) -> str:
    lines = ["", "decode overlap (pipeline decodes itself; t0 -> frames on the host):"]
    lines.append(
        f"  {'decoder':10s} {'mode':8s} {'wall s':>8s} {'FPS':>7s} {'first ms':>9s} {'DiT stream s':>13s}"
    )
    for name, modes in overlap.items():
        for mode in MODES:
            m = modes[mode]
            lines.append(
                f"  {name:10s} {mode:8s} {m['wall_s']:8.3f} {m['fps_end_to_end']:7.1f} "
                f"{m['first_chunk_latency_ms']:9.1f} {m['dit_stream_s']:13.3f}"
            )
        b = modes.get("bound")
        if b:
            lines.append(
                f"  {name:10s} bound    sequential segments {b['sequential_wall_s']:.3f} s, "
                f"ideal overlap {b['ideal_overlap_wall_s']:.3f} s ({b['ideal_overlap_fps']:.1f} FPS)"
            )
    return "\n".join(lines)
