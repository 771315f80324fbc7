"""One video request, checked once before any model loads or any file is written.

``VideoRequest`` holds what a caller asks for (preset, size, length, seed or noise, window, sink,
RoPE, prompts and prompt switches, start image, steps, guidance, fps, output file, multi-GPU
settings); ``VideoRequest.validate`` is the only place these are checked. It returns a
``ValidatedRequest`` (the preset resolved with its overrides, the latent frames and chunks, the
switches as a sorted mapping) or raises one ``RequestError`` naming the field, the value, the rule
and the valid value nearest to it, in the words of the interface in use (``Words``: CLI flags, node
inputs or Python keywords).

Sourced limits used here:
- the Wan VAE makes ``1 + 4 k`` pixel frames from ``k + 1`` latent frames (temporal stride 4);
- sizes are multiples of VAE stride x DiT patch: 8 x 2 = 16 (Wan 2.1 VAE), 16 x 2 = 32 (Wan 2.2 VAE);
- the DiT's RoPE table has ``rope_max_positions`` = 1024 positions per axis (official
  ``rope_params(1024, ...)``): absolute positions end at latent frame 1024;
- Ulysses context parallelism splits the attention heads (heads % processes == 0); both modes split
  every latent frame's tokens (tokens per frame % processes == 0).

Lengths: ``frames`` (pixel frames, 1 + 4k), ``chunks`` (autoregressive presets: chunks of the
preset's latent frames) or ``endless`` (autoregressive presets: no length, the caller stops).
Without any of them the preset's default frame count is used. A few-step preset whose latent frames
do not fill the last chunk generates a shorter last chunk; Rolling Forcing denoises whole chunks
only, so there the frames must fill whole chunks.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .output_path import VIDEO_EXTENSIONS as _WRITTEN_EXTENSIONS
from .output_path import OutputPathError, check_output_path
from .presets import PRESETS, RolloutPreset

__all__ = [
    "VideoRequest",
    "ValidatedRequest",
    "RequestError",
    "Seconds",
    "Words",
    "PYTHON_WORDS",
    "CLI_WORDS",
    "VIDEO_EXTENSIONS",
    "ROPE_CHOICES",
    "CONTEXT_PARALLEL_MODES",
    "check_prompt",
    "check_prompt_schedule",
    "nearest_multiple",
    "nearest_frame_count",
]

VIDEO_EXTENSIONS = tuple(_WRITTEN_EXTENSIONS)  # what ``video_io.open_video_writer`` writes
ROPE_CHOICES = ("auto", "absolute", "relative")
CONTEXT_PARALLEL_MODES = ("ulysses", "ring")
SEED_LIMIT = 2**64  # ComfyUI's seed widget range: 0 .. 2**64 - 1
DEFAULT_ROPE_POSITIONS = 1024  # WanDiTConfig.rope_max_positions of every Wan DiT
MAX_STEPS = 1000  # flow-matching training timesteps
MIN_FPS, MAX_FPS = 0.001, 1000  # the writers' range: a WebP frame lasts a whole number of ms


# -- interface words ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Words:
    """How one interface names the request's fields (``names``: field -> word), what it puts in front
    of its messages (``prefix``, e.g. a node's display name), interface-specific advice (``hints``:
    placeholder -> text) and which rules it reports as warnings instead of errors (``warn_only``: rule
    ids; used where refusing would break saved ComfyUI workflows)."""

    prefix: str = ""
    names: Mapping[str, str] = field(default_factory=dict)
    hints: Mapping[str, str] = field(default_factory=dict)
    warn_only: frozenset = frozenset()

    def __getitem__(self, key: str) -> str:
        if key in self.names:
            return self.names[key]
        return self.hints.get(key, key)

    def vocabulary(self) -> dict[str, str]:
        """Every placeholder this interface fills: field names and hints (for comparing messages)."""
        return {**self.hints, **self.names}


class _Placeholders(dict):
    def __init__(self, words: Words):
        super().__init__()
        self.words = words

    def __missing__(self, key: str) -> str:
        return self.words[key]


PYTHON_WORDS = Words(
    hints={
        "size_fix": "resize the image or set width / height to its size",
        "length_fix": "frames or chunks",
        "image_fix": "image=[B, 3, H, W] in [-1, 1]",
    }
)

CLI_WORDS = Words(
    names={
        "preset": "--preset",
        "prompt": "--prompt",
        "prompt_switches": "--prompt-switch",
        "negative_prompt": "--negative-prompt",
        "image": "--image",
        "width": "--width",
        "height": "--height",
        "frames": "--frames",
        "chunks": "--chunks",
        "endless": "endless",
        "seed": "--seed",
        "window": "--window",
        "sink": "--sink",
        "rope": "--rope",
        "steps": "--steps",
        "guidance": "--guidance",
        "fps": "--fps",
        "output": "--out",
        "device": "--device",
        "attention": "--attention",
        "gpus": "torchrun --nproc_per_node",
        "context_parallel": "--context-parallel",
    },
    hints={
        "size_fix": "the image is resized to --width x --height",
        "length_fix": "--frames or --chunks",
        "image_fix": "--image PATH",
    },
)


class RequestError(ValueError):
    """A request that cannot run: ``field`` (canonical name), ``value`` (as given), ``rule`` and ``valid``
    (a valid value nearest to it, or what to do), ``code`` (a stable id of the rule). ``str(e)`` is the
    message in the words of the interface that validated it; ``render(words)`` in other words."""

    def __init__(self, field: str, value: Any, rule: str, valid: Any, advice: str, code: str, words: Words):
        self.field, self.value, self.valid, self.code = field, value, valid, code
        self._rule, self._advice = rule, advice
        self.words = words
        self.rule = self._fill(rule, words)
        super().__init__(self.render(words))

    @staticmethod
    def _fill(text: str, words: Words) -> str:
        return text.format_map(_Placeholders(words))

    def render(self, words: Words) -> str:
        shown = _show(self.value)
        head = f"{words.prefix}{words[self.field]}" + (f" {shown}" if shown else "")
        return f"{head}: {self._fill(self._rule, words)}; {self._fill(self._advice, words)}"

    def __reduce__(self):  # picklable across worker processes
        return (
            RequestError,
            (self.field, self.value, self._rule, self.valid, self._advice, self.code, self.words),
        )


def _as_time(start) -> str:
    return str(start) if isinstance(start, Seconds) else f"chunk {start}"


def _show(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Seconds):
        return str(value)
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (int, float, Path)):
        return str(value)
    return type(value).__name__


# -- helpers: nearest valid values ---------------------------------------------------------------------
def nearest_multiple(value: int, step: int) -> int:
    """The multiple of ``step`` nearest to ``value``, never below ``step`` (ties go down)."""
    if value <= step:
        return step
    q, r = divmod(value, step)
    return q * step if 2 * r <= step else (q + 1) * step


def nearest_frame_count(frames: int, temporal_stride: int = 4) -> int:
    """The frame count of the form ``1 + stride k`` nearest to ``frames`` (at least 1; ties go down)."""
    if frames <= 1:
        return 1
    lower = (frames - 1) // temporal_stride * temporal_stride + 1
    return lower if frames - lower <= lower + temporal_stride - frames else lower + temporal_stride


def _pixel_frames(latent_frames: int, temporal_stride: int) -> int:
    return 1 + temporal_stride * (latent_frames - 1)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# -- prompt switches in seconds ---------------------------------------------------------------------------
@dataclass(frozen=True, order=True)
class Seconds:
    """A prompt switch's start as a time in the video (``Seconds.parse("2.5")``; written ``2.5s``).

    ``validate`` turns it into the first chunk that starts at or after that time, with the preset's
    latent frames per chunk, the VAE's temporal stride and the video's fps: chunk ``k >= 1`` starts
    at pixel frame ``1 + stride (k n - 1)`` (latent frame ``k n``), chunk 0 at frame 0. Exact
    (``Fraction``): ``5s`` at 16 fps is frame 80, never 79.99."""

    value: Fraction

    @staticmethod
    def parse(text: str) -> Seconds | None:
        """``"2.5"`` / ``"5"`` (digits, at most one ``.``) -> ``Seconds``; anything else -> None."""
        digits = text.replace(".", "", 1)
        if not digits.isdecimal() or text.startswith(".") or text.endswith("."):
            return None
        return Seconds(Fraction(text))

    def __str__(self) -> str:
        return f"{float(self.value):g}s"


def _chunk_start_frame(k: int, n: int, stride: int) -> int:
    return 0 if k == 0 else 1 + stride * (k * n - 1)


def _seconds(frame: int, fps) -> str:
    return f"{float(Fraction(frame) / Fraction(fps)):.3g}s"


def _sort_key(item) -> tuple:
    start = item[0]
    return (1, start.value) if isinstance(start, Seconds) else (0, start)


# -- the request ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VideoRequest:
    """What one video should be. ``None`` means "the preset's default" (never a zero).

    ``preset``: a preset name (``PRESETS``) or a ``RolloutPreset``. ``prompt`` / switch prompts /
    ``negative_prompt``: text, or UMT5 embeddings ``[B, L, 4096]``. ``prompt_switches``: ``{chunk:
    prompt}`` or ``[(chunk, prompt), ...]`` (a prompt that takes over from that chunk; chunk 0 is the
    main prompt's); a start may also be a time in the video, ``Seconds``, turned into a chunk here. ``image``: ``[B, 3, H, W]`` in [-1, 1], or a file path (read by the caller).
    ``window`` / ``sink``: latent frames of the rolling KV cache (window counts the current chunk).
    ``gpus``: processes sharing the DiT's tokens; ``context_parallel``: ``"ulysses"`` | ``"ring"`` when
    ``gpus`` > 1. ``output``: the video file the caller writes (``.mp4`` / ``.webp``), if any.
    """

    preset: str | RolloutPreset
    prompt: Any = None
    width: int | None = None
    height: int | None = None
    frames: int | None = None
    chunks: int | None = None
    endless: bool = False
    seed: int | None = None
    noise: Any = None
    window: int | None = None
    sink: int | None = None
    rope: str = "auto"
    prompt_switches: Any = None
    image: Any = None
    steps: int | None = None
    guidance: float | None = None
    negative_prompt: Any = None
    fps: float | None = None  # whole or fractional
    output: str | os.PathLike | None = None
    gpus: int = 1
    context_parallel: str | None = None

    def validate(
        self,
        preset: RolloutPreset | None = None,
        dit_config: Any = None,
        *,
        words: Words = PYTHON_WORDS,
        check_output: bool = True,
    ) -> ValidatedRequest:
        """The request normalized, or a ``RequestError`` (see the module docstring).

        ``preset``: the preset to check against (default: ``self.preset``, looked up by name).
        ``dit_config``: the loaded DiT's config (``rope_max_positions``, ``num_heads``), if known.
        ``check_output``: check ``output`` on disk (folder creatable, writable); the only file access.
        """
        return _Validation(self, preset, dit_config, words, check_output).run()


@dataclass(frozen=True)
class ValidatedRequest:
    """A request that passed ``VideoRequest.validate``, with every default filled in."""

    request: VideoRequest
    preset: RolloutPreset  # with the request's overrides (window, sink, steps, guidance)
    overrides: tuple  # ((name, value), ...) applied to the table's preset, sorted
    width: int
    height: int
    num_frames: int | None  # pixel frames; None: endless
    num_latent_frames: int | None
    num_chunks: int | None  # None: endless
    seed: int
    noise: Any
    rope: str  # as asked ("auto" | "absolute" | "relative")
    rope_mode: str | None  # what it resolves to for this video (autoregressive presets), else None
    prompt: Any
    prompt_switches: Mapping  # chunk -> prompt, sorted by chunk
    image: Any
    negative_prompt: Any
    fps: float
    output: Path | None
    gpus: int
    context_parallel: str | None  # None on one process
    warnings: tuple[str, ...] = ()
    switch_chunks: tuple[int, ...] = ()  # the chunk of each given prompt switch, in the order given

    @property
    def length(self) -> dict:
        """``num_frames`` / ``num_chunks`` as the pipeline takes them (the one the request gave)."""
        if self.request.chunks is not None:
            return {"num_frames": None, "num_chunks": self.num_chunks}
        return {"num_frames": self.num_frames, "num_chunks": None}


# -- the rules --------------------------------------------------------------------------------------------
class _Validation:
    def __init__(self, req: VideoRequest, preset, dit_config, words: Words, check_output: bool):
        self.req, self.words, self.check_output = req, words, check_output
        self.base = preset if preset is not None else self._preset(req.preset)
        self.cfg = dit_config
        self.max_positions = int(getattr(dit_config, "rope_max_positions", DEFAULT_ROPE_POSITIONS))
        self.warnings: list[str] = []

    # failures ------------------------------------------------------------------------------------------
    def fail(self, field: str, value, rule: str, valid, advice: str, code: str) -> bool:
        """Raise the broken rule, or (a ``warn_only`` rule) record it and return True: the caller then
        drops the value, as the interface did before the rule existed."""
        err = RequestError(field, value, rule, valid, advice, code, self.words)
        if code in self.words.warn_only:
            self.warnings.append(str(err))
            return True
        raise err

    def _preset(self, preset) -> RolloutPreset:
        if isinstance(preset, RolloutPreset):
            return preset
        if preset in PRESETS:
            return PRESETS[preset]
        import difflib

        near = difflib.get_close_matches(str(preset), list(PRESETS), n=1, cutoff=0.0)
        raise RequestError(
            "preset",
            preset,
            "unknown preset",
            near[0] if near else None,
            f"nearest: {near[0] if near else ''} (known: {', '.join(PRESETS)})",
            "preset.unknown",
            self.words,
        )

    # the order: what the video is, then how it is made, then where it goes
    def run(self) -> ValidatedRequest:
        p = self.base
        ar = p.is_autoregressive
        self.rolling = p.sampler == "rolling_forcing"
        self._prompt()
        width, height = self._size()
        frames, latent, chunks = self._length()
        seed = self._seed()
        preset, overrides = self._cache(frames, latent)
        rope_mode = self._rope(preset, latent)
        overrides += self._sampling()
        overrides = tuple(sorted(overrides))
        if overrides:
            preset = p.with_overrides(**dict(overrides))
        switches, switch_chunks = self._switches(chunks, latent)
        self._image(width, height)
        fps = self._fps()
        output = self._output()
        gpus, mode = self._parallel(width, height)
        return ValidatedRequest(
            request=self.req,
            preset=preset,
            overrides=overrides,
            width=width,
            height=height,
            num_frames=frames,
            num_latent_frames=latent,
            num_chunks=chunks,
            seed=seed,
            noise=self.req.noise,
            rope=self.req.rope,
            rope_mode=rope_mode if ar else None,
            prompt=self.req.prompt,
            prompt_switches=MappingProxyType(switches),
            image=self.req.image,
            negative_prompt=self.req.negative_prompt,
            fps=fps,
            output=output,
            gpus=gpus,
            context_parallel=mode,
            warnings=tuple(self.warnings),
            switch_chunks=switch_chunks,
        )

    def _prompt(self) -> None:
        check_prompt(self.req.prompt, self.words, self.fail)

    def _size(self) -> tuple[int, int]:
        p = self.base
        st_h, st_w = p.vae_stride[1] * p.patch_size[1], p.vae_stride[2] * p.patch_size[2]
        width = p.width if self.req.width is None else self.req.width
        height = p.height if self.req.height is None else self.req.height
        fix_w, fix_h = nearest_multiple(_as_int(width), st_w), nearest_multiple(_as_int(height), st_h)
        for name, value, step, fixed in (("width", width, st_w, fix_w), ("height", height, st_h, fix_h)):
            if not _is_int(value) or value <= 0 or value % step:
                stride = p.vae_stride[2 if name == "width" else 1]
                self.fail(
                    name,
                    value,
                    f"must be a positive multiple of {step} (VAE stride {stride} x patch {step // stride} "
                    f"of preset {p.name})",
                    fixed,
                    f"nearest valid {{{name}}}: {fixed} (size {fix_w}x{fix_h})",
                    "size.multiple",
                )
        return width, height

    def _length(self) -> tuple[int | None, int | None, int | None]:
        """(pixel frames, latent frames, chunks); None for an endless video."""
        p, req = self.base, self.req
        ts = p.vae_stride[0]
        ar = p.is_autoregressive
        n = p.frames_per_chunk
        given = [k for k in ("frames", "chunks") if getattr(req, k) is not None] + (
            ["endless"] if req.endless else []
        )
        if len(given) > 1:
            self.fail(
                given[1], getattr(req, given[1]) if given[1] != "endless" else None,
                f"the length is given twice ({' and '.join('{' + g + '}' for g in given)})",
                None, "give one of them", "length.twice",
            )  # fmt: skip
        if req.chunks is not None:
            chunks = req.chunks
            if not ar:
                self.fail(
                    "chunks", chunks,
                    f"preset {p.name} generates the whole video at once, in one chunk",
                    None, "leave {chunks} out and choose the length with {frames}", "chunks.whole_video",
                )  # fmt: skip
            if not _is_int(chunks) or chunks < 1:
                self.fail(
                    "chunks", chunks, "must be 1 or more", 1, "nearest valid {chunks}: 1", "chunks.range"
                )
            latent = chunks * n
            return _pixel_frames(latent, ts), latent, chunks
        if req.endless:
            if not ar:
                self.fail(
                    "endless", None, f"preset {p.name} generates the whole video at once: it needs a length",
                    None, "give {length_fix}", "endless.whole_video",
                )  # fmt: skip
            return None, None, None
        frames = p.default_frames if req.frames is None else req.frames
        if not _is_int(frames) or frames < 1:
            self.fail(
                "frames", frames, f"must be 1 or more, of the form 1 + {ts}k", 1, "use 1, 5, 9, ... frames (nearest: 1)",
                "frames.range",
            )  # fmt: skip
        if (frames - 1) % ts:
            fixed = nearest_frame_count(frames, ts)
            lower = (frames - 1) // ts * ts + 1
            self.fail(
                "frames",
                frames,
                f"{frames} frames do not fit the Wan VAE, which makes 1 + {ts}k frames (1 for the first "
                f"latent frame, {ts} for each next one)",
                fixed,
                f"use {lower} or {lower + ts} frames (nearest: {fixed})",
                "frames.vae",
            )
        latent = (frames - 1) // ts + 1
        if not ar:
            if latent > self.max_positions:
                most = _pixel_frames(self.max_positions, ts)
                self.fail(
                    "frames", frames,
                    f"{latent} latent frames exceed the DiT's {self.max_positions}-position RoPE table "
                    f"(preset {p.name} attends to the whole video at once)",
                    most, f"at most {most} {{frames}}", "frames.rope_table",
                )  # fmt: skip
            return frames, latent, 1
        if self.rolling and latent % n:
            lo = max(n, latent // n * n)
            hi = lo + n if lo < latent else lo
            lo_f, hi_f = _pixel_frames(lo, ts), _pixel_frames(hi, ts)
            fixed = lo_f if frames - lo_f <= hi_f - frames else hi_f
            self.fail(
                "frames",
                frames,
                f"Rolling Forcing denoises whole chunks of {n} latent frames, and {frames} frames are "
                f"{latent} latent frames, not a multiple of {n}",
                fixed,
                f"use {lo_f} or {hi_f} frames (nearest: {fixed}), or give {{chunks}}",
                "frames.whole_chunks",
            )
        return frames, latent, math.ceil(latent / n)

    def _seed(self) -> int:
        req = self.req
        if req.noise is not None and req.seed is not None:
            self.fail(
                "seed", req.seed, "a noise source is given, so the seed would not be used", None,
                "give the seed or the noise, not both", "seed.with_noise",
            )  # fmt: skip
        seed = 0 if req.seed is None else req.seed
        if not _is_int(seed) or not 0 <= seed < SEED_LIMIT:
            fixed = min(max(_as_int(seed), 0), SEED_LIMIT - 1)
            self.fail(
                "seed", seed, f"must be a whole number from 0 to {SEED_LIMIT - 1}", fixed,
                f"nearest valid {{seed}}: {fixed}", "seed.range",
            )  # fmt: skip
        return seed

    def _cache(self, frames, latent) -> tuple[RolloutPreset, list]:
        """Window and sink: the preset with them applied, and the overrides."""
        p, req = self.base, self.req
        n = p.frames_per_chunk
        over = []
        given = {"window": req.window, "sink": req.sink}
        for name, value in given.items():
            if value is None:
                continue
            if not p.is_autoregressive:
                given[name] = None  # reached only where the rule warns: the value is not used
                self.fail(
                    name, value,
                    f"preset {p.name} generates the whole video at once; every frame attends to every frame",
                    None, f"leave {{{name}}} out", f"{name}.whole_video",
                )  # fmt: skip
            elif self.rolling:
                given[name] = None
                self.fail(
                    name, value,
                    f"Rolling Forcing attends to its own fixed window ({len(p.schedule)} chunks at staggered "
                    "noise levels, an anchor and the last clean frames)",
                    None, f"leave {{{name}}} out", f"{name}.rolling_forcing",
                )  # fmt: skip
        window, sink = given["window"], given["sink"]
        least = max(n, p.kv_recompute_frames + n if p.kv_recompute_frames else n)
        if window is not None:
            if not _is_int(window) or window < least:
                why = (
                    f"Krea's KV recompute rebuilds {p.kv_recompute_frames} context frames + a chunk of {n}"
                    if p.kv_recompute_frames
                    else f"the window counts the current chunk of {n} latent frames"
                )
                self.fail(
                    "window", window, f"must be at least {least} latent frames: {why}", least,
                    f"nearest valid {{window}}: {least}", "window.chunk",
                )  # fmt: skip
            over.append(("window_frames", window))
        if sink is not None:
            if not _is_int(sink) or sink < 0:
                self.fail(
                    "sink",
                    sink,
                    "must be 0 or more latent frames",
                    0,
                    "nearest valid {sink}: 0",
                    "sink.range",
                )
            if p.kv_recompute_frames and sink:
                dropped = self.fail(
                    "sink", sink, "Krea's KV recompute keeps no sink frames (it rebuilds the cache every chunk)",
                    0, "use {sink} 0 or leave it out", "sink.kv_recompute",
                )  # fmt: skip
                sink = None if dropped else sink
            if sink is not None:
                over.append(("sink_frames", sink))
        preset = p.with_overrides(**dict(over)) if over else p
        return preset, over

    def _rope(self, preset: RolloutPreset, latent: int | None) -> str | None:
        rope, p = self.req.rope, self.base
        if rope not in ROPE_CHOICES:
            self.fail(
                "rope", rope, f"must be one of {' / '.join(ROPE_CHOICES)}", "auto", "nearest valid {rope}: auto",
                "rope.choice",
            )  # fmt: skip
        if rope != "auto" and (not p.is_autoregressive or self.rolling):
            what = (
                "Rolling Forcing places its frames itself"
                if self.rolling
                else (f"preset {p.name} attends to the whole video at once at absolute positions")
            )
            self.fail("rope", rope, what, "auto", "leave {rope} at auto", "rope.unused")
        if not p.is_autoregressive or self.rolling:
            return None
        limit = self.max_positions
        mode = (
            rope if rope != "auto" else ("absolute" if latent is not None and latent <= limit else "relative")
        )
        if mode == "absolute" and (latent is None or latent > limit):
            most = _pixel_frames(limit, p.vae_stride[0])
            length = "an endless video" if latent is None else f"{latent} latent frames"
            self.fail(
                "rope",
                rope,
                f"absolute RoPE positions end at latent frame {limit} (the DiT's RoPE table), and this video has "
                f"{length}",
                "relative",
                f"use {{rope}} relative (unbounded length), or at most {most} {{frames}}",
                "rope.absolute_length",
            )
        span = preset.sink_frames + (preset.window_frames or 0)
        if mode == "relative" and span > limit:
            self.fail(
                "window", preset.window_frames,
                f"sink + window = {span} latent frames exceed the DiT's {limit}-position RoPE table",
                limit - preset.sink_frames, f"at most {limit - preset.sink_frames} {{window}}", "window.rope_table",
            )  # fmt: skip
        return mode

    def _sampling(self) -> list:
        """Steps and guidance (many-step presets): overrides of the preset."""
        from .schedulers import EulerSchedule

        p, req = self.base, self.req
        over = []
        if req.steps is not None:
            if p.is_autoregressive:
                self.fail(
                    "steps", req.steps,
                    f"preset {p.name} is a few-step model with its published step list "
                    f"({len(p.schedule)} steps)", None, "leave {steps} out", "steps.few_step",
                )  # fmt: skip
            if not _is_int(req.steps) or not 1 <= req.steps <= MAX_STEPS:
                fixed = min(max(_as_int(req.steps), 1), MAX_STEPS)
                self.fail(
                    "steps", req.steps, f"must be from 1 to {MAX_STEPS}", fixed, f"nearest valid {{steps}}: {fixed}",
                    "steps.range",
                )  # fmt: skip
            over.append(("euler", EulerSchedule(num_steps=req.steps, shift=p.euler.shift)))
        g = req.guidance
        if g is not None:
            if p.is_autoregressive:
                self.fail(
                    "guidance", g, f"preset {p.name} is a few-step model distilled without classifier-free "
                    "guidance", None, "leave {guidance} out", "guidance.few_step",
                )  # fmt: skip
            if isinstance(g, bool) or not isinstance(g, (int, float)) or not math.isfinite(g) or g < 0:
                self.fail(
                    "guidance", g, "must be a finite number >= 0 (1 = no guidance)", p.guidance_scale,
                    f"the preset's {{guidance}}: {p.guidance_scale}", "guidance.range",
                )  # fmt: skip
            over.append(("guidance_scale", float(g)))
            if p.guidance_scale_high is not None:
                over.append(("guidance_scale_high", float(g)))
        if req.negative_prompt is not None and p.is_autoregressive:
            self.fail(
                "negative_prompt", None,
                f"preset {p.name} uses no classifier-free guidance, so a negative prompt is not used",
                None, "leave {negative_prompt} empty", "negative_prompt.unused",
            )  # fmt: skip
        return over

    def _switches(self, chunks: int | None, latent: int | None) -> tuple[dict, tuple[int, ...]]:
        """(chunk -> prompt sorted, the chunk of each given switch in the order given)."""
        p, raw = self.base, self.req.prompt_switches
        pairs = list(raw.items()) if isinstance(raw, Mapping) else list(raw or ())
        if not pairs:
            return {}, ()
        first = pairs[0][0]
        if not p.is_autoregressive:
            self.fail(
                "prompt_switches", first,
                f"preset {p.name} generates the whole video at once, so it cannot switch prompts at chunks",
                None, "clear {prompt_switches} or pick an autoregressive preset (e.g. longlive-1.3b)",
                "switches.whole_video",
            )  # fmt: skip
        if self.rolling:
            self.fail(
                "prompt_switches", first, f"preset {p.name} (Rolling Forcing) has no prompt switches", None,
                "clear {prompt_switches} or pick another autoregressive preset (e.g. longlive-1.3b)",
                "switches.rolling_forcing",
            )  # fmt: skip
        if any(isinstance(start, Seconds) for start, _ in pairs):
            check_prompt_schedule(pairs, None, self.words, self.fail)  # 0s, the same time twice, empty
            pairs = self._seconds_to_chunks(pairs, chunks)
        return check_prompt_schedule(pairs, chunks, self.words, self.fail), tuple(c for c, _ in pairs)

    def _seconds_to_chunks(self, pairs: list, chunks: int | None) -> list:
        """Switch starts in ``Seconds`` -> chunk indices (``Seconds``' rule); a time past the video's
        last chunk and two starts on one chunk are refused here, in seconds."""
        p, fps = self.base, self._fps()
        n, ts = p.frames_per_chunk, p.vae_stride[0]
        every = f"chunks of {n} latent frames start every {_seconds(ts * n, fps)} at {fps:g} fps"
        out, given = [], {}
        for start, prompt in pairs:
            if isinstance(start, Seconds):
                frame = start.value * Fraction(fps)  # pixel frame, exact
                chunk = max(1, math.ceil(((frame - 1) / ts + 1) / n))
                if chunks is not None and chunk >= chunks:
                    last = _chunk_start_frame(chunks - 1, n, ts)
                    end = _pixel_frames(chunks * n, ts)
                    self.fail(
                        "prompt_switches", start,
                        f"the video is {_seconds(end, fps)} long ({end} frames at {fps:g} fps) and its last "
                        f"chunk starts at {_seconds(last, fps)}, so a switch at {start} would never be used",
                        Seconds(Fraction(last) / Fraction(fps)),
                        f"at most {_seconds(last, fps)} (chunk {chunks - 1}), or a longer video ({{length_fix}})",
                        "switches.past_end",
                    )  # fmt: skip
            else:
                chunk = start
            if chunk in given and given[chunk] != start:
                self.fail(
                    "prompt_switches", start,
                    f"the switches at {_as_time(given[chunk])} and {_as_time(start)} both start at chunk {chunk} "
                    f"(from {_seconds(_chunk_start_frame(chunk, n, ts), fps)}; {every})", None,
                    "keep one of them or move one to another chunk", "switches.duplicate",
                )  # fmt: skip
            given.setdefault(chunk, start)
            out.append((chunk, prompt))
        return out

    def _image(self, width: int, height: int) -> None:
        p, image = self.base, self.req.image
        if image is None:
            if p.task == "i2v":
                self.fail(
                    "image", None, f"preset {p.name} is image-to-video: it starts from an image", None,
                    "give {image_fix}", "image.required",
                )  # fmt: skip
            return
        if self.rolling or p.kv_recompute_frames:
            scheme = "Rolling Forcing" if self.rolling else "Krea's KV recompute"
            self.fail(
                "image", None, f"preset {p.name} ({scheme}) takes no start image", None,
                "leave {image} out or pick another preset", "image.unsupported",
            )  # fmt: skip
        shape = getattr(image, "shape", None)
        if shape is None:
            return  # a file: the caller reads it at the video's size
        if len(shape) not in (3, 4) or shape[-3] != 3:
            self.fail(
                "image", None, f"must be [B, 3, H, W] (or [3, H, W]) in [-1, 1], got {list(shape)}", None,
                "give {image_fix}", "image.shape",
            )  # fmt: skip
        ih, iw = int(shape[-2]), int(shape[-1])
        if (iw, ih) != (width, height):
            st_h, st_w = p.vae_stride[1] * p.patch_size[1], p.vae_stride[2] * p.patch_size[2]
            fix_w, fix_h = nearest_multiple(iw, st_w), nearest_multiple(ih, st_h)
            name, value, fixed = ("width", width, fix_w) if iw != width else ("height", height, fix_h)
            rule = f"the start image is encoded at {iw}x{ih}, but the video is set to {width}x{height}"
            if (fix_w, fix_h) != (iw, ih):  # the image's own size is no valid video size
                rule += (
                    f"; {iw}x{ih} is no valid size of preset {p.name} (multiples of {st_w} x {st_h}): "
                    f"resize the image to {fix_w}x{fix_h}"
                )
            self.fail(name, value, rule, fixed, f"use {fixed} ({{size_fix}})", "image.size")

    def _fps(self) -> float:
        fps = self.base.fps if self.req.fps is None else self.req.fps
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps <= 0:
            self.fail(
                "fps",
                fps,
                "must be above 0",
                self.base.fps,
                f"the preset's {{fps}}: {self.base.fps}",
                "fps.range",
            )
        if not MIN_FPS <= fps <= MAX_FPS:
            fixed = min(max(fps, MIN_FPS), MAX_FPS)
            self.fail(
                "fps", fps,
                f"must be from {MIN_FPS:g} to {MAX_FPS:g} (a frame lasts 1 ms to 1000 s in a WebP; whole or "
                "fractional, e.g. 0.5 or 29.97)",
                fixed, f"nearest valid {{fps}}: {fixed:g}", "fps.range",
            )  # fmt: skip
        return fps

    def _output(self) -> Path | None:
        out = self.req.output
        if out is None:
            return None
        path = Path(out)
        ext = path.suffix.lower()
        if ext not in VIDEO_EXTENSIONS:
            fixed = path.with_suffix(".mp4")
            self.fail(
                "output", str(out), f"the extension {ext or '(none)'} is not a video format this writes "
                f"({' / '.join(VIDEO_EXTENSIONS)})", str(fixed), f"e.g. {fixed}", "output.extension",
            )  # fmt: skip
        if not self.check_output:
            return path
        try:
            return check_output_path(path)
        except OutputPathError as e:
            self.fail(
                "output",
                str(out),
                str(e),
                None,
                "pick a file in a folder you can write to",
                f"output.{e.code}",
            )

    def _parallel(self, width: int, height: int) -> tuple[int, str | None]:
        p, req = self.base, self.req
        gpus, mode = req.gpus, req.context_parallel
        if mode == "none":
            mode = None
        if not _is_int(gpus) or gpus < 1:
            self.fail(
                "gpus", gpus, "{gpus} must be 1 or more", 1, "use 1 (one GPU, in this process)", "gpus.range"
            )
        if mode is not None and mode not in CONTEXT_PARALLEL_MODES:
            self.fail(
                "context_parallel", mode, "{context_parallel} must be 'ulysses' or 'ring'", "ulysses",
                "nearest valid: 'ulysses'", "context_parallel.choice",
            )  # fmt: skip
        if gpus == 1:
            if mode is not None:
                self.fail(
                    "context_parallel", mode, "context parallelism splits the DiT over several processes, and "
                    "there is one", None, "start several ({gpus} N) or leave {context_parallel} out",
                    "context_parallel.one_process",
                )  # fmt: skip
            return 1, None
        if mode is None:
            self.fail(
                "context_parallel", "none", f"{gpus} processes would each render the whole video", "ulysses",
                "pass {context_parallel} ulysses or ring, or start 1 process", "context_parallel.missing",
            )  # fmt: skip
        if self.rolling:
            self.fail(
                "context_parallel", mode, f"preset {p.name} (Rolling Forcing) does not run context-parallel yet "
                "(its window cache is not sharded)", None, "run it on one GPU ({gpus} 1)",
                "context_parallel.rolling_forcing",
            )  # fmt: skip
        heads = getattr(self.cfg, "num_heads", None)
        if mode == "ulysses" and heads is not None and heads % gpus:
            fits = [d for d in range(1, heads + 1) if heads % d == 0]
            fixed = min(fits, key=lambda d: (abs(d - gpus), d))
            self.fail(
                "gpus", gpus, f"Ulysses context parallelism splits the DiT's {heads} attention heads over the "
                f"GPUs, so {{gpus}} must divide {heads}", fixed,
                f"nearest valid {{gpus}}: {fixed}, or {{context_parallel}} 'ring'", "gpus.heads",
            )  # fmt: skip
        sh, sw = p.vae_stride[1] * p.patch_size[1], p.vae_stride[2] * p.patch_size[2]
        tokens = (height // sh) * (width // sw)
        if tokens % gpus:
            fits = [d for d in range(1, tokens + 1) if tokens % d == 0]
            fixed = min(fits, key=lambda d: (abs(d - gpus), d))
            self.fail(
                "gpus", gpus, f"a latent frame of {width}x{height} has {tokens} tokens, not divisible by {gpus} "
                "processes", fixed, f"nearest valid {{gpus}}: {fixed}, or another size", "gpus.tokens",
            )  # fmt: skip
        return gpus, mode


def _as_int(v: Any) -> int:
    try:
        return int(v)
    except (TypeError, ValueError, OverflowError):
        return 0


def _raiser(words: Words):
    def fail(field, value, rule, valid, advice, code):
        raise RequestError(field, value, rule, valid, advice, code, words)

    return fail


def check_prompt(prompt, words: Words = PYTHON_WORDS, fail=None) -> None:
    """The main prompt: text must not be empty (embeddings pass)."""
    if isinstance(prompt, str) and not prompt.strip():
        (fail or _raiser(words))(
            "prompt",
            prompt,
            "the {prompt} is empty",
            None,
            "write what the video should show",
            "prompt.empty",
        )


def check_prompt_schedule(
    pairs, num_chunks: int | None = None, words: Words = PYTHON_WORDS, fail=None
) -> dict:
    """Prompt switches ``[(chunk, prompt), ...]`` -> ``{chunk: prompt}`` sorted by chunk, or a
    ``RequestError``: chunk 0 is the main prompt's (a switch starts at chunk 1 or later), no two
    switches at one chunk, no empty prompt, and (when ``num_chunks`` is known) inside the video.
    A start in ``Seconds`` is checked for what needs no preset (after 0s, not twice, a prompt) and
    kept as it is (sorted after the chunks); ``validate`` turns it into a chunk.
    Used by ``VideoRequest.validate`` and by interfaces that parse a schedule before the preset is
    known (the prompt node)."""

    fail = fail or _raiser(words)
    out: dict = {}
    for chunk, prompt in pairs:
        if isinstance(chunk, Seconds):
            _check_seconds_switch(chunk, prompt, out, fail)
            out[chunk] = prompt
            continue
        if not _is_int(chunk) or chunk < 1:
            fail(
                "prompt_switches", chunk,
                f"a switch at chunk {chunk}: chunk 0 is the main {{prompt}}'s, switches start at chunk 1 or later",
                1, "start it at chunk 1 or later (or change the main {prompt})", "switches.chunk0",
            )  # fmt: skip
        if chunk in out:
            fail(
                "prompt_switches", chunk, f"two prompt switches start at chunk {chunk}", None,
                "keep one of them", "switches.duplicate",
            )  # fmt: skip
        if isinstance(prompt, str) and not prompt.strip():
            fail(
                "prompt_switches", chunk, f"the prompt of the switch at chunk {chunk} is empty", None,
                "write the prompt or drop the switch", "switches.empty",
            )  # fmt: skip
        if num_chunks is not None and chunk >= num_chunks:
            fail(
                "prompt_switches", chunk,
                f"the video has {num_chunks} chunks (0 to {num_chunks - 1}), so a switch at chunk {chunk} "
                "would never be used",
                num_chunks - 1, f"nearest valid chunk: {num_chunks - 1}, or a longer video ({{length_fix}})",
                "switches.past_end",
            )  # fmt: skip
        out[chunk] = prompt
    return dict(sorted(out.items(), key=_sort_key))


def _check_seconds_switch(start: Seconds, prompt, seen: dict, fail) -> None:
    if start.value <= 0:
        fail(
            "prompt_switches", start,
            f"a switch at {start}: the video starts with the main {{prompt}}, switches start after 0s", None,
            "start it later (e.g. 1s), or change the main {prompt}", "switches.chunk0",
        )  # fmt: skip
    if start in seen:
        fail(
            "prompt_switches", start, f"two prompt switches start at {start}", None, "keep one of them",
            "switches.duplicate",
        )  # fmt: skip
    if isinstance(prompt, str) and not prompt.strip():
        fail(
            "prompt_switches", start, f"the prompt of the switch at {start} is empty", None,
            "write the prompt or drop the switch", "switches.empty",
        )  # fmt: skip
