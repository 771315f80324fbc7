"""Python API: one video from a ``VideoRequest``, the same path the command line runs.

    from wan_core.api import generate_video
    from wan_core.rollout.request import VideoRequest

    generate_video(
        VideoRequest("self-forcing-1.3b", prompt="a red fox running through snow", frames=81, output="fox.mp4"),
        models_dir="./models",
    )

The request is validated first (``VideoRequest.validate``: a ``RequestError`` in Python keyword
names), before any model file is opened and before the output folder is made; then the start image is
read, the model files are found (or downloaded), the text is encoded, the pipeline is built and the
chunks are written as they are made.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .rollout.request import PYTHON_WORDS, RequestError, ValidatedRequest, VideoRequest, Words

__all__ = [
    "RunOptions",
    "RunResult",
    "generate_video",
    "run_video",
    "load_start_image",
    "check_attention",
    "ATTENTION_CHOICES",
    "DTYPES",
]

DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


ATTENTION_CHOICES = ("auto", "sdpa", "sage", "flash")  # wan_core.attention's BACKENDS and auto


@dataclass(frozen=True)
class RunOptions:
    """How to run a request (not what the video is): model files, devices, precision, speed switches.
    ``None`` for a speed switch = the pipeline's default (on for CUDA)."""

    models_dir: str | os.PathLike
    decoder: str = "vae"  # "vae" | "taehv"
    download: bool = False
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str | None = None  # bf16 | fp16 | fp32; default bf16 on CUDA, fp32 on CPU
    text_encoder_device: str = "auto"  # auto (the generation device) | cpu
    attention: str = "auto"
    cuda_graphs: bool | None = None
    compile: bool | None = None
    overlap_decode: bool | None = None
    fp8_linear: bool = False
    weights: str = "auto"  # the DiT's weight set in a training checkpoint: auto | generator | generator_ema


@dataclass(frozen=True)
class RunResult:
    """What a run wrote: ``frames`` in the file; ``exit_code`` as the command line reports it (0: the
    whole video; 130: stopped by a signal, the frames so far are a complete file; 3: stopped before the
    first frame, no file; see ``rollout/interrupts.py``)."""

    frames: int
    exit_code: int = 0


def generate_video(request: VideoRequest, *, models_dir: str | os.PathLike, say=print, **options) -> int:
    """Validate ``request``, then make the video and write it to ``request.output``; returns the number
    of frames written. ``options``: the fields of ``RunOptions``."""
    valid = request.validate(words=PYTHON_WORDS)
    if valid.prompt is None:
        raise RequestError(
            "prompt", None, "the video needs a prompt", None, "give prompt='...'", "api.prompt", PYTHON_WORDS
        )
    if valid.output is None or valid.num_frames is None:
        raise RequestError(
            "output" if valid.output is None else "endless",
            None,
            "generate_video writes a video file of a known length",
            None,
            "give output='video.mp4' and frames or chunks",
            "api.output",
            PYTHON_WORDS,
        )
    return run_video(valid, RunOptions(models_dir, **options), say=say).frames


def load_start_image(valid: ValidatedRequest, words: Words = PYTHON_WORDS):
    """The request's start image as ``[1, 3, H, W]`` in [-1, 1] at the video's size (a file is read and
    resized here), or None. A file that cannot be read is a ``RequestError`` on ``image``."""
    image = valid.image
    if image is None or hasattr(image, "shape"):
        return image
    import numpy as np
    import torch
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(image) as img:
            img = img.convert("RGB").resize((valid.width, valid.height), Image.BICUBIC)
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise RequestError(
            "image", str(image), f"cannot be read as an image ({type(e).__name__}: {e})", None,
            "give a PNG / JPEG / WebP file", "image.unreadable", words,
        ) from None  # fmt: skip
    x = torch.from_numpy(np.asarray(img).copy()).float().div(127.5).sub(1)  # [H, W, 3] in [-1, 1]
    return x.permute(2, 0, 1)[None]


def check_attention(name: str, device, *, option: str = "attention") -> str:
    """The attention backend ``name`` (auto / sdpa / sage / flash) resolves to on ``device``, checked
    before any model file is looked up; ``ValueError`` naming ``option`` when it is unknown or not
    usable there (sage / flash need CUDA and their package)."""
    from .attention import resolve_backend

    if not isinstance(name, str):
        raise ValueError(f"{option} {name!r}: must be one of {' / '.join(ATTENTION_CHOICES)}")
    try:
        return resolve_backend(name, device)
    except ValueError as e:
        raise ValueError(f"{option} {name!r}: {e}") from None


