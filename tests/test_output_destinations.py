"""Destinations the writers would replace without being asked: an existing read-only file, and the
WebP written instead of an mp4 when PyAV is missing; fractional fps reach the writers intact and a
writer that fails while opening leaves no partial file."""

from __future__ import annotations

import os
from fractions import Fraction

import numpy as np
import pytest
import torch

from wan_core.rollout import video_io
from wan_core.rollout.output_path import OutputPathError, check_output_path
from wan_core.rollout.request import RequestError, VideoRequest
from wan_core.rollout.video_io import WebpWriter, frame_rate, have_av, open_video_writer

OLD = b"yesterday's video"


def _frames(n=2, h=32, w=48):
    return torch.rand(1, 3, n, h, w, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_an_existing_read_only_file_is_refused(tmp_path):
    out = tmp_path / "v.mp4"
    out.write_bytes(OLD)
    out.chmod(0o444)
    with pytest.raises(OutputPathError, match="read-only") as info:
        check_output_path(out)
    assert info.value.code == "read_only"
    with pytest.raises(RequestError) as info:
        VideoRequest("self-forcing-1.3b", output=str(out)).validate()
    assert info.value.code == "output.read_only" and "chmod u+w" in str(info.value)
    with pytest.raises(OutputPathError):
        open_video_writer(out, fps=8)
    assert out.read_bytes() == OLD and os.listdir(tmp_path) == ["v.mp4"]


def test_an_existing_writable_file_may_be_replaced(tmp_path):
    out = tmp_path / "v.webp"
    out.write_bytes(OLD)
    assert check_output_path(out) == out


def test_without_pyav_an_unrelated_webp_is_not_replaced(tmp_path, monkeypatch):
    other = tmp_path / "v.webp"
    other.write_bytes(OLD)
    with pytest.raises(OutputPathError, match="that file exists") as info:
        check_output_path(tmp_path / "v.mp4", pyav=False)
    assert info.value.code == "fallback_exists"
    assert check_output_path(tmp_path / "v.mp4", pyav=True) == tmp_path / "v.mp4"
    monkeypatch.setattr(video_io, "have_av", lambda: False)
    with pytest.raises(OutputPathError, match="that file exists"):
        open_video_writer(tmp_path / "v.mp4", fps=8)
    assert other.read_bytes() == OLD and os.listdir(tmp_path) == ["v.webp"]


def test_without_pyav_the_request_refuses_the_fallback_up_front(tmp_path, monkeypatch):
    from wan_core.rollout import output_path

    (tmp_path / "v.webp").write_bytes(OLD)
    monkeypatch.setattr(output_path, "pyav_installed", lambda: False)
    with pytest.raises(RequestError) as info:
        VideoRequest("self-forcing-1.3b", output=str(tmp_path / "v.mp4")).validate()
    assert info.value.code == "output.fallback_exists"


@pytest.mark.parametrize(
    "fps, rate", [(16, Fraction(16)), (0.5, Fraction(1, 2)), (29.97, Fraction(2997, 100)), (23.976, None)]
)
def test_frame_rates_are_exact_fractions(fps, rate):
    got = frame_rate(fps)
    assert got.denominator <= 1001 and abs(float(got) - fps) < 1e-3
    if rate is not None:
        assert got == rate


def test_half_an_fps_webp_has_two_second_frames(tmp_path):
    from PIL import Image

    out = tmp_path / "slow.webp"
    VideoRequest("self-forcing-1.3b", fps=0.5, output=str(out)).validate()
    with open_video_writer(out, fps=0.5) as w:
        w.write(_frames(2))
    with Image.open(out) as im:
        assert im.n_frames == 2
        im.seek(1)
        im.load()
        assert im.info["duration"] == 2000


@pytest.mark.skipif(not have_av(), reason="PyAV not installed")
def test_a_fractional_fps_mp4_keeps_its_rate(tmp_path):
    import av

    out = tmp_path / "v.mp4"
    with open_video_writer(out, fps=0.5) as w:
        w.write(_frames(3))
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        assert s.frames == 3 and s.average_rate == Fraction(1, 2)


@pytest.mark.parametrize("fps, fixed", [(0.0001, 0.001), (5000, 1000)])
def test_fps_outside_the_writers_range_is_refused_with_a_valid_suggestion(fps, fixed):
    with pytest.raises(RequestError) as info:
        VideoRequest("self-forcing-1.3b", fps=fps).validate()
    assert (info.value.code, info.value.valid) == ("fps.range", fixed)
    VideoRequest("self-forcing-1.3b", fps=info.value.valid).validate()


def test_a_webp_writer_failing_at_open_leaves_no_partial(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise ValueError("the encoder refused")

    monkeypatch.setattr(video_io, "AnimatedWebpStream", refuse)
    out = tmp_path / "v.webp"
    out.write_bytes(OLD)
    with pytest.raises(ValueError, match="the encoder refused"):
        WebpWriter(out, fps=16)
    assert os.listdir(tmp_path) == ["v.webp"] and out.read_bytes() == OLD


def test_too_slow_an_fps_for_a_rate_is_refused_by_the_writer(tmp_path):
    with pytest.raises(ValueError, match="below 1/1001"):
        WebpWriter(tmp_path / "v.webp", fps=1e-5)
    assert os.listdir(tmp_path) == []


def test_webp_frames_of_fractional_fps(tmp_path):
    w = WebpWriter(tmp_path / "v.webp", fps=29.97)
    assert w._anim.duration_ms == 33
    w.write(np.zeros((1, 16, 16, 3), np.uint8))
    w.close()
