"""Long rollout with flat memory: 2000 pixel frames (500 latent frames, 167 chunks) through the rolling
KV cache, recording allocated / peak CUDA memory and the cache bytes per chunk.

    python bench/rollout_long_run.py [--models-dir ./models] [--frames 2000] [--decoder vae|taehv|none]

Random Wan2.1 1.3B weights unless --models-dir is given (then the real Self-Forcing files, and the
decoder streams frames to --out). Memory must not grow after the window is full.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run as `python bench/<script>.py` from anywhere
    sys.path.insert(0, ROOT)

import torch  # noqa: E402

from wan_core.rollout.presets import get_preset  # noqa: E402


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def tiny_run(args):
    """Same rollout on the CPU with a tiny random DiT: cache bytes and process RSS per chunk."""
    from wan_core.dit import WanDiT, WanDiTConfig
    from wan_core.rollout.pipeline import StreamingPipeline

    torch.manual_seed(0)
    dit = WanDiT(WanDiTConfig(dim=64, ffn_dim=128, num_heads=2, num_layers=2, text_dim=16)).eval()
    preset = get_preset("self-forcing-1.3b").with_overrides(window_frames=args.window, sink_frames=args.sink)
    pipe = StreamingPipeline(dit, preset, rope="relative")
    pipe.initialize_cache(torch.randn(1, 8, 16), height=64, width=96, num_frames=args.frames, seed=0)
    rows = []
    t0 = time.perf_counter()
    for i, r in enumerate(pipe.stream()):
        rows.append((pipe.cache_nbytes(), _rss_mib()))
        if i % 25 == 0 or i == pipe.num_chunks - 1:
            print(
                f"chunk {i:4d}/{pipe.num_chunks}: frames up to {r.frame_start + r.num_latent_frames} latent, "
                f"cache+history {rows[-1][0] / 2**10:.1f} KiB, RSS {rows[-1][1]:.0f} MiB, {time.perf_counter() - t0:.1f} s"
            )
    steady = rows[len(rows) // 4 :]
    print(
        f"{args.frames} frames / {pipe.num_chunks} chunks: cache+history bytes after the window filled: "
        f"{sorted({b for b, _ in steady})}; RSS min {min(m for _, m in steady):.0f} max {max(m for _, m in steady):.0f} MiB"
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models-dir", default=None)
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=832)
    ap.add_argument("--window", type=int, default=21)
    ap.add_argument("--sink", type=int, default=3)
    ap.add_argument("--decoder", default="none")
    ap.add_argument("--out", default=None)
    ap.add_argument(
        "--tiny", action="store_true", help="CPU smoke run with a tiny random DiT (no GPU needed)"
    )
    args = ap.parse_args()
    if args.tiny:
        return tiny_run(args)
    preset = get_preset("self-forcing-1.3b").with_overrides(window_frames=args.window, sink_frames=args.sink)
    if args.models_dir:
        from wan_core.rollout.loading import build_pipeline, encode_text, resolve_files

        files = resolve_files(
            preset, args.models_dir, decoder=args.decoder if args.decoder != "none" else "vae"
        )
        ctx = encode_text(files["text_encoder"], ["a red fox running through snow"], device="cuda")[0][None]
        pipe = build_pipeline(preset, files, device="cuda", decoder=args.decoder, rope="relative")
    else:
        from wan_core.dit import PRESETS as DIT_PRESETS
        from wan_core.dit import WanDiT
        from wan_core.rollout.pipeline import StreamingPipeline

        with torch.device("cuda"):
            dit = WanDiT(DIT_PRESETS["wan2.1-t2v-1.3b"]).to(torch.bfloat16).eval()
        g = torch.Generator(device="cuda").manual_seed(0)
        with torch.no_grad():
            for p in dit.parameters():
                p.copy_(torch.randn(p.shape, generator=g, device="cuda") * 0.02)
        ctx = torch.randn(1, 77, 4096)
        pipe = StreamingPipeline(dit, preset, rope="relative")
    pipe.initialize_cache(ctx, height=args.height, width=args.width, num_frames=args.frames, seed=0)
    writer = None
    if args.out and args.decoder != "none":
        from wan_core.rollout.video_io import open_video_writer

        writer = open_video_writer(args.out, preset.fps)
    rows = []
    t0 = time.perf_counter()
    for i in range(pipe.num_chunks):
        r = pipe.generate(i)
        if writer is not None:
            writer.write(r.frames)
        pipe.finalize(i)
        torch.cuda.synchronize()
        rows.append(
            (
                i,
                torch.cuda.memory_allocated() / 2**20,
                torch.cuda.max_memory_allocated() / 2**20,
                pipe.cache_nbytes() / 2**20,
            )
        )
        if i % 10 == 0 or i == pipe.num_chunks - 1:
            print(
                f"chunk {i:4d}: allocated {rows[-1][1]:.0f} MiB, peak {rows[-1][2]:.0f} MiB, cache {rows[-1][3]:.1f} MiB, {time.perf_counter() - t0:.1f} s"
            )
    if writer is not None:
        writer.close()
    steady = [r[1] for r in rows[len(rows) // 4 :]]
    print(
        f"allocated after the window filled: min {min(steady):.0f} MiB, max {max(steady):.0f} MiB (flat = equal)"
    )


if __name__ == "__main__":
    main()
