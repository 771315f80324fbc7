"""Command line: ``python -m wan_core generate --preset self-forcing-1.3b --prompt "..." --models-dir ./models
--download --frames 81 --out out.mp4``.

Subcommands: ``generate`` (writes mp4 via PyAV or animated WebP via Pillow, prints per-chunk timing),
``live`` (an endless video steered by prompts on standard input, ``wan_core/live/cli.py``),
``presets`` (list the presets), ``files`` (which files a preset needs and whether they are there).
"""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["main", "build_parser"]


def _fps(text: str) -> int | float:
    """``--fps``: a whole number stays an int (16, not 16.0, in messages), else a float (29.97)."""
    value = float(text)
    return int(value) if value.is_integer() else value


def build_parser() -> argparse.ArgumentParser:
    from wan_core.rollout.presets import PRESETS

    ap = argparse.ArgumentParser(
        prog="python -m wan_core", description="Streaming Wan 2.1 / 2.2 video generation"
    )
    sub = ap.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="generate a video")
    g.add_argument("--preset", required=True, choices=sorted(PRESETS), metavar="PRESET", help="see `presets`")
    g.add_argument("--prompt", required=True, help="text prompt")
    g.add_argument(
        "--prompt-switch",
        action="append",
        default=[],
        metavar="CHUNK:PROMPT | SECONDSs:PROMPT",
        help="from chunk CHUNK (or from the chunk at SECONDS, e.g. 5s:PROMPT) on use PROMPT (repeatable; autoregressive presets)",
    )
    g.add_argument("--negative-prompt", default=None, help="negative prompt for CFG presets")
    g.add_argument(
        "--image", default=None, help="start image (I2V / TI2V presets; mask-inject for T2V presets)"
    )
    g.add_argument("--models-dir", required=True, help="ComfyUI-style models folder")
    g.add_argument("--download", action="store_true", help="download missing files from Hugging Face")
    g.add_argument("--frames", type=int, default=None, help="pixel frames, 1 + 4k (default: the preset's)")
    g.add_argument(
        "--chunks",
        type=int,
        default=None,
        help="autoregressive presets: this many chunks instead of --frames",
    )
    g.add_argument("--height", type=int, default=None)
    g.add_argument("--width", type=int, default=None)
    g.add_argument("--seed", type=int, default=None, help="noise seed, 0 .. 2**64 - 1 (default 0)")
    g.add_argument("--out", default="out.mp4", help=".mp4 (PyAV) or .webp")
    g.add_argument(
        "--fps", type=_fps, default=None, help="frames per second, whole or fractional (e.g. 29.97)"
    )
    g.add_argument(
        "--decoder", choices=("vae", "taehv"), default="vae", help="full Wan VAE or TAEHV (faster)"
    )
    g.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    g.add_argument(
        "--text-encoder-device",
        choices=("auto", "cpu"),
        default="auto",
        help="where UMT5-XXL (~11 GB) loads and runs: auto = the generation device, cpu = for small GPUs",
    )
    g.add_argument(
        "--dtype",
        choices=("bf16", "fp16", "fp32"),
        default=None,
        help="DiT dtype (default bf16 on CUDA, fp32 on CPU)",
    )
    g.add_argument(
        "--attention",
        default="auto",
        choices=("auto", "sdpa", "sage", "flash"),
        help="auto: FlashAttention 3, else SageAttention >= 2, else SDPA; sage / flash need CUDA",
    )
    g.add_argument(
        "--weights",
        choices=("auto", "generator", "generator_ema"),
        default="auto",
        help="weight set of a training checkpoint (auto: the one the family's official inference loads)",
    )
    g.add_argument("--no-cuda-graphs", action="store_true", help="disable CUDA-graph replay")
    g.add_argument("--no-compile", action="store_true", help="disable torch.compile of the blocks")
    g.add_argument(
        "--fp8-linear",
        action="store_true",
        help="FP8 (e4m3) GEMMs for the Linears inside the blocks (RTX 40xx / Ada, H100 / Hopper or newer)",
    )
    g.add_argument(
        "--no-overlap-decode",
        action="store_true",
        help="decode on the DiT's CUDA stream instead of a side stream overlapped with the next chunk",
    )
    g.add_argument("--rope", choices=("auto", "absolute", "relative"), default="auto")
    from wan_core.parallel.launch import add_context_parallel_argument

    add_context_parallel_argument(
        g
    )  # torchrun --nproc_per_node=N -m wan_core generate ... --context-parallel
    g.add_argument("--window", type=int, default=None, help="attention window in latent frames (excl. sink)")
    g.add_argument("--sink", type=int, default=None, help="sink latent frames")
    g.add_argument("--steps", type=int, default=None, help="many-step presets: number of Euler steps")
    g.add_argument("--guidance", type=float, default=None, help="many-step presets: CFG scale")

    from wan_core.live.cli import add_live_parser

    add_live_parser(sub)  # python -m wan_core live: prompts from standard input
    sub.add_parser("presets", help="list the presets")
    f = sub.add_parser("files", help="files a preset needs and whether they are present")
    f.add_argument("--preset", required=True, choices=sorted(PRESETS), metavar="PRESET")
    f.add_argument("--models-dir", required=True)
    f.add_argument("--decoder", choices=("vae", "taehv"), default="vae")
    return ap


