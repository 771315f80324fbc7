"""Parsing the prompt-switch text of ``Encode UMT5 Prompt``.

One switch per line, ``<start>: <prompt>``; blank lines and lines starting with ``#`` are ignored.
The positive prompt is the prompt of the start. ``<start>`` is a chunk index (``4``) or a time in the
video in seconds (``5s``, ``2.5s``: digits with at most one ``.``, then ``s``), which the sampler turns
into the first chunk starting at or after that time (``wan_core.rollout.request.Seconds``). Example::

    4: the fox jumps into a frozen river
    5s: the fox swims to the far bank
"""

from __future__ import annotations

# Each line is split at its first ":" and stripped (str.partition / str.strip: linear in the line's
# length, no regular-expression backtracking; ComfyUI's prompt worker runs this on every queued job).
# Limit: UMT5 reads at most 511 tokens per prompt (a few KB of text), so a schedule of dozens of
# switches fits in a few hundred KB; larger text is refused before it is split or encoded.
MAX_SCHEDULE_CHARS = 256 * 1024


def _check_size(what: str, text: str) -> None:
    if len(text) > MAX_SCHEDULE_CHARS:
        raise ValueError(
            f"Encode UMT5 Prompt: the {what} is {len(text):,} characters long; at most "
            f"{MAX_SCHEDULE_CHARS:,} are read (UMT5 reads 511 tokens of each prompt, a few KB of text)"
        )


def _split_line(line: str):
    """``'<digits>: <text>'`` / ``'<seconds>s: <text>'`` (spaces around both allowed) -> (chunk or
    ``Seconds``, stripped text); else None."""
    from wan_core.rollout.request import Seconds

    head, sep, text = line.partition(":")
    head, text = head.strip(), text.strip()
    if not sep or not text:
        return None
    if head.isdecimal():
        return int(head), text
    if head[-1:] in ("s", "S"):
        seconds = Seconds.parse(head[:-1].rstrip())
        return None if seconds is None else (seconds, text)
    return None


def parse_prompt_switches(positive: str, switches: str) -> list[tuple]:
    """[(start, prompt), ...] starting with (0, positive): chunk starts sorted, then ``Seconds``
    starts sorted. The rules (an empty prompt, chunk 0 / 0s, two switches at one start) are the video
    request's (``wan_core.rollout.request``); which chunk a time starts and whether a switch is inside
    the video is checked by the sampler, which knows the preset and the length."""
    from wan_core.rollout.request import RequestError, check_prompt, check_prompt_schedule

    from .video_request import ENCODE_PROMPT_WORDS as WORDS

    _check_size("positive prompt", positive)
    _check_size("prompt switch text", switches)
    check_prompt(positive, WORDS)
    pairs = []
    for number, line in enumerate(switches.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parsed = _split_line(line)
        if parsed is None:
            raise RequestError(
                "prompt_switches", line.strip(), f"line {number} is not '<start chunk>: <prompt>' or '<seconds>s: <prompt>'", None,
                "e.g. '4: the fox jumps into the river' or '2.5s: the fox jumps into the river'", "switches.syntax", WORDS,
            )  # fmt: skip
        pairs.append(parsed)
    return [(0, positive.strip()), *check_prompt_schedule(pairs, words=WORDS).items()]
