"""Saved workflows of the previous release set ``window_frames`` / ``sink_frames`` on presets that
ignore them (whole-video presets, Rolling Forcing, Krea's sink): through the sampler node's words
they warn and the value is dropped; the command line and the Python API keep refusing them."""

from __future__ import annotations

import pytest

from nodes.video_request import SAMPLER_WORDS
from wan_core.rollout.presets import PRESETS
from wan_core.rollout.request import CLI_WORDS, PYTHON_WORDS, RequestError, VideoRequest

WAN21, RF, KREA = "wan2.1-t2v-1.3b", "rolling-forcing-1.3b", "krea-realtime-14b"

CASES = {
    "window_whole_video": (dict(preset=WAN21, frames=5, window=9), "window.whole_video"),
    "sink_whole_video": (dict(preset=WAN21, frames=5, sink=3), "sink.whole_video"),
    "sink_0_whole_video": (dict(preset=WAN21, frames=5, sink=0), "sink.whole_video"),
    "window_rolling_forcing": (dict(preset=RF, window=9), "window.rolling_forcing"),
    "sink_rolling_forcing": (dict(preset=RF, sink=0), "sink.rolling_forcing"),
    "sink_krea": (dict(preset=KREA, sink=2), "sink.kv_recompute"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_node_warns_and_ignores_the_value(case):
    fields, code = CASES[case]
    v = VideoRequest(prompt="a fox", **fields).validate(words=SAMPLER_WORDS)
    assert v.overrides == () and v.preset == PRESETS[fields["preset"]]
    assert len(v.warnings) == 1 and v.warnings[0].startswith(SAMPLER_WORDS.prefix)
    name = "window_frames" if "window" in fields else "sink_frames"
    assert name in v.warnings[0]


@pytest.mark.parametrize("words", [CLI_WORDS, PYTHON_WORDS], ids=["cli", "api"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_the_cli_and_api_still_refuse(case, words):
    fields, code = CASES[case]
    with pytest.raises(RequestError) as info:
        VideoRequest(prompt="a fox", **fields).validate(words=words)
    assert info.value.code == code


def test_both_ignored_on_a_whole_video_preset():
    v = VideoRequest(WAN21, prompt="a fox", frames=5, window=9, sink=0).validate(words=SAMPLER_WORDS)
    assert v.overrides == () and len(v.warnings) == 2


def test_krea_keeps_a_valid_window_while_its_sink_is_dropped():
    least = PRESETS[KREA].kv_recompute_frames + PRESETS[KREA].frames_per_chunk
    v = VideoRequest(KREA, prompt="a fox", window=least, sink=2).validate(words=SAMPLER_WORDS)
    assert v.overrides == (("window_frames", least),) and len(v.warnings) == 1