def _parse_switches(items: list[str]) -> list[tuple[int, str]]:
    """``--prompt-switch CHUNK:PROMPT`` (or ``SECONDS``s``:PROMPT``, e.g. ``5s:a dog``) values as
    ``[(chunk or Seconds, prompt), ...]`` in the given order (the request validation turns seconds into
    chunks and refuses chunk 0, duplicates and switches past the end)."""
    from wan_core.rollout.request import CLI_WORDS, RequestError, Seconds

    out = []
    for s in items:
        key, sep, prompt = s.partition(":")
        key = key.strip().lower()
        at = Seconds.parse(key[:-1].strip()) if key.endswith("s") else (int(key) if key.isdecimal() else None)
        if not sep or at is None:
            raise RequestError(
                "prompt_switches", s, "{prompt_switches} expects CHUNK:PROMPT or SECONDSs:PROMPT", None,
                "e.g. --prompt-switch 4:'a dog' or --prompt-switch 5s:'a dog'", "switches.syntax", CLI_WORDS,
            )  # fmt: skip
        out.append((at, prompt))
    return out


def request_from_args(args):
    """The ``VideoRequest`` of ``generate``'s flags (an omitted flag = the preset's default)."""
    from wan_core.rollout.request import VideoRequest

    return VideoRequest(
        preset=args.preset,
        prompt=args.prompt,
        width=args.width,
        height=args.height,
        frames=args.frames,
        chunks=args.chunks,
        seed=args.seed,
        window=args.window,
        sink=args.sink,
        rope=args.rope,
        prompt_switches=_parse_switches(args.prompt_switch),
        image=args.image,
        steps=args.steps,
        guidance=args.guidance,
        negative_prompt=args.negative_prompt,
        fps=args.fps,
        output=args.out,
        gpus=int(os.environ.get("WORLD_SIZE", "1")),  # torchrun --nproc_per_node
        context_parallel=None if args.context_parallel == "none" else args.context_parallel,
    )


def run_options_from_args(args):
    from wan_core.api import RunOptions

    return RunOptions(
        models_dir=args.models_dir,
        decoder=args.decoder,
        download=args.download,
        device=args.device,
        dtype=args.dtype,
        text_encoder_device=args.text_encoder_device,
        attention=args.attention,
        cuda_graphs=False if args.no_cuda_graphs else None,
        compile=False if args.no_compile else None,
        overlap_decode=False if args.no_overlap_decode else None,
        fp8_linear=args.fp8_linear,
        weights=args.weights,
    )


def _cmd_presets() -> int:
    from wan_core.rollout.presets import PRESETS

    for p in PRESETS.values():
        print(f"{p.name:32s} {p.description}")
    return 0


def _cmd_files(args) -> int:
    from wan_core.rollout.model_files import find_model_file
    from wan_core.rollout.presets import get_preset

    p = get_preset(args.preset)
    missing = 0
    for spec in p.files(args.decoder):
        found = find_model_file(args.models_dir, spec)
        missing += found is None
        state = f"ok  {found}" if found else f"MISSING  ({spec.repo} {spec.repo_path})"
        print(f"{spec.role:14s} {spec.folder}/{spec.name}: {state}")
    return 1 if missing else 0


def _cmd_generate(args) -> int:
    """Validate the request first (before any file is found, any model loads or the output folder is
    made), then run it (``wan_core.api.run_video``, the Python API's path)."""
    from wan_core.api import run_video
    from wan_core.rollout.request import CLI_WORDS

    valid = request_from_args(args).validate(words=CLI_WORDS)
    return run_video(valid, run_options_from_args(args), words=CLI_WORDS).exit_code


def main(argv=None) -> int:
    import torch

    from wan_core.checkpoint import CheckpointError
    from wan_core.memory import OutOfMemory, is_out_of_memory
    from wan_core.rollout.interrupts import EXIT_ABORTED, interrupted_message
    from wan_core.rollout.model_files import MissingModelFileError

    args = build_parser().parse_args(argv)
    try:
        if args.command == "presets":
            return _cmd_presets()
        if args.command == "files":
            return _cmd_files(args)
        if args.command == "live":
            from wan_core.live.cli import run_live_cli

            return run_live_cli(args)
        return _cmd_generate(args)
    except KeyboardInterrupt as e:  # Ctrl-C outside the loop, or a second one in it: no new file
        print(interrupted_message(e, getattr(args, "out", None)), file=sys.stderr)
        return EXIT_ABORTED
    except MissingModelFileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (CheckpointError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (torch.OutOfMemoryError, RuntimeError) as e:  # OutOfMemory: what failed and how to fit
        if not is_out_of_memory(e):
            raise
        print(f"error: {e}", file=sys.stderr)
        if not isinstance(e, OutOfMemory):
            print(
                "(try a smaller --height/--width, --window, --decoder taehv or --text-encoder-device cpu)",
                file=sys.stderr,
            )
        return 2


def _exit(rc: int) -> None:
    """Exit; under torchrun (WORLD_SIZE > 1) without interpreter finalization: the process group is
    already destroyed and the video closed, but gloo worker threads can still hold tensors whose
    release during finalization aborts the process (SIGABRT) after a successful run."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    sys.exit(rc)


if __name__ == "__main__":
    _exit(main())
