"""Parsing the prompt-switch text of ``Encode UMT5 Prompt``.

One switch per line, ``<start chunk>: <prompt>``; blank lines and lines starting with ``#`` are
ignored. The positive prompt is the prompt of chunk 0. Example::

    4: the fox jumps into a frozen river
    9: the fox swims to the far bank
"""

from __future__ import annotations

import re

_LINE = re.compile(r"^\s*(\d+)\s*:\s*(.+?)\s*$")


def parse_prompt_switches(positive: str, switches: str) -> list[tuple[int, str]]:
    """[(start_chunk, prompt), ...] sorted by chunk, starting with (0, positive). The rules (an empty
    prompt, chunk 0, two switches at one chunk) are the video request's (``wan_core.rollout.request``);
    whether a switch is inside the video is checked by the sampler, which knows the length."""
    from wan_core.rollout.request import RequestError, check_prompt, check_prompt_schedule

    from .video_request import ENCODE_PROMPT_WORDS as WORDS

    check_prompt(positive, WORDS)
    pairs = []
    for number, line in enumerate(switches.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _LINE.match(line)
        if m is None:
            raise RequestError(
                "prompt_switches", line.strip(), f"line {number} is not '<start chunk>: <prompt>'", None,
                "e.g. '4: the fox jumps into the river'", "switches.syntax", WORDS,
            )  # fmt: skip
        pairs.append((int(m.group(1)), m.group(2)))
    return [(0, positive.strip()), *check_prompt_schedule(pairs, words=WORDS).items()]
