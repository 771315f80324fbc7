"""The benchmark report: per-path summaries built from raw timings, a printed table and the JSON file.

A report is a plain dict (``json.dump``-able). ``PATH_FIELDS`` / ``TOP_FIELDS`` list every field the
issue asks for, so the smoke test can check that none is missing.
"""

from __future__ import annotations

import json
import math
import statistics

from bench.flops import RolloutCost, RolloutSpec, mfu

CHUNK6 = 5  # 0-based index of the 6th chunk (the figure FlashDreams publishes)

TOP_FIELDS = ("config", "environment", "ceilings", "model_cost", "paths", "ratio_reference_over_ours")
PATH_FIELDS = (
    "description",
    "dit_ms_per_chunk",  # denoising passes + clean-context pass, per chunk
    "denoise_ms_per_chunk",
    "context_ms_per_chunk",
    "dit_ms_chunk6",
    "denoise_ms_chunk6",  # the 4 denoising passes only (the 250 ms bf16 floor counts these)
    "dit_total_s",
    "first_chunk_latency_ms",  # per decoder: chunk 1's denoising + its decode (the first frames out)
    "decode_ms_per_chunk",  # per decoder
    "fps_dit_only",
    "fps_end_to_end",  # per decoder
    "peak_memory_bytes",
    "peak_memory_gib",
    "achieved_tflops",
    "mfu",  # achieved DiT FLOP/s over the measured bf16 matmul rate
    "mfu_chunk6",
    "setup_s",  # build + warm-up rollout (incl. compile / graph capture when on)
    "rollout_wall_s",  # one timed rollout, first to last event (DiT + all decoders + gaps)
    "gaps_ms",  # rollout time outside the timed segments: the device waiting for the host
    "output_finite",
)
RATIO_FIELDS = ("dit_ms_chunk6", "denoise_ms_chunk6", "dit_total_s", "fps_dit_only")


def summarize_path(
    description: str,
    denoise_ms: list[float],
    context_ms: list[float],
    decode_ms: dict[str, list[float]],
    spec: RolloutSpec,
    cost: RolloutCost,
    matmul_flops: float,
    peak_memory_bytes: int | None,
    setup_s: float,
    output_finite: bool,
    decode_flops: dict[str, list[float]] | None = None,
    rollout_wall_ms: float = 0.0,
    gaps_ms: float = 0.0,
) -> dict:
    """One path's report section from its raw per-chunk timings (milliseconds)."""
    n = spec.num_chunks
    if len(denoise_ms) != n or len(context_ms) != n:
        raise ValueError(f"expected {n} per-chunk timings, got {len(denoise_ms)} / {len(context_ms)}")
    dit = [a + b for a, b in zip(denoise_ms, context_ms)]
    dit_total_s = sum(dit) / 1e3
    frames = spec.video_frames
    flops = cost.total.flops
    out = {
        "description": description,
        "dit_ms_per_chunk": dit,
        "denoise_ms_per_chunk": list(denoise_ms),
        "context_ms_per_chunk": list(context_ms),
        "dit_ms_chunk6": dit[CHUNK6] if n > CHUNK6 else None,
        "denoise_ms_chunk6": denoise_ms[CHUNK6] if n > CHUNK6 else None,
        "dit_total_s": dit_total_s,
        "first_chunk_latency_ms": {name: denoise_ms[0] + ms[0] for name, ms in decode_ms.items()},
        "decode_ms_per_chunk": {name: list(ms) for name, ms in decode_ms.items()},
        "fps_dit_only": frames / dit_total_s,
        "fps_end_to_end": {name: frames / (dit_total_s + sum(ms) / 1e3) for name, ms in decode_ms.items()},
        "peak_memory_bytes": peak_memory_bytes,
        "peak_memory_gib": None if peak_memory_bytes is None else peak_memory_bytes / 2**30,
        "achieved_tflops": flops / dit_total_s / 1e12,
        "mfu": mfu(flops, dit_total_s, matmul_flops),
        "mfu_chunk6": mfu(cost.per_chunk[CHUNK6].flops, dit[CHUNK6] / 1e3, matmul_flops)
        if n > CHUNK6
        else None,
        "setup_s": setup_s,
        "rollout_wall_s": rollout_wall_ms / 1e3,
        "gaps_ms": gaps_ms,
        "output_finite": bool(output_finite),
    }
    if decode_flops:  # [first chunk, later chunks] per decoder
        out["decode_achieved_tflops"] = {
            name: (decode_flops[name][0] + decode_flops[name][1] * (n - 1)) / (sum(ms) / 1e3) / 1e12
            for name, ms in decode_ms.items()
            if name in decode_flops and sum(ms) > 0
        }
    missing = [k for k in PATH_FIELDS if k not in out]
    assert not missing, missing
    return out


def ratios(reference: dict, ours: dict) -> dict:
    """reference / ours for times (>1: ours is faster) and ours / reference for rates."""
    out = {}
    for key in RATIO_FIELDS:
        a, b = reference.get(key), ours.get(key)
        if a is None or b is None or b == 0 or a == 0:
            out[key] = None
        elif key.startswith("fps"):
            out[key] = b / a  # speed-up of ours
        else:
            out[key] = a / b
    return out


