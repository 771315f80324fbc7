"""``python -m wan_core live``: the live stream without ComfyUI. Prompts come from standard input (one
line = a new prompt from the next chunk, blended over ``--transition`` chunks); the video is written
to ``--out`` as it goes (``.<name>.<pid>.partial``, renamed over ``--out`` when closed) and closed on
end of input, ``--max-chunks`` or a first Ctrl-C / SIGTERM / SIGHUP (the frames so far kept; a second
one aborts without a file, as ``generate``).
"""

from __future__ import annotations

import sys
import threading
import time

__all__ = ["add_live_parser", "run_live_cli", "PROMPTS_KEPT"]

PROMPTS_KEPT = 16  # distinct prompt lines whose embeddings stay on the device


def add_live_parser(sub) -> None:
    from wan_core.rollout.presets import PRESETS

    live = sorted(n for n, p in PRESETS.items() if p.is_autoregressive)
    p = sub.add_parser("live", help="an endless video steered by prompts on standard input")
    p.add_argument("--preset", required=True, choices=live, metavar="PRESET", help="an autoregressive preset")
    p.add_argument("--prompt", required=True, help="the first prompt")
    p.add_argument("--models-dir", required=True)
    p.add_argument("--download", action="store_true")
    p.add_argument("--out", default="live.mp4", help=".mp4 (PyAV; an endless stream cannot be a .webp)")
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--decoder", choices=("vae", "taehv"), default="taehv")
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--max-chunks", type=int, default=None, help="stop after this many chunks (default: at EOF)"
    )
    p.add_argument("--transition", type=int, default=0, help="blend each new prompt in over N chunks")
    p.add_argument("--interpolation", choices=("linear", "slerp"), default="linear")


def _read_prompts(stream, control, transition: int, say, end_of_input: threading.Event) -> None:
    """One line = a new prompt; end of input = stop after the current chunk (``end_of_input``, polled
    between chunks like a signal). Refused lines are reported, the stream goes on."""
    from .control import SteeringError

    for line in stream:
        if not line.strip():
            continue
        try:
            req = control.set_prompt(line.rstrip("\r\n"), transition)
            say(f"prompt {req.text[:60]!r} from chunk {req.applies_from_chunk + 1}", flush=True)
        except SteeringError as e:
            say(f"prompt refused: {e}", flush=True)
            if e.code in ("ended", "stopping"):
                return
    end_of_input.set()


def _refuse_webp(out) -> None:
    """An animated WebP is one RIFF chunk with a 32-bit size (at most 4 GiB) and is written at close:
    an endless stream past that size would lose the whole video, so the live CLI writes .mp4 only."""
    if str(out).lower().endswith(".webp"):
        raise ValueError(
            f"--out {out}: a live stream cannot be written as .webp (an animated WebP is at most 4 GiB and "
            "is only written when it closes, so an endless stream could lose the whole video); use .mp4 "
            "for endless streams"
        )


def run_live_cli(args, stdin=None, say=print) -> int:
    import torch

    from wan_core.devices import resolve_device
    from wan_core.rollout.frame_writer import BackgroundFrameWriter
    from wan_core.rollout.interrupts import report_stop, stop_on_signals
    from wan_core.rollout.loading import build_pipeline, resolve_files
    from wan_core.rollout.request import CLI_WORDS, RequestError, VideoRequest
    from wan_core.rollout.video_io import open_video_writer
    from wan_core.text import encode_prompts, load_tokenizer, load_umt5

    from .control import LiveControl
    from .loop import LiveLoop
    from .prompt_cache import EncodedPrompts

    _refuse_webp(args.out)
    valid = VideoRequest(
        preset=args.preset, prompt=args.prompt, width=args.width, height=args.height, endless=True,
        seed=args.seed, output=args.out,
    ).validate(words=CLI_WORDS)  # fmt: skip
    if args.max_chunks is not None and args.max_chunks < 1:
        raise RequestError(
            "chunks", args.max_chunks, "--max-chunks must be at least 1", 1, "omit it to stop at EOF",
            "live.max_chunks", CLI_WORDS,
        )  # fmt: skip
    if not 0 <= args.transition <= LiveControl().limits.max_transition_chunks:
        raise ValueError(f"--transition must be 0 .. {LiveControl().limits.max_transition_chunks}")
    device = resolve_device(args.device, option="--device")
    preset = valid.preset
    files = resolve_files(preset, args.models_dir, decoder=args.decoder, download=args.download)
    encoder = load_umt5(files["text_encoder"], device=device)  # resident: every new line is encoded at once
    tokenizer = load_tokenizer(files["text_encoder"])

    def encode_line(text: str) -> torch.Tensor:  # [1, L, 4096] on the device
        return encode_prompts(encoder, tokenizer, [text])[0].float()[None].to(device)

    encode = EncodedPrompts(encode_line, capacity=PROMPTS_KEPT)  # bounded: the stream has no end

    pipe = build_pipeline(preset, files, device=device, decoder=args.decoder, rope="auto")
    context = encode(valid.prompt)
    pipe.start_video(context, height=valid.height, width=valid.width, seed=valid.seed)
    try:
        pipe.scheme.check_switch(1)
        refusal = None
    except ValueError as e:
        refusal = str(e)
        say(f"note: {refusal}; input lines are refused (end of input still stops)")
    control = LiveControl(switch_refusal=refusal)
    end_of_input = threading.Event()
    reader = threading.Thread(
        target=_read_prompts,
        args=(stdin or sys.stdin, control, args.transition, say, end_of_input),
        daemon=True,
    )
    say(
        f"live {preset.name} {valid.width}x{valid.height} @ {valid.fps} fps -> {args.out}; one line = a new prompt"
    )
    start = time.perf_counter()
    with stop_on_signals(what=str(args.out)) as stop:

        def poll() -> None:  # between chunks: a signal or the end of input stops after the chunk made
            if (stop.requested or end_of_input.is_set()) and not control.stop_requested:
                control.stop()

        with open_video_writer(args.out, valid.fps) as writer, BackgroundFrameWriter(writer) as sink:
            loop = LiveLoop(
                pipe, control, encode, on_chunk=sink.submit, interpolation=args.interpolation,
                max_chunks=args.max_chunks, poll=poll,
                on_prompt=lambda a: say(f"chunk {a.chunk + 1}: {a.text[:60]!r} weight {a.weight:.2f}", flush=True),
            )  # fmt: skip
            reader.start()
            result = loop.run(context)
    frames = sink.frames_written
    if stop.requested:
        return report_stop(stop, frames, writer.path, writer.committed, say)
    took = time.perf_counter() - start
    if not writer.committed:
        say(f"ended ({result.ended_by}) before the first chunk: no video written")
        return 3
    say(
        f"wrote {frames} frames ({result.chunks} chunks, ended by {result.ended_by}) to {writer.path} in {took:.1f} s"
    )
    return 0
