"""Parsing the prompt-switch text of ``Encode UMT5 Prompt``.

One switch per line, ``<start chunk>: <prompt>``; blank lines and lines starting with ``#`` are
ignored. The positive prompt is the prompt of chunk 0. Example::

    4: the fox jumps into a frozen river
    9: the fox swims to the far bank
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


def _split_line(line: str) -> tuple[int, str] | None:
    """``'<digits>: <text>'`` (spaces around both allowed) -> (chunk, stripped text); else None."""
    head, sep, text = line.partition(":")
    head, text = head.strip(), text.strip()
    if not sep or not head.isdecimal() or not text:
        return None
    return int(head), text


def parse_prompt_switches(positive: str, switches: str) -> list[tuple[int, str]]:
    """[(start_chunk, prompt), ...] sorted by chunk, starting with (0, positive). The rules (an empty
    prompt, chunk 0, two switches at one chunk) are the video request's (``wan_core.rollout.request``);
    whether a switch is inside the video is checked by the sampler, which knows the length."""
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
                "prompt_switches", line.strip(), f"line {number} is not '<start chunk>: <prompt>'", None,
                "e.g. '4: the fox jumps into the river'", "switches.syntax", WORDS,
            )  # fmt: skip
        pairs.append(parsed)
    return [(0, positive.strip()), *check_prompt_schedule(pairs, words=WORDS).items()]