def run_video(
    valid: ValidatedRequest, options: RunOptions, *, say=print, words: Words = PYTHON_WORDS
) -> RunResult:
    """Make and write a validated request's video (see the module docstring). The device (and FP8
    support where asked) is checked before anything is read or loaded."""
    from .devices import resolve_device
    from .parallel import shutdown
    from .parallel.launch import init_context_parallel

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world != valid.gpus:
        raise RequestError(
            "gpus", valid.gpus, f"this process group has {world} processes", world,
            f"use {{gpus}} {world}", "gpus.world", words,
        )  # fmt: skip
    device = resolve_device(options.device, option=words["device"])
    check_attention(options.attention, device, option=words["attention"])
    image = load_start_image(valid, words)
    cp = init_context_parallel(valid.context_parallel)  # joins the torchrun group when WORLD_SIZE > 1
    if cp.distributed:
        device = cp.device
    if options.fp8_linear:
        from .fp8_linear import check_fp8_support

        check_fp8_support(device)
    try:
        return _generate(valid, options, image, device, cp, say)
    finally:
        shutdown()


def _embed_prompts(valid: ValidatedRequest, options: RunOptions, files, device, say):
    """UMT5 embeddings of the text prompts (main, switches, negative); embeddings pass through."""
    import torch

    from .rollout.loading import encode_text
    from .rollout.presets import DEFAULT_NEGATIVE_PROMPT

    negative = None
    if not valid.preset.is_autoregressive:
        negative = DEFAULT_NEGATIVE_PROMPT if valid.negative_prompt is None else valid.negative_prompt
    items: list[Any] = [valid.prompt, *valid.prompt_switches.values(), negative]
    texts = [x for x in items if isinstance(x, str)]
    t0 = time.perf_counter()
    text_device = torch.device("cpu") if options.text_encoder_device == "cpu" else device
    encoded = iter(
        [e.to(device) for e in encode_text(files["text_encoder"], texts, device=text_device)] if texts else []
    )  # fp32 [L, 4096] each
    embs = [
        None if x is None else (next(encoded)[None] if isinstance(x, str) else x.to(device)) for x in items
    ]
    if texts:
        say(f"text encoded on {text_device} in {time.perf_counter() - t0:.2f} s")
    switches = dict(zip(valid.prompt_switches, embs[1:-1]))
    return embs[0], switches, embs[-1]


def _generate(valid: ValidatedRequest, options: RunOptions, image, device, cp, say) -> RunResult:
    import torch

    from .parallel.parallelize import parallelize_pipeline
    from .rollout.frame_writer import BackgroundFrameWriter
    from .rollout.interrupts import report_stop, stop_on_signals
    from .rollout.loading import build_pipeline, resolve_files
    from .rollout.video_io import open_video_writer

    say = say if cp.is_main else (lambda *a, **k: None)  # only rank 0 talks and writes
    preset = valid.preset
    dtype = getattr(torch, DTYPES[options.dtype]) if options.dtype else None
    num_frames, fps = valid.num_frames, valid.fps
    files = resolve_files(preset, options.models_dir, decoder=options.decoder, download=options.download)
    say(
        f"preset {preset.name}: {valid.width}x{valid.height}, {num_frames} frames @ {fps} fps, device {device}"
    )
    for role, path in files.items():
        say(f"  {role:14s} {path}")
    emb_main, emb_switch, emb_neg = _embed_prompts(valid, options, files, device, say)

    t0 = time.perf_counter()
    pipe = build_pipeline(
        preset,
        files,
        device=device,
        dtype=dtype,
        decoder=options.decoder,
        attention=options.attention,
        cuda_graphs=options.cuda_graphs,
        compile=options.compile,
        overlap_decode=options.overlap_decode,
        rope=valid.rope,
        fp8_linear=options.fp8_linear,
        weights=options.weights,
    )
    if pipe.fp8_report is not None:
        say(pipe.fp8_report.summary())
    pipe = parallelize_pipeline(pipe, valid.context_parallel, cp)  # identity on one process
    say(
        f"models loaded in {time.perf_counter() - t0:.2f} s "
        f"(cuda graphs {'on' if pipe.cuda_graphs else 'off'}, compile {'on' if pipe.compiled else 'off'}, "
        f"decode overlap {'on' if pipe.overlap_decode else 'off'}; DiT weights: "
        f"{getattr(pipe.dit, 'weight_set', '?')})"
    )
    noise = {} if valid.noise is None else {"noise": valid.noise}
    pipe.initialize_cache(
        emb_main,
        image,
        height=valid.height,
        width=valid.width,
        **valid.length,
        seed=valid.seed,
        negative_prompt=emb_neg,
        prompt_switches=emb_switch,
        **noise,
    )

    out = Path(valid.output)
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
    # DiT work: nothing here waits for the GPU (the decode runs on a side stream, ``overlap_decode``).
    # A first Ctrl-C / SIGTERM / SIGHUP ends the loop after the current chunk and the video is closed with
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
        frames = sink.frames_written
        return RunResult(frames, report_stop(stop, frames, writer.path, writer.committed, say))
    total = time.perf_counter() - start
    written = 0
    if cp.is_main:
        written = sink.frames_written
        first_frame_s = marks[1] - start if len(marks) > 1 else total
        say(
            f"wrote {written} frames to {writer.path} in {total:.2f} s ({written / total:.1f} frames/s, "
            f"first frames after {first_frame_s:.2f} s)"
        )
    return RunResult(written)
