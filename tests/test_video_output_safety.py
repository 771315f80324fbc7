"""Video writers (``video_io``, ``atomic_file``, ``webp_anim``): each writer replaces the destination
only when its file is complete, a failure leaves an older file as it was, a killed run's partial file
is removed by the next writer, memory stays flat over many frames, and ``check_output_path`` refuses a
bad destination without creating anything."""

import io
import os
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

from wan_core.rollout import atomic_file, video_io
from wan_core.rollout.frame_writer import BackgroundFrameWriter
from wan_core.rollout.video_io import (
    Mp4Writer,
    WebpWriter,
    check_output_path,
    have_av,
    open_video_writer,
)
from wan_core.rollout.webp_anim import AnimatedWebpStream

OLD = b"yesterday's video" * 50
EXTS = ["mp4", "webp", "mkv"]


def _needs(ext):
    if ext != "webp" and not have_av():
        pytest.skip("PyAV not installed")


def _frames(n=3, h=32, w=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, n, h, w, generator=g) * 2 - 1  # [B, 3, F, H, W] in [-1, 1]


def _count(path) -> int:
    if path.suffix == ".webp":
        with Image.open(path) as im:
            return im.n_frames
    import av

    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def _partials(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(atomic_file.PARTIAL_SUFFIX))


class _Boom(RuntimeError):
    pass


@pytest.mark.parametrize("ext", EXTS)
def test_the_destination_changes_only_when_the_file_is_complete(tmp_path, ext):
    _needs(ext)
    out = tmp_path / f"v.{ext}"
    out.write_bytes(OLD)
    os.chmod(out, 0o640)
    w = open_video_writer(out, fps=8)
    w.write(_frames(3))
    w.write(_frames(2))
    assert out.read_bytes() == OLD  # while writing: the older file, whole
    assert _partials(tmp_path) == [f".v.{ext}.{os.getpid()}.partial"]
    assert w.close() and w.committed
    assert _count(out) == 5 and _partials(tmp_path) == []
    assert (out.stat().st_mode & 0o777) == 0o640  # the older file's permissions kept


@pytest.mark.parametrize("ext", EXTS)
def test_a_failure_leaves_the_older_file_as_it_was(tmp_path, ext):
    _needs(ext)
    out = tmp_path / f"v.{ext}"
    out.write_bytes(OLD)
    with pytest.raises(_Boom):
        with open_video_writer(out, fps=8) as w:
            w.write(_frames(3))
            raise _Boom("generation failed")
    assert out.read_bytes() == OLD and _partials(tmp_path) == []
    # a frame of another size mid-video: refused, nothing replaced
    with pytest.raises(ValueError):
        with open_video_writer(out, fps=8) as w:
            w.write(_frames(2))
            w.write(_frames(2, h=16, w=16))
    assert out.read_bytes() == OLD and _partials(tmp_path) == []


@pytest.mark.parametrize("ext", EXTS)
def test_closing_without_frames_replaces_nothing(tmp_path, ext):
    _needs(ext)
    out = tmp_path / f"v.{ext}"
    out.write_bytes(OLD)
    w = open_video_writer(out, fps=8)
    assert w.close() is False and not w.committed
    assert out.read_bytes() == OLD and _partials(tmp_path) == []


