"""GPU check of the rollout speed features at a real size (Wan2.1 1.3B shapes, random weights unless
--models-dir is given): CUDA-graph replay vs eager, torch.compile vs eager, per-chunk timings.

    python bench/rollout_gpu_check.py [--models-dir ./models] [--frames 81] [--height 480 --width 832]

Prints max relative error of graph / compile vs eager over all chunks, replay counts, ms per chunk.
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

from wan_core.dit import PRESETS as DIT_PRESETS  # noqa: E402
from wan_core.dit import WanDiT  # noqa: E402
from wan_core.rollout.pipeline import StreamingPipeline  # noqa: E402
from wan_core.rollout.presets import get_preset  # noqa: E402


def max_rel_err(a, b):
    a, b = a.double(), b.double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def load_model(args):
    if args.models_dir:
        from wan_core.dit.loader import load_dit
        from wan_core.rollout.loading import resolve_files

        files = resolve_files(get_preset("self-forcing-1.3b"), args.models_dir)
        return load_dit(files["dit"], dtype=torch.bfloat16, device="cuda")
    with torch.device("cuda"):
        m = WanDiT(DIT_PRESETS["wan2.1-t2v-1.3b"]).to(torch.bfloat16)
    g = torch.Generator(device="cuda").manual_seed(0)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g, device="cuda", dtype=torch.float32) * 0.02)
    return m.eval()


def run(dit, args, **kw):
    preset = get_preset("self-forcing-1.3b").with_overrides(window_frames=args.window)
    pipe = StreamingPipeline(dit, preset, **kw)
    ctx = torch.randn(1, 77, 4096, generator=torch.Generator().manual_seed(0))
    pipe.initialize_cache(ctx, height=args.height, width=args.width, num_frames=args.frames, seed=0)
    outs, times = [], []
    for i in range(pipe.num_chunks):
        torch.cuda.synchronize()
        t = time.perf_counter()
        r = pipe.generate(i)
        pipe.finalize(i)
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t) * 1000)
        outs.append(r.latents.float())
    return torch.cat(outs, 2), times, pipe


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models-dir", default=None)
    ap.add_argument("--frames", type=int, default=81)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=832)
    ap.add_argument("--window", type=int, default=9, help="small window so the cache is full early")
    args = ap.parse_args()
    print(torch.__version__, torch.cuda.get_device_name())
    dit = load_model(args)
    eager, t_e, _ = run(dit, args, cuda_graphs=False, compile=False)
    graph, t_g, pg = run(dit, args, cuda_graphs=True, compile=False)
    print(f"eager ms/chunk: {[round(x) for x in t_e]}")
    print(
        f"graph ms/chunk: {[round(x) for x in t_g]}  captures {pg.forward_runner.captures} replays {pg.forward_runner.replays}"
    )
    print(f"graph vs eager max rel err: {max_rel_err(graph, eager):.3e}")
    comp, t_c, pc = run(dit, args, cuda_graphs=True, compile=True)
    print(f"compile+graph ms/chunk: {[round(x) for x in t_c]}")
    print(f"compile+graph vs eager max rel err: {max_rel_err(comp, eager):.3e}")


if __name__ == "__main__":
    main()
