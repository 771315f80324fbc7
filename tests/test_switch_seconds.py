"""Prompt switches in seconds (``5s: a cat``): parsed by Encode UMT5 Prompt's schedule parser, turned
into chunks by ``VideoRequest.validate`` with the preset's chunk size, the VAE stride and the fps
(the first chunk that starts at or after the time), and refused with clear messages: 0s, a time past
the video's last chunk, two switches landing on one chunk."""

from fractions import Fraction

import pytest

from nodes.prompt_schedule import parse_prompt_switches
from nodes.video_request import SAMPLER_WORDS
from wan_core.rollout.request import RequestError, Seconds, VideoRequest


def _valid(switches, preset="longlive-1.3b", frames=477, **kw):
    return VideoRequest(preset=preset, prompt="a", frames=frames, prompt_switches=switches, **kw).validate(
        words=SAMPLER_WORDS, check_output=False
    )


def test_parser_reads_seconds_and_chunks():
    got = parse_prompt_switches("a fox", "5s: a cat\n 2.5 s : a dog \n7: a bird\n# 3s: no\n10S: an owl")
    assert got == [(0, "a fox"), (7, "a bird"), (Seconds(Fraction(5, 2)), "a dog"), (Seconds(Fraction(5)), "a cat"),
                   (Seconds(Fraction(10)), "an owl")]  # fmt: skip
    for bad in ("s: x", ".5s: x", "5.s: x", "1.2.3s: x", "-1s: x", "1e3s: x", "5ms: x"):
        with pytest.raises(ValueError, match="is not '<start chunk>: <prompt>' or '<seconds>s: <prompt>'"):
            parse_prompt_switches("a", bad)


@pytest.mark.parametrize(
    "preset, fps, seconds, chunk",
    [
        # chunk k >= 1 starts at pixel frame 1 + 4 (3k - 1): 9, 21, 33, ..., 81 (chunk 7) at 16 fps
        ("longlive-1.3b", None, "5", 7),  # frame 80 -> chunk 7 (frame 81, 5.06 s)
        ("longlive-1.3b", None, "5.0625", 7),  # exactly frame 81
        ("longlive-1.3b", None, "5.07", 8),  # just after chunk 7 starts: the next one
        ("longlive-1.3b", None, "0.1", 1),
        ("longlive-1.3b", 24, "5", 11),  # frame 120 -> chunk 11 (frame 129; chunk 10 starts at 117)
        ("causal-forcing-framewise-1.3b", None, "5", 21),  # one latent frame per chunk: frame 81
    ],
)
def test_seconds_become_the_first_chunk_starting_at_or_after_them(preset, fps, seconds, chunk):
    valid = _valid([(Seconds.parse(seconds), "b")], preset=preset, fps=fps)
    assert dict(valid.prompt_switches) == {chunk: "b"} and valid.switch_chunks == (chunk,)


def test_switch_chunks_keep_the_order_given():
    valid = _valid([(Seconds.parse("10"), "c"), (3, "b")])
    assert valid.switch_chunks == (14, 3) and list(valid.prompt_switches) == [3, 14]


def test_zero_seconds_is_refused():
    with pytest.raises(RequestError, match=r"a switch at 0s: the video starts with the main .*after 0s") as e:
        parse_prompt_switches("a", "0s: b")
    assert e.value.code == "switches.chunk0"
    with pytest.raises(RequestError, match="a switch at 0s") as e:
        _valid([(Seconds.parse("0"), "b")])
    assert e.value.code == "switches.chunk0"


def test_a_time_past_the_last_chunk_is_refused_in_seconds():
    # 81 frames = 21 latent frames = 7 chunks; the last starts at frame 69 (4.31 s)
    with pytest.raises(RequestError) as e:
        _valid([(Seconds.parse("6"), "b")], frames=81)
    assert e.value.code == "switches.past_end"
    msg = str(e.value)
    assert msg.startswith("Streaming AR Sampler: Encode UMT5 Prompt's prompt_switches 6s:")
    assert "the video is 5.06s long (81 frames at 16 fps)" in msg and "last chunk starts at 4.31s" in msg
    assert "at most 4.31s (chunk 6), or a longer video (more frames)" in msg
    assert e.value.valid == Seconds(Fraction(69, 16))


def test_two_switches_on_one_chunk_are_refused():
    # chunk 3 starts at frame 33 (2.06 s), chunk 2 at frame 21 (1.31 s)
    with pytest.raises(
        RequestError, match=r"the switches at 1.5s and 2s both start at chunk 3 .*every 0.75s"
    ) as e:
        _valid([(Seconds.parse("1.5"), "b"), (Seconds.parse("2"), "c")])
    assert e.value.code == "switches.duplicate"
    with pytest.raises(RequestError, match="the switches at chunk 7 and 5s both start at chunk 7"):
        _valid([(7, "b"), (Seconds.parse("5"), "c")])
    with pytest.raises(RequestError, match="two prompt switches start at 5s"):
        parse_prompt_switches("a", "5s: b\n5.0s: c")


def test_seconds_on_a_whole_video_preset_are_refused_as_switches_are():
    with pytest.raises(RequestError, match="generates the whole video at once") as e:
        _valid([(Seconds.parse("1"), "b")], preset="wan2.1-t2v-1.3b", frames=81)
    assert e.value.code == "switches.whole_video" and "prompt_switches 1s:" in str(e.value)


def test_command_line_switches_in_seconds_become_the_same_chunks():
    from wan_core.__main__ import _parse_switches
    from wan_core.rollout.request import CLI_WORDS

    switches = _parse_switches(["5s:a cat", "2.5 S:a dog", "9:a bird"])
    assert switches == [(Seconds(Fraction(5)), "a cat"), (Seconds(Fraction(5, 2)), "a dog"), (9, "a bird")]
    valid = VideoRequest(preset="longlive-1.3b", prompt="a", frames=477, prompt_switches=switches).validate(
        words=CLI_WORDS, check_output=False
    )
    assert list(valid.prompt_switches) == [4, 7, 9]  # 2.5 s -> chunk 4 (frame 45), 5 s -> chunk 7 (frame 81)
    for bad in ("s:x", "5ms:x", "x:y", "5"):
        with pytest.raises(RequestError, match="expects CHUNK:PROMPT or SECONDSs:PROMPT"):
            _parse_switches([bad])
