"""``python -m wan_core live`` on tiny files: prompts from standard input (one line = a new prompt),
the video written as it goes and closed at end of input; --max-chunks stops it; a bad request is
refused before anything loads; SIGINT keeps the frames so far."""

import io
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import av
import pytest
from tiny_models import make_tiny_models

from wan_core.__main__ import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    make_tiny_models(d, families=("t2v",))
    return d


def _frames(path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(c.streams.video[0]))


def _args(models_dir, out, *extra):
    return ["live", "--preset", "self-forcing-1.3b", "--prompt", "a red fox", "--models-dir", str(models_dir),
            "--height", "32", "--width", "48", "--decoder", "vae", "--out", str(out), *extra]  # fmt: skip


def _lines_then_wait(*lines):
    """Standard input that gives ``lines`` and then no end of input (a terminal left open)."""
    yield from lines
    threading.Event().wait()


def test_prompts_from_stdin_until_max_chunks(models_dir, tmp_path, capsys):
    from wan_core.__main__ import build_parser
    from wan_core.live.cli import run_live_cli

    out = tmp_path / "live.mp4"
    args = build_parser().parse_args(_args(models_dir, out, "--max-chunks", "6", "--transition", "2"))
    stdin = _lines_then_wait("x" * 3000 + "\n", "\n", "a snowy owl\n")
    rc = run_live_cli(args, stdin=stdin)
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "prompt refused: prompt has 3000 characters" in text and "prompt 'a snowy owl' from chunk" in text
    assert "weight 0.50" in text and "weight 1.00" in text
    assert "wrote 69 frames (6 chunks, ended by max_chunks)" in text  # 18 latent frames -> 69 frames
    assert _frames(out) == 69


def test_end_of_input_stops_the_stream(models_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "eof.mp4"
    monkeypatch.setattr(sys, "stdin", io.StringIO("a snowy owl\n"))
    # end of input at once: the stream stops before its first chunk, nothing is written
    assert main(_args(models_dir, out)) == 3
    assert "before the first chunk: no video written" in capsys.readouterr().out and not out.exists()


def test_bad_request_refused_before_loading(tmp_path, capsys):
    rc = main(_args(tmp_path / "no_models", tmp_path / "x.mp4", "--max-chunks", "0"))
    assert rc == 2 and "--max-chunks must be at least 1" in capsys.readouterr().err
    rc = main(_args(tmp_path / "no_models", tmp_path / "x.mp4", "--width", "50"))
    assert rc == 2 and not (tmp_path / "x.mp4").exists()


def test_sigint_keeps_the_frames_so_far(models_dir, tmp_path):
    out = tmp_path / "sig.mp4"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "wan_core", *_args(models_dir, out)], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("live "):
            break
    proc.stdin.write("a snowy owl\n")
    proc.stdin.flush()
    for line in proc.stdout:
        lines.append(line)
        if "weight 1.00" in line:
            break
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, "".join(lines) + rest
    assert "kept" in rest and _frames(out) > 0


def test_webp_refused_before_loading(tmp_path, capsys):
    out = tmp_path / "x.WebP"
    rc = main(_args(tmp_path / "no_models", out))
    err = capsys.readouterr().err
    assert rc == 2 and "cannot be written as .webp" in err and "use .mp4 for endless streams" in err
    assert not out.exists() and not list(tmp_path.iterdir())


def test_prompt_embeddings_kept_are_bounded():
    import torch

    from wan_core.live.prompt_cache import EncodedPrompts

    encoded = []

    def encode(text):
        encoded.append(text)
        return torch.zeros(1, 2, 4)

    prompts = EncodedPrompts(encode, capacity=16)
    for i in range(40):
        prompts(f"line {i}")
    assert len(prompts) == 16 and len(encoded) == 40
    prompts("line 39")  # recent: kept, not encoded again
    prompts("line 0")  # long gone: encoded again
    assert encoded[40:] == ["line 0"] and len(prompts) == 16


def test_the_cli_keeps_a_bounded_set_of_prompts(models_dir, tmp_path, monkeypatch):
    from wan_core.__main__ import build_parser
    from wan_core.live import cli, prompt_cache

    made = []

    class Recorded(prompt_cache.EncodedPrompts):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            made.append(self)

    monkeypatch.setattr(prompt_cache, "EncodedPrompts", Recorded)
    args = build_parser().parse_args(_args(models_dir, tmp_path / "b.mp4", "--max-chunks", "2"))
    assert cli.run_live_cli(args, stdin=_lines_then_wait("a snowy owl\n"), say=lambda *a, **k: None) == 0
    assert [p.capacity for p in made] == [cli.PROMPTS_KEPT] and 1 <= len(made[0]) <= cli.PROMPTS_KEPT
