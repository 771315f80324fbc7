"""Command line: ``python -m wan_core generate --preset self-forcing-1.3b --prompt "..." --models-dir ./models
--download --frames 81 --out out.mp4``.

Subcommands: ``generate`` (writes mp4 via PyAV or animated WebP via Pillow, prints per-chunk timing),
``presets`` (list the presets), ``files`` (which files a preset needs and whether they are there).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

__all__ = ["main", "build_parser"]

DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


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
        metavar="CHUNK:PROMPT",
        help="from chunk CHUNK on use PROMPT (repeatable; autoregressive presets)",
    )
    g.add_argument("--negative-prompt", default=None, help="negative prompt for CFG presets")
    g.add_argument(
        "--image", default=None, help="start image (I2V / TI2V presets; mask-inject for T2V presets)"
    )
    g.add_argument("--models-dir", required=True, help="ComfyUI-style models folder")
    g.add_argument("--download", action="store_true", help="download missing files from Hugging Face")
    g.add_argument("--frames", type=int, default=None, help="pixel frames (default: the preset's)")
    g.add_argument("--height", type=int, default=None)
    g.add_argument("--width", type=int, default=None)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--out", default="out.mp4", help=".mp4 (PyAV) or .webp")
    g.add_argument("--fps", type=int, default=None)
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
        "--dtype", choices=sorted(DTYPES), default=None, help="DiT dtype (default bf16 on CUDA, fp32 on CPU)"
    )
    g.add_argument("--attention", default="auto", help="auto | sdpa | sage | flash")
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

    sub.add_parser("presets", help="list the presets")
    f = sub.add_parser("files", help="files a preset needs and whether they are present")
    f.add_argument("--preset", required=True, choices=sorted(PRESETS), metavar="PRESET")
    f.add_argument("--models-dir", required=True)
    f.add_argument("--decoder", choices=("vae", "taehv"), default="vae")
    return ap


def _parse_switches(items: list[str]) -> dict[int, str]:
    out = {}
    for s in items:
        chunk, sep, prompt = s.partition(":")
        if not sep or not chunk.strip().isdigit():
            raise ValueError(f"--prompt-switch expects CHUNK:PROMPT (e.g. 4:'a dog'), got {s!r}")
        out[int(chunk)] = prompt
    return out


def _load_image(path: str, width: int, height: int):
    import numpy as np
    import torch
    from PIL import Image

    img = Image.open(path).convert("RGB").resize((width, height), Image.BICUBIC)
    x = torch.from_numpy(np.asarray(img).copy()).float().div(127.5).sub(1)  # [H, W, 3] in [-1, 1]
    return x.permute(2, 0, 1)[None]


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
    from wan_core.parallel import shutdown
    from wan_core.parallel.launch import init_context_parallel
    from wan_core.rollout.presets import get_preset
    from wan_core.rollout.schedulers import EulerSchedule

    preset = get_preset(args.preset)
    over = {}
    if args.window is not None:
        over["window_frames"] = args.window
    if args.sink is not None:
        over["sink_frames"] = args.sink
    if args.steps is not None:
        if preset.is_autoregressive:
            raise ValueError(
                "--steps is for many-step presets; few-step presets use their published step list"
            )
        over["euler"] = EulerSchedule(num_steps=args.steps, shift=preset.euler.shift)
    if args.guidance is not None:
        over["guidance_scale"] = args.guidance
        if preset.guidance_scale_high is not None:
            over["guidance_scale_high"] = args.guidance
    preset = preset.with_overrides(**over) if over else preset
    switches = _parse_switches(args.prompt_switch)
    # -- environment and output checked before anything loads --
    from wan_core.devices import resolve_device
    from wan_core.rollout.video_io import check_output_path

    check_output_path(args.out)
    device = resolve_device(args.device)
    cp = init_context_parallel(args.context_parallel)  # joins the torchrun group when WORLD_SIZE > 1
    if cp.distributed:
        device = cp.device
    if args.fp8_linear:
        from wan_core.fp8_linear import check_fp8_support

        check_fp8_support(device)
    # -- end of the up-front checks --
    try:
        return _generate(args, preset, switches, device, cp)
    finally:
        shutdown()


def _generate(args, preset, switches, device, cp) -> int:
    import torch

    from wan_core.parallel.parallelize import parallelize_pipeline
    from wan_core.rollout.frame_writer import BackgroundFrameWriter
    from wan_core.rollout.loading import build_pipeline, encode_text, resolve_files
    from wan_core.rollout.video_io import open_video_writer

    say = print if cp.is_main else (lambda *a, **k: None)  # only rank 0 talks and writes
    dtype = getattr(torch, DTYPES[args.dtype]) if args.dtype else None
    height, width = args.height or preset.height, args.width or preset.width
    num_frames = args.frames or preset.default_frames
    fps = args.fps or preset.fps

    files = resolve_files(preset, args.models_dir, decoder=args.decoder, download=args.download)
    say(f"preset {preset.name}: {width}x{height}, {num_frames} frames @ {fps} fps, device {device}")
    for role, path in files.items():
        say(f"  {role:14s} {path}")

    t0 = time.perf_counter()
    texts = [args.prompt, *switches.values()]
    negative = None
    if not preset.is_autoregressive:
        from wan_core.rollout.presets import DEFAULT_NEGATIVE_PROMPT

        negative = DEFAULT_NEGATIVE_PROMPT if args.negative_prompt is None else args.negative_prompt
        texts.append(negative)
    text_device = torch.device("cpu") if args.text_encoder_device == "cpu" else device
    embs = [e.to(device) for e in encode_text(files["text_encoder"], texts, device=text_device)]  # fp32
    emb_main = embs[0][None]
    emb_switch = {c: embs[1 + i][None] for i, c in enumerate(switches)}
    emb_neg = embs[-1][None] if negative is not None else None
    say(f"text encoded on {text_device} in {time.perf_counter() - t0:.2f} s")

    t0 = time.perf_counter()
    pipe = build_pipeline(
        preset,
        files,
        device=device,
        dtype=dtype,
        decoder=args.decoder,
        attention=args.attention,
        weights=args.weights,
        cuda_graphs=False if args.no_cuda_graphs else None,
        compile=False if args.no_compile else None,
        overlap_decode=False if args.no_overlap_decode else None,
        rope=args.rope,
        fp8_linear=args.fp8_linear,
    )
    if pipe.fp8_report is not None:
        say(pipe.fp8_report.summary())
    pipe = parallelize_pipeline(pipe, args.context_parallel, cp)  # identity on one process
    say(
        f"models loaded in {time.perf_counter() - t0:.2f} s "
        f"(cuda graphs {'on' if pipe.cuda_graphs else 'off'}, compile {'on' if pipe.compiled else 'off'}, "
        f"decode overlap {'on' if pipe.overlap_decode else 'off'}; DiT weights: "
        f"{getattr(pipe.dit, 'weight_set', '?')})"
    )
    image = _load_image(args.image, width, height) if args.image else None
    pipe.initialize_cache(
        emb_main,
        image,
        height=height,
        width=width,
        num_frames=num_frames,
        seed=args.seed,
        negative_prompt=emb_neg,
        prompt_switches=emb_switch,
    )

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    num_chunks = pipe.num_chunks
    start = time.perf_counter()
    marks = [start]  # when each chunk's frames were written (writer thread)

    def chunk_written(r, count: int) -> None:  # on the writer thread, after the chunk is in the file
        now = time.perf_counter()
        say(
            f"chunk {r.index + 1}/{num_chunks}: latent frames {r.frame_start}-{r.frame_start + r.num_latent_frames - 1}"
            f" -> {count} frames, written after {(now - start) * 1000:.0f} ms (+{(now - marks[-1]) * 1000:.0f} ms)",
            flush=True,
        )
        marks.append(now)

    # rank 0 writes on a worker thread (at most 2 chunks in flight) while this thread keeps enqueueing
    # DiT work: nothing here waits for the GPU (the decode runs on a side stream, ``overlap_decode``)
    from wan_core.rollout.interrupts import report_stop, stop_on_signals

    # a first Ctrl-C / SIGTERM / SIGHUP ends the loop after the current chunk and the video is closed with
    # the frames written so far; a second aborts without a file (interrupts.py; not under torchrun)
    with stop_on_signals(enabled=not cp.distributed, what=str(out)) as stop:
        with open_video_writer(out, fps) if cp.is_main else contextlib.nullcontext() as writer:
            sink = (
                BackgroundFrameWriter(writer, max_frames=num_frames, on_written=chunk_written)
                if cp.is_main
                else contextlib.nullcontext()
            )
            with sink:
                for i in range(num_chunks):
                    r = pipe.generate(i)
                    if cp.is_main:
                        sink.submit(r)
                    del r  # the writer thread holds the chunk until it is written
                    if stop.requested:
                        break
                    pipe.finalize(i)
    if stop.requested:
        return report_stop(stop, sink.frames_written, writer.path, writer.committed, say)
    total = time.perf_counter() - start
    if cp.is_main:
        written = sink.frames_written
        first_frame_s = marks[1] - start if len(marks) > 1 else total
        say(
            f"wrote {written} frames to {writer.path} in {total:.2f} s ({written / total:.1f} frames/s, "
            f"first frames after {first_frame_s:.2f} s)"
        )
    return 0


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
