"""``python -m wan_core generate`` as a subprocess, signalled mid-video while an older video is at
``--out``: SIGINT / SIGTERM / SIGHUP keep the frames made so far as a complete, playable file (exit
130); a second Ctrl-C aborts (exit 3) and SIGKILL kills: the older file is then byte for byte intact and
the next run removes the killed run's partial file. Never a partial file at the destination."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny_models import make_tiny_models

av = pytest.importorskip("av")

ROOT = Path(__file__).resolve().parents[1]
# 4001 frames = 334 chunks of the tiny model (~15 s): long enough to be signalled in the middle
LONG = ["--frames", "4001", "--height", "32", "--width", "48", "--decoder", "taehv", "--device", "cpu"]
OLD = b"an older video that must survive \x00\x01" * 100


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    make_tiny_models(d, families=("t2v",))
    return d


def _start(models_dir: Path, out: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "wan_core", "generate", "--preset", "self-forcing-1.3b", "--prompt", "a fox",
           "--models-dir", str(models_dir), "--out", str(out), *LONG, *extra]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_chunks(proc: subprocess.Popen, n: int, timeout: float = 240) -> list[str]:
    """Read stdout until chunk ``n`` is reported written (the video is then mid-way)."""
    lines, end = [], time.monotonic() + timeout
    while time.monotonic() < end:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith(f"chunk {n}/"):
            return lines
    proc.kill()
    raise AssertionError(f"chunk {n} never reported: {''.join(lines)[-2000:]}\n{proc.stderr.read()[-2000:]}")


def _finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def _decoded_frames(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def _partials(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".partial"))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_signal_mid_video_keeps_a_playable_file_of_the_frames_made(models_dir, tmp_path, sig):
    out = tmp_path / "fox.mp4"
    out.write_bytes(OLD)
    proc = _start(models_dir, out)
    _wait_for_chunks(proc, 5)
    assert out.read_bytes() == OLD  # mid-run: the older file is still there, untouched
    assert len(_partials(tmp_path)) == 1  # the new video grows beside it
    proc.send_signal(sig)
    rc, stdout, stderr = _finish(proc)
    assert rc == 130, stderr
    assert "Traceback" not in stderr and stderr.count("\n") == 1  # one line, not a traceback
    assert f"{sig.name}: stopping after the current chunk" in stderr
    kept = [ln for ln in stdout.splitlines() if ln.startswith(f"stopped by {sig.name}: kept ")]
    assert len(kept) == 1, stdout[-2000:]
    frames = int(kept[0].split("kept ")[1].split(" frames")[0])
    assert 5 * 12 <= frames < 4001  # at least the 5 chunks seen, not the whole video
    assert _decoded_frames(out) == frames  # a complete, playable mp4 with exactly those frames
    assert _partials(tmp_path) == []


def test_a_second_ctrl_c_aborts_and_the_older_file_stays(models_dir, tmp_path):
    out = tmp_path / "fox.mp4"
    out.write_bytes(OLD)
    # a bigger frame: ~1 s per chunk on the CPU, so the second Ctrl-C comes before the current chunk ends
    proc = _start(models_dir, out, "--frames", "401", "--height", "256", "--width", "384")
    _wait_for_chunks(proc, 2)
    proc.send_signal(signal.SIGINT)
    assert "SIGINT: stopping after the current chunk" in proc.stderr.readline()  # the first one is taken
    proc.send_signal(signal.SIGINT)  # (two at once would be merged into one by the kernel)
    rc, stdout, stderr = _finish(proc)
    assert rc == 3, stderr
    assert "Traceback" not in stderr
    assert "interrupted (SIGINT): aborted, no video written" in stderr and str(out) in stderr
    assert out.read_bytes() == OLD
    assert _partials(tmp_path) == []


def test_sigkill_leaves_the_older_file_and_the_next_run_cleans_up(models_dir, tmp_path):
    out = tmp_path / "fox.mp4"
    out.write_bytes(OLD)
    proc = _start(models_dir, out)
    _wait_for_chunks(proc, 5)
    proc.kill()  # SIGKILL: no handler runs
    proc.wait(timeout=60)
    assert out.read_bytes() == OLD
    left = _partials(tmp_path)
    assert left == [f".fox.mp4.{proc.pid}.partial"]  # named after the destination and the dead process
    # the next run (a short one) replaces the older file and removes the killed run's leftover
    short = [a if a != "4001" else "21" for a in LONG]
    r = subprocess.run(
        [sys.executable, "-m", "wan_core", "generate", "--preset", "self-forcing-1.3b", "--prompt", "a fox",
         "--models-dir", str(models_dir), "--out", str(out), *short],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert f"removed 1 partial file(s) left by an interrupted run: {left[0]}" in r.stdout
    assert _decoded_frames(out) == 21 and _partials(tmp_path) == []


def test_an_error_before_the_video_leaves_the_older_file(models_dir, tmp_path):
    out = tmp_path / "fox.mp4"
    out.write_bytes(OLD)
    r = subprocess.run(
        [sys.executable, "-m", "wan_core", "generate", "--preset", "self-forcing-1.3b", "--prompt", "a fox",
         "--models-dir", str(models_dir), "--out", str(out), *LONG[:-2], "--device", "banana"],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert r.returncode == 2 and "--device 'banana' is not a device name" in r.stderr
    assert out.read_bytes() == OLD and _partials(tmp_path) == []
