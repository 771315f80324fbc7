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
    """[(start_chunk, prompt), ...] sorted by chunk, starting with (0, positive)."""
    if not positive.strip():
        raise ValueError("Encode UMT5 Prompt: the positive prompt is empty; write what the video should show")
    schedule: dict[int, str] = {0: positive.strip()}
    for number, line in enumerate(switches.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _LINE.match(line)
        if m is None:
            raise ValueError(
                f"Encode UMT5 Prompt: prompt switch line {number} {line.strip()!r} is not "
                "'<start chunk>: <prompt>' (e.g. '4: the fox jumps into the river')"
            )
        chunk, text = int(m.group(1)), m.group(2)
        if chunk == 0:
            raise ValueError(
                f"Encode UMT5 Prompt: prompt switch line {number} starts at chunk 0, which is the positive "
                "prompt's; switches start at chunk 1 or later"
            )
        if chunk in schedule:
            raise ValueError(f"Encode UMT5 Prompt: two prompt switches start at chunk {chunk}")
        schedule[chunk] = text
    return sorted(schedule.items())
