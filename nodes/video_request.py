"""The nodes' inputs as one ``wan_core`` ``VideoRequest``, and the nodes' words for its errors.

The Streaming AR Sampler's widgets keep their saved-workflow meanings: ``window_frames`` /
``sink_frames`` -1 = the preset's, ``chunks`` 0 = the length is ``frames``, and ``context_parallel``
is read only when ``gpus`` > 1 (its widget always holds a value). A negative prompt typed into Encode
UMT5 Prompt is unused by the few-step presets: a warning here (refusing it would break saved
workflows that switch presets), an error on the command line and in the Python API.

Precedence with Wan Stream Rollout Options (the sampler's ``options`` input): when it is connected,
its window / sink / gpus / context_parallel are the ones used, and the sampler's own widgets of those
names (kept for saved workflows, hidden in new nodes) are ignored -- one warning names those that
hold something other than their default. ``chunks`` stays on the sampler (saved workflows only).
"""

from __future__ import annotations

import logging

from wan_core.rollout.request import VideoRequest, Words

from .payloads import RolloutOptions, StreamConditioning

log = logging.getLogger("wan_stream")

__all__ = ["SAMPLER", "SAMPLER_WORDS", "ENCODE_PROMPT_WORDS", "OPTIONS_NODE", "sampler_request"]

SAMPLER = "Streaming AR Sampler"
OPTIONS_NODE = "Wan Stream Rollout Options"
# the sampler's widgets that the options node replaces, with their defaults (what a new node holds)
_REPLACED_WIDGETS = {"window_frames": -1, "sink_frames": -1, "gpus": 1, "context_parallel": "ulysses"}
ENCODE_PROMPT = "Encode UMT5 Prompt"

_PROMPT_NODE_INPUTS = {
    "prompt": f"{ENCODE_PROMPT}'s positive prompt",
    "prompt_switches": f"{ENCODE_PROMPT}'s prompt_switches",
    "negative_prompt": f"{ENCODE_PROMPT}'s negative",
}

SAMPLER_WORDS = Words(
    prefix=f"{SAMPLER}: ",
    names={
        **_PROMPT_NODE_INPUTS,
        "window": "window_frames",
        "sink": "sink_frames",
        "image": "I2V Control Encode's image",
    },
    hints={
        "size_fix": "connect I2V Control Encode's width and height outputs to the sampler (or resize the image)",
        "length_fix": "more frames",
        "image_fix": "a start image: conditioning from I2V Control Encode",
    },
    # rules the previous release's sampler ignored silently (saved workflows keep running, with a warning)
    warn_only=frozenset(
        {
            "negative_prompt.unused",
            "window.whole_video",
            "sink.whole_video",
            "window.rolling_forcing",
            "sink.rolling_forcing",
            "sink.kv_recompute",
        }
    ),
)

ENCODE_PROMPT_WORDS = Words(
    prefix=f"{ENCODE_PROMPT}: ",
    names={"prompt": "positive prompt", "prompt_switches": "prompt_switches"},
    hints={"length_fix": "the sampler's frames or chunks"},
)


def sampler_request(
    cond: StreamConditioning,
    *,
    width: int,
    height: int,
    frames: int,
    preset: str,
    seed: int,
    window_frames: int,
    sink_frames: int,
    chunks: int,
    gpus: int = 1,
    context_parallel: str = "ulysses",
    options: RolloutOptions | None = None,
) -> VideoRequest:
    """The sampler's inputs (and its conditioning's prompts and image) as a ``VideoRequest``; with
    ``options`` (Wan Stream Rollout Options), see the module docstring for which value is used."""
    if options is not None:
        given = {"window_frames": window_frames, "sink_frames": sink_frames, "gpus": gpus}
        given["context_parallel"] = context_parallel if gpus != 1 else "ulysses"  # unread at 1 GPU
        ignored = [f"{k} {v}" for k, v in given.items() if v != _REPLACED_WIDGETS[k]]
        if ignored:
            log.warning(
                "%s: %s connected, so the sampler's own %s (kept from a saved workflow) %s not used",
                SAMPLER, OPTIONS_NODE, ", ".join(ignored), "is" if len(ignored) == 1 else "are",
            )  # fmt: skip
        window_frames = -1 if options.window_frames is None else options.window_frames
        sink_frames = -1 if options.sink_frames is None else options.sink_frames
        gpus, context_parallel = options.gpus, options.context_parallel
    image = cond.image
    return VideoRequest(
        preset=preset,
        prompt=cond.segments[0].text,
        width=width,
        height=height,
        frames=None if chunks else frames,
        chunks=chunks or None,
        seed=seed,
        window=None if window_frames == -1 else window_frames,
        sink=None if sink_frames == -1 else sink_frames,
        prompt_switches=[(s.start, s.text) for s in cond.segments[1:]],
        image=None if image is None else image.image,  # [1, 3, H, W] at the size it was encoded
        negative_prompt=cond.negative_text or None,
        gpus=gpus,
        context_parallel=context_parallel if gpus != 1 else None,
    )
