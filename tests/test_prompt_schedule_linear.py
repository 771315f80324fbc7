"""The prompt-schedule parser of Encode UMT5 Prompt (``nodes/prompt_schedule.py``) runs in linear time:
the line shape that made the former pattern backtrack (``1: a``, many spaces, ``b``: 58 s at 40k spaces)
parses in milliseconds up to the size limit and is refused above it; on ordinary lines it gives what
the former pattern gave."""

import random
import re
import time

import pytest

from nodes.prompt_schedule import MAX_SCHEDULE_CHARS, parse_prompt_switches

_FORMER = re.compile(r"^\s*(\d+)\s*:\s*(.+?)\s*$")  # the pattern this parser replaced (reference only)


def _former(line: str):
    m = _FORMER.match(line)
    return None if m is None else (int(m.group(1)), m.group(2))


def _timed(fn, *args):
    fn("x", "1: a")  # the first call imports the request rules (and torch): not the parser's time
    t0 = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - t0


def test_a_pathological_line_just_under_the_limit_parses_in_linear_time():
    spaces = MAX_SCHEDULE_CHARS - 10
    got, seconds = _timed(parse_prompt_switches, "x", "1: a" + " " * spaces + "b")
    assert got == [(0, "x"), (1, "a" + " " * spaces + "b")]
    assert seconds < 0.5, f"{seconds:.2f} s for one line of {spaces} spaces"
    # linear: 4x the spaces is not 16x the time (the former pattern was quadratic: 0.7 s at 5k, 14 s at 20k)
    _, small = _timed(parse_prompt_switches, "x", "1: a" + " " * (spaces // 4) + "b")
    assert seconds < 0.05 or seconds < 8 * small


def test_a_one_megabyte_line_is_refused_at_once_with_the_limit():
    text = "1: a" + " " * 1_000_000 + "b"
    parse_prompt_switches("x", "1: a")  # imports first (not the refusal's time)
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=r"prompt switch text is 1,000,005 characters long; at most 262,144"):
        parse_prompt_switches("x", text)
    assert time.perf_counter() - t0 < 0.5
    with pytest.raises(ValueError, match="positive prompt is 1,000,005 characters long"):
        parse_prompt_switches(text, "")


def test_many_lines_up_to_the_limit_are_fast():
    lines = "\n".join(f"{i}: the fox, scene {i}" + " " * 20 for i in range(1, 5000))
    assert len(lines) < MAX_SCHEDULE_CHARS
    got, seconds = _timed(parse_prompt_switches, "x", lines)
    assert len(got) == 5000 and got[-1] == (4999, "the fox, scene 4999") and seconds < 0.5


def test_same_result_as_the_former_pattern_on_random_lines():
    """Digits (also non-ASCII decimal ones, which both accept), spaces (also no-break), tabs, colons, '#',
    letters: the same (chunk, prompt) or the same refusal; except a prompt of spaces only, which the
    former pattern took as a one-space prompt and which is now refused as not '<chunk>: <prompt>'."""
    rng = random.Random(13)
    alphabet = "0123456789  ::\t#ab\u0664\u00a0"
    checked = 0
    for _ in range(4000):
        line = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        if not line.strip() or line.lstrip().startswith("#"):
            continue  # skipped lines, before any pattern
        want = _former(line)
        if want is not None and want[0] == 0:
            continue  # chunk 0: refused by the same rule either way (tested below)
        if want is not None and not want[1].strip():
            with pytest.raises(ValueError, match="is not '<start chunk>: <prompt>'"):
                parse_prompt_switches("x", line)
            continue
        if want is None:
            with pytest.raises(ValueError, match="is not '<start chunk>: <prompt>'"):
                parse_prompt_switches("x", line)
        else:
            assert parse_prompt_switches("x", line) == [(0, "x"), want], repr(line)
        checked += 1
    assert checked > 1000


def test_rules_and_messages():  # the rules and words of the video request (wan_core.rollout.request)
    assert parse_prompt_switches(" a fox ", "\n# c\n 6 : the fox jumps \n3:a:b\n\u0664: four\n") == [
        (0, "a fox"),
        (3, "a:b"),
        (4, "four"),
        (6, "the fox jumps"),
    ]
    for text, message in [
        ("0: y", "a switch at chunk 0: chunk 0 is the main positive prompt's"),
        ("2: y\n2: z", "two prompt switches start at chunk 2"),
        ("x2: y", r"'x2: y': line 1 is not '<start chunk>: <prompt>'"),
        ("\n3:", r"'3:': line 2 is not"),
        ("-1: y", "is not"),
        ("\u00b2: y", "is not"),  # a superscript two is a digit but no decimal: int() refuses it too
    ]:
        with pytest.raises(ValueError, match=message):
            parse_prompt_switches("x", text)