def test_a_failure_while_finishing_aborts(tmp_path, monkeypatch):
    out = tmp_path / "v.webp"
    out.write_bytes(OLD)
    w = open_video_writer(out, fps=8)
    w.write(_frames(2))
    monkeypatch.setattr(w._anim, "close", lambda: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        w.close()
    assert out.read_bytes() == OLD and _partials(tmp_path) == []


def test_stale_partials_of_dead_processes_are_removed_and_live_ones_kept(tmp_path):
    out = tmp_path / "v.webp"
    out.write_bytes(OLD)
    dead = _dead_pid()
    stale = atomic_file.partial_path(out, pid=dead)
    stale.write_bytes(b"half a video")
    stale2 = atomic_file.partial_path(out, pid=dead, seq=2)
    stale2.write_bytes(b"half a video")
    alive = atomic_file.partial_path(out, pid=os.getppid())  # a running process: another writer
    alive.write_bytes(b"being written")
    other = tmp_path / f".other.webp.{dead}.partial"  # another destination's
    other.write_bytes(b"x")
    msgs = []
    w = open_video_writer(out, fps=8, log=msgs.append)
    assert not stale.exists() and not stale2.exists() and alive.exists() and other.exists()
    names = ", ".join(sorted([stale.name, stale2.name]))
    assert msgs == [f"removed 2 partial file(s) left by an interrupted run: {names}"]
    w.write(_frames(1))
    w.close()
    assert _count(out) == 1


def test_two_writers_of_one_destination_in_one_process_do_not_collide(tmp_path):
    out = tmp_path / "v.webp"
    a, b = open_video_writer(out, fps=8), open_video_writer(out, fps=8)
    assert a.output.tmp != b.output.tmp
    a.write(_frames(2))
    b.write(_frames(3))
    a.close()
    assert _count(out) == 2
    b.close()
    assert _count(out) == 3


def _dead_pid() -> int:
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# -- animated WebP, frame by frame ------------------------------------------------------------------------


def test_webp_container_decodes_to_the_exact_frames_lossless():
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (24, 40, 3), dtype=np.uint8) for _ in range(4)]
    buf = io.BytesIO()
    anim = AnimatedWebpStream(buf, duration_ms=125, lossless=True, loop=0)
    for f in frames:
        anim.add(f)
    anim.close()
    data = buf.getvalue()
    assert data[:4] == b"RIFF" and int.from_bytes(data[4:8], "little") == len(data) - 8
    with Image.open(io.BytesIO(data)) as im:
        assert im.n_frames == 4 and im.size == (40, 24) and im.is_animated
        for i, f in enumerate(frames):
            im.seek(i)
            assert np.array_equal(np.asarray(im.convert("RGB")), f)
            assert im.info["duration"] == 125


def test_webp_writer_lossy_frames_are_close_and_timed_by_fps(tmp_path):
    ramp = torch.linspace(-1, 1, 48).view(1, 1, 1, 1, 48).expand(1, 3, 3, 32, 48)
    x = (ramp + torch.tensor([-0.5, 0.0, 0.5]).view(1, 1, 3, 1, 1)).clamp(-1, 1)  # three distinct frames
    with WebpWriter(tmp_path / "v.webp", fps=16) as w:
        w.write(x)
    ref = video_io.to_uint8_frames(x)
    with Image.open(tmp_path / "v.webp") as im:
        assert im.n_frames == 3
        for i in range(3):
            im.seek(i)
            err = np.abs(np.asarray(im.convert("RGB")).astype(int) - ref[i].astype(int)).mean()
            assert err < 3  # lossy (quality 90), but these frames, in this order (they differ by ~64)
            assert im.info["duration"] == round(1000 / 16)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
@pytest.mark.parametrize("ext", ["webp", "mp4"])
def test_memory_stays_flat_over_many_frames(tmp_path, ext):
    """400 frames of 320x240 are 88 MiB of raw RGB: a writer keeping its frames would grow by that."""
    _needs(ext)
    h, w, n = 240, 320, 400
    frame = np.random.default_rng(1).integers(0, 256, (1, h, w, 3), dtype=np.uint8)
    raw = n * h * w * 3
    with open_video_writer(tmp_path / f"long.{ext}", fps=16) as wr:
        for _ in range(40):  # warm-up: encoder buffers, look-ahead, allocator pools
            wr.write(frame)
        before = _rss()
        for _ in range(n):
            wr.write(frame)
        grown = _rss() - before
    assert grown < raw / 8, (
        f"{ext}: RSS grew {grown / 2**20:.1f} MiB over {n} frames ({raw / 2**20:.0f} MiB raw)"
    )
    assert _count(tmp_path / f"long.{ext}") == n + 40


