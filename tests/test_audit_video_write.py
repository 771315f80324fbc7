"""Audit: a video write that fails part-way leaves no half-written file at the output path."""

import pytest
import torch

from wan_core.rollout.video_io import have_av, open_video_writer


class _Boom(RuntimeError):
    pass


def _frames(n=2, h=16, w=16):
    return torch.rand(1, 3, n, h, w, generator=torch.Generator().manual_seed(0)) * 2 - 1


@pytest.mark.parametrize("ext", ["mp4", "webp"])
def test_error_mid_video_leaves_no_partial_file(tmp_path, ext):
    if ext == "mp4" and not have_av():
        pytest.skip("PyAV not installed")
    out = tmp_path / f"clip.{ext}"
    with pytest.raises(_Boom):
        with open_video_writer(out, fps=8) as w:
            w.write(_frames())  # chunk 0 written
            raise _Boom("generation failed at chunk 1")  # e.g. interrupt, OOM
    assert not out.exists(), f"a partial {ext} was left at {out}"
    # a complete run still writes the file
    with open_video_writer(out, fps=8) as w:
        w.write(_frames())
        w.write(_frames())
    assert out.exists() and out.stat().st_size > 0


def test_bad_frame_size_leaves_no_empty_mp4(tmp_path):
    if not have_av():
        pytest.skip("PyAV not installed")
    out = tmp_path / "odd.mp4"
    with pytest.raises(ValueError, match="even width and height"):
        with open_video_writer(out, fps=8) as w:
            w.write(_frames(h=15, w=16))
    assert not out.exists()