def _fmt(x, spec=".1f") -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return format(x, spec)


def format_table(report: dict) -> str:
    """Human-readable summary: one column per path, then the per-chunk times and the ceilings."""
    paths = report["paths"]
    names = list(paths)
    errors = [f"path {n} FAILED: {e}" for n, e in report.get("errors", {}).items()]
    if not names:
        return "\n".join(errors or ["no path was run"])
    rows: list[tuple[str, list[str]]] = []

    def row(label, fn):
        rows.append((label, [fn(paths[n]) for n in names]))

    row("DiT 6th chunk incl. context (ms)", lambda p: _fmt(p["dit_ms_chunk6"]))
    row("  of which denoising (ms)", lambda p: _fmt(p["denoise_ms_chunk6"]))
    row("DiT total (s)", lambda p: _fmt(p["dit_total_s"], ".3f"))
    row(
        "  spread over runs (s)",
        lambda p: (
            _fmt(max(p["dit_total_s_runs"]) - min(p["dit_total_s_runs"]), ".3f")
            if p.get("dit_total_s_runs")
            else "-"
        ),
    )
    row("FPS DiT only", lambda p: _fmt(p["fps_dit_only"]))
    decoders = sorted({d for p in paths.values() for d in p["fps_end_to_end"]})
    for d in decoders:
        row(f"FPS end to end ({d})", lambda p, d=d: _fmt(p["fps_end_to_end"].get(d)))
        row(f"first frames ({d}) (ms)", lambda p, d=d: _fmt(p["first_chunk_latency_ms"].get(d)))
        row(
            f"decode/chunk ({d}) (ms, median)",
            lambda p, d=d: _fmt(
                statistics.median(p["decode_ms_per_chunk"][d]) if d in p["decode_ms_per_chunk"] else None
            ),
        )
    row("peak memory (GiB)", lambda p: _fmt(p["peak_memory_gib"], ".2f"))
    row("achieved TFLOP/s", lambda p: _fmt(p["achieved_tflops"]))
    row("MFU vs measured bf16 matmul", lambda p: _fmt(100 * p["mfu"], ".1f") + " %")
    row("setup incl. warm-up (s)", lambda p: _fmt(p["setup_s"], ".1f"))
    row("cold start: build+compile+capture (s)", lambda p: _fmt(p.get("cold_start_overhead_s"), ".1f"))
    row("device idle between segments (ms)", lambda p: _fmt(p["gaps_ms"]))
    width = max(len(r[0]) for r in rows) + 2
    colw = max(14, *(len(n) + 2 for n in names))
    lines = ["".ljust(width) + "".join(n.rjust(colw) for n in names)]
    lines += [label.ljust(width) + "".join(v.rjust(colw) for v in vals) for label, vals in rows]
    lines += errors
    lines.append("")
    lines.append("DiT ms per chunk (denoise + context pass):")
    for n in names:
        lines.append(f"  {n:>10}: " + " ".join(_fmt(x).rjust(8) for x in paths[n]["dit_ms_per_chunk"]))
    r = report["ratio_reference_over_ours"]
    lines.append(
        "ratio reference/ours: 6th chunk "
        + _fmt(r.get("dit_ms_chunk6"), ".2f")
        + "x, DiT total "
        + _fmt(r.get("dit_total_s"), ".2f")
        + "x"
    )
    c = report["ceilings"]
    lines.append(
        f"ceilings: {c['matmul_dtype']} matmul {_fmt(c['matmul_flops'] / 1e12)} TFLOP/s, fp8 scaled_mm "
        f"{_fmt(c['fp8_scaled_mm_flops'] / 1e12 if c['fp8_scaled_mm_flops'] else None)} TFLOP/s, copy "
        f"{_fmt(c['copy_bandwidth_bytes_per_s'] / 1e9)} GB/s, attention best "
        f"{_fmt(c['attention_flops_best'] / 1e12 if c['attention_flops_best'] else None)} TFLOP/s"
    )
    m = report["model_cost"]
    lines.append(
        f"model: {_fmt(m['total_tflop'])} TFLOP per video; floor {_fmt(m['floor_s']['flops_at_matmul_s'], '.3f')} s "
        f"(all at matmul rate), {_fmt(m['floor_s']['linear_at_matmul_attn_at_attn_s'], '.3f')} s (attention at its "
        f"measured rate); 6th chunk floor {_fmt(1e3 * m['chunk6_floor_s']['linear_at_matmul_attn_at_attn_s'])} ms"
        if m.get("chunk6_floor_s")
        else f"model: {_fmt(m['total_tflop'])} TFLOP per video"
    )
    return "\n".join(lines)


def write_json(report: dict, path: str) -> None:
    with open(path, "w") as f:
        json.dump(report, f, indent=2, sort_keys=False, allow_nan=True)
        f.write("\n")