def test_mp4_without_pyav_is_announced_with_the_webp_written_instead(tmp_path, monkeypatch):
    monkeypatch.setattr(video_io, "have_av", lambda: False)
    msgs = []
    w = open_video_writer(tmp_path / "v.mp4", fps=8, log=msgs.append)
    assert isinstance(w, WebpWriter) and w.path == tmp_path / "v.webp"
    assert "constant memory" in msgs[0] and "pip install av" in msgs[0]
    w.abort()
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(not have_av(), reason="PyAV not installed")
def test_mp4_muxer_is_chosen_by_extension_not_by_the_partial_name(tmp_path):
    w = Mp4Writer(tmp_path / "v.mkv", fps=8)
    w.write(_frames(2))
    w.close()
    import av

    with av.open(str(tmp_path / "v.mkv")) as c:
        assert "matroska" in c.format.name


# -- the frame writer thread -------------------------------------------------------------------------------


class _Chunk:
    def __init__(self, frames):
        self._frames = frames

    def host_frames(self):
        return self._frames


class _SlowWriter:
    def __init__(self):
        self.writing = threading.Event()
        self.released = False
        self.frames = 0

    def write(self, arr):
        self.writing.set()
        time.sleep(0.3)
        assert not self.released, "written to after it was released"
        self.frames += arr.shape[0]


def test_an_interrupt_while_closing_stops_the_thread_before_the_writer_is_released():
    writer = _SlowWriter()
    sink = BackgroundFrameWriter(writer, max_in_flight=2)
    sink.submit(_Chunk(_frames(1)))
    sink.submit(_Chunk(_frames(1)))
    writer.writing.wait(5)
    real_join = sink._thread.join
    calls = []

    def join(timeout=None):
        calls.append(timeout)
        if len(calls) == 1:
            raise KeyboardInterrupt  # a Ctrl-C while close() waits
        return real_join(timeout)

    sink._thread.join = join
    with pytest.raises(KeyboardInterrupt):
        sink.close()
    assert not sink._thread.is_alive()  # joined before the exception left close()
    writer.released = True
    assert writer.frames == 1  # the second chunk was dropped, not written


# -- check_output_path --------------------------------------------------------------------------------------


def test_check_output_path_accepts_and_creates_nothing(tmp_path):
    assert check_output_path(tmp_path / "a" / "b" / "v.mp4") == tmp_path / "a" / "b" / "v.mp4"
    assert check_output_path(tmp_path / "v.WEBP").suffix == ".WEBP"
    assert not (tmp_path / "a").exists()
    assert check_output_path("~/v.mp4") == __import__("pathlib").Path.home() / "v.mp4"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("v.gif", r"unsupported video extension '\.gif'.*use \.mp4 \(or \.mov / \.mkv\) or \.webp"),
        ("video", "unsupported video no extension"),
        ("somedir/", "names a folder, not a video file"),
        ("file.txt/v.mp4", r"cannot create the output folder .*file\.txt is a file, not a folder"),
        ("x" * 250 + ".mp4", "file name is too long"),
        ("adir.mp4", r"adir\.mp4 is a folder: name a file in it"),
    ],
)
def test_check_output_path_refuses_with_the_reason(tmp_path, name, message):
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "adir.mp4").mkdir()
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(ValueError, match=message):
        check_output_path(str(tmp_path / name) + ("/" if name.endswith("/") else ""))
    assert sorted(os.listdir(tmp_path)) == before


def test_check_output_path_refuses_a_read_only_folder(tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(ro) else real(p, mode))
    with pytest.raises(ValueError, match=r"folder .*ro is not writable"):
        check_output_path(ro / "v.mp4")
    with pytest.raises(ValueError, match=r"ro \(where .*ro/new would be created\) is not writable"):
        check_output_path(ro / "new" / "v.mp4")


def test_a_failing_progress_callback_does_not_stop_the_video(tmp_path):
    """After SIGHUP the terminal is gone and printing progress raises: the frames still go to the file."""

    def closed_terminal(chunk, n):
        raise OSError(5, "Input/output error")

    with open_video_writer(tmp_path / "v.webp", fps=8) as w:
        with BackgroundFrameWriter(w, on_written=closed_terminal) as sink:
            for _ in range(3):
                sink.submit(_Chunk(_frames(2)))
    assert sink.frames_written == 6 and isinstance(sink.callback_error, OSError)
    assert _count(tmp_path / "v.webp") == 6
