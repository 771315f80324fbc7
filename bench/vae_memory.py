"""Peak working memory of decoding ONE streaming chunk with a real-width decoder (random weights).

Builds the decoder at its real channel widths (Wan VAE 2.1 / 2.2, TAEHV) with random weights (memory
does not depend on the values), decodes a first chunk of 1 latent frame (fills the caches), then a
later chunk of ``--latent-frames`` latent frames (4 T pixel frames: the worst case), and reports
the peak memory above what was held before (weights, input, caches):

- ``--device cuda``: ``torch.cuda.max_memory_allocated`` (reset before the chunk);
- ``--device cpu``: peak RSS (``resource.getrusage``) minus the RSS before the decode, measured in a
  fresh process so nothing earlier raised the high-water mark. CPU fp32 numbers scale about
  linearly with the pixel count (``--height`` x ``--width``), and halve in bf16.

    python bench/vae_memory.py --model wan21 --height 120 --width 208 --latent-frames 3
    python bench/vae_memory.py --model wan21 --height 480 --width 832 --device cuda --dtype bf16
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from wan_core.vae.taehv import TAEHV, TAEHV_PRESETS  # noqa: E402
from wan_core.vae.wan21 import WanVAE21  # noqa: E402
from wan_core.vae.wan22 import WanVAE22  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _build(name: str, device, dtype):
    with torch.device("meta"):
        model = {
            "wan21": WanVAE21,
            "wan22": WanVAE22,
            "taew2_1": lambda: TAEHV(TAEHV_PRESETS["taew2_1"]),
            "taew2_2": lambda: TAEHV(TAEHV_PRESETS["taew2_2"]),
        }[name]()
    model = model.to_empty(device=device).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    return model.eval().requires_grad_(False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="wan21", choices=["wan21", "wan22", "taew2_1", "taew2_2"])
    ap.add_argument("--height", type=int, default=120)
    ap.add_argument("--width", type=int, default=208)
    ap.add_argument("--latent-frames", type=int, default=3)
    ap.add_argument(
        "--latents-per-step", type=int, default=None, help="Wan VAE: decode the chunk in sub-steps"
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="fp32", choices=list(DTYPES))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    model = _build(args.model, device, dtype)
    is_tae = isinstance(model, TAEHV)
    scale = model.decoder_spatial_scale if is_tae else model.spatial_scale
    channels = model.latent_channels if is_tae else model.z_dim
    if args.height % scale or args.width % scale:
        raise SystemExit(f"--height/--width must be multiples of {scale} for {args.model}")
    h, w = args.height // scale, args.width // scale
    z = torch.randn(1, channels, 1 + args.latent_frames, h, w, device=device, dtype=dtype)
    kw = {} if is_tae else {"latents_per_step": args.latents_per_step}
    state = model.new_decode_state()
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    with torch.no_grad():
        model.decode_chunk(z[:, :, :1], state, **kw)  # first chunk: 1 latent frame -> 1 frame
        cache_bytes = state.nbytes()
        if device.type == "cuda":
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        else:
            base = _rss_bytes()
        t0 = time.perf_counter()
        frames = model.decode_chunk(z[:, :, 1:], state, **kw)  # later chunk: T latent frames -> 4T frames
        if device.type == "cuda":
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() - base
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
        dt = time.perf_counter() - t0
    out_bytes = frames.numel() * frames.element_size()
    print(
        f"{args.model} {args.dtype} on {device}: chunk of {args.latent_frames} latent frames {tuple(z.shape[2:])} "
        f"-> frames {tuple(frames.shape)} ({args.height}x{args.width}); weights {weights / 2**20:.0f} MiB, "
        f"cache {cache_bytes / 2**20:.1f} MiB, output {out_bytes / 2**20:.1f} MiB; "
        f"peak working memory of the chunk {peak / 2**20:.0f} MiB; {dt:.1f} s"
    )


if __name__ == "__main__":
    main()
