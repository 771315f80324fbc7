"""Decode overlap (issue #8) on CPU: the ``ChunkResult`` frame API (``frames`` / ``wait_frames`` /
``host_frames``) gives the same frames and latents with ``overlap_decode`` on or off (a no-op on CPU) as
decoding the latents directly; the CLI's writer thread writes the same video as writing in the loop,
keeps at most 2 chunks in flight and hands a writer error to the main thread (partial file removed).
The CUDA side (side stream, no host sync, real overlap) is ``test_rollout_overlap_gpu.py``."""

import threading

import numpy as np
import pytest
import torch
from official_ref import randomize_

from wan_core.dit import WanDiT, WanDiTConfig
from wan_core.rollout.frame_writer import BackgroundFrameWriter
from wan_core.rollout.pipeline import StreamingPipeline
from wan_core.rollout.presets import get_preset
from wan_core.rollout.video_io import have_av, open_video_writer
from wan_core.vae.taehv import TAEHV, TAEHVConfig

PRESET = get_preset("self-forcing-1.3b").with_overrides(window_frames=6, sink_frames=1)


def _dit():
    cfg = WanDiTConfig(dim=32, ffn_dim=64, num_heads=2, num_layers=2, text_dim=8)
    return randomize_(WanDiT(cfg), 0, std=0.1).eval()


def _tae():
    cfg = TAEHVConfig(encoder_width=6, decoder_widths=(12, 8, 4, 4))
    return randomize_(TAEHV(cfg), 16, std=0.2).eval()


def _rollout(overlap, tae, num_chunks=3):
    pipe = StreamingPipeline(_dit(), PRESET, decoder=tae, overlap_decode=overlap)
    pipe.initialize_cache(torch.randn(1, 5, 8, generator=torch.Generator().manual_seed(1)), height=32,
                          width=48, num_chunks=num_chunks, seed=4)  # fmt: skip
    return pipe, list(pipe.stream())


def test_overlap_is_off_on_cpu_whatever_asked():
    tae = _tae()
    for asked in (None, True, False):
        pipe = StreamingPipeline(_dit(), PRESET, decoder=tae, overlap_decode=asked)
        assert pipe.overlap_decode is False
        pipe.initialize_cache(torch.randn(1, 5, 8), height=32, width=48, num_chunks=1)
        assert pipe.decode_stream is None and pipe.state.decoder_stream.side_stream is None


def test_frame_api_same_frames_with_overlap_on_and_off():
    tae = _tae()
    _, on = _rollout(True, tae)
    _, off = _rollout(False, tae)
    latents = torch.cat([r.latents for r in off], dim=2)
    whole = tae.decode(latents)  # the decoder applied to all latents at once (streaming == whole)
    for got in (on, off):
        assert torch.equal(torch.cat([r.latents for r in got], dim=2), latents)
        for name in ("frames", "wait_frames", "host_frames"):
            frames = [getattr(r, name) if name == "frames" else getattr(r, name)() for r in got]
            assert [f.shape[2] for f in frames] == [9, 12, 12]
            assert torch.equal(torch.cat(frames, dim=2), whole), name
        assert all(not r.decoded.overlapped and r.decoded.on_host() for r in got)
        assert got[0].host_frames() is got[0].frames  # CPU: no copy


def test_no_decoder_means_no_frames():
    pipe = StreamingPipeline(_dit(), PRESET)
    pipe.initialize_cache(torch.randn(1, 5, 8), height=32, width=48, num_chunks=1)
    r = pipe.generate(0)
    assert r.decoded is None and r.frames is None and r.host_frames() is None and r.wait_frames() is None


class _Chunk:
    """What the writer reads from a ChunkResult."""

    def __init__(self, frames, index=0):
        self.frames, self.index = frames, index

    def host_frames(self):
        return self.frames


def _frames(i, n=4, h=16, w=16):
    return torch.rand(1, 3, n, h, w, generator=torch.Generator().manual_seed(i)) * 2 - 1


def _mp4_frames(path):
    av = pytest.importorskip("av")
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


@pytest.mark.skipif(not have_av(), reason="PyAV not installed")
def test_writer_thread_writes_the_same_video_as_the_loop(tmp_path):
    chunks = [_frames(i, n=4 if i else 1) for i in range(4)]  # 1 + 4 + 4 + 4 = 13 frames, keep 11
    with open_video_writer(tmp_path / "loop.mp4", fps=8) as w:
        n = 0
        for f in chunks:
            w.write(f[:, :, : max(0, 11 - n)])
            n += f[:, :, : max(0, 11 - n)].shape[2]
    seen = []
    with open_video_writer(tmp_path / "thread.mp4", fps=8) as w:
        with BackgroundFrameWriter(
            w, max_frames=11, on_written=lambda c, k: seen.append((c.index, k))
        ) as sink:
            for i, f in enumerate(chunks):
                sink.submit(_Chunk(f, i))
    assert sink.frames_written == 11 and seen == [(0, 1), (1, 4), (2, 4), (3, 2)]
    a, b = _mp4_frames(tmp_path / "loop.mp4"), _mp4_frames(tmp_path / "thread.mp4")
    assert a.shape == (11, 16, 16, 3) and np.array_equal(a, b)


class _Boom(RuntimeError):
    pass


@pytest.mark.parametrize("ext", ["mp4", "webp"])
def test_writer_error_reaches_the_main_thread_and_removes_the_file(tmp_path, ext):
    if ext == "mp4" and not have_av():
        pytest.skip("PyAV not installed")
    out = tmp_path / f"clip.{ext}"

    class Failing:
        def __init__(self, frames, fail):
            self.frames, self.fail, self.index = frames, fail, 0

        def host_frames(self):
            if self.fail:
                raise _Boom("disk full")
            return self.frames

    with pytest.raises(_Boom, match="disk full"):
        with open_video_writer(out, fps=8) as w:
            with BackgroundFrameWriter(w) as sink:
                sink.submit(Failing(_frames(0), False))
                sink.submit(Failing(_frames(1), True))
                for i in range(2, 6):  # the error comes out at a later submit or at the end of the block
                    sink.submit(Failing(_frames(i), False))
    assert not out.exists()
    assert not sink._thread.is_alive()


def test_main_thread_error_drops_pending_chunks_and_joins(tmp_path):
    written = []
    holder = {}
    entered = threading.Event()

    class Slow(_Chunk):
        def host_frames(self):  # chunk 0 is still being waited for when the main thread fails
            entered.set()
            holder["sink"]._stop.wait(10)
            return self.frames

    out = tmp_path / "clip.webp"
    with pytest.raises(_Boom):
        with open_video_writer(out, fps=8) as w:
            with BackgroundFrameWriter(
                w, max_in_flight=3, on_written=lambda c, k: written.append(c.index)
            ) as sink:
                holder["sink"] = sink
                for i in range(3):
                    sink.submit(Slow(_frames(i), i))
                assert entered.wait(10)  # the writer is inside chunk 0
                raise _Boom("interrupted")
    assert not sink._thread.is_alive() and not out.exists()
    assert written == [0]  # the chunk in progress finishes; the two pending ones are dropped


def test_at_most_two_chunks_in_flight():
    release = [threading.Event() for _ in range(5)]

    class Gated(_Chunk):
        def host_frames(self):
            release[self.index].wait(10)
            return self.frames

    class Sink:
        frames_written = 0

        def write(self, arr):
            self.frames_written += arr.shape[0]

    sink = BackgroundFrameWriter(Sink(), max_in_flight=2)
    submitted = []

    def producer():
        for i in range(5):
            sink.submit(Gated(_frames(i, n=1), i))
            submitted.append(i)

    t = threading.Thread(target=producer)
    t.start()
    for _ in range(1000):  # until the first two are in (a loaded machine may take a while)
        if len(submitted) >= 2:
            break
        t.join(0.01)
    t.join(0.3)
    assert t.is_alive() and submitted == [0, 1]  # the third submit waits for a free slot
    for i in range(5):
        release[i].set()
    t.join(10)
    sink.close()
    assert submitted == [0, 1, 2, 3, 4] and sink.chunks_written == 5
    assert sink.peak_pending == 2 and sink.pending == 0 and sink.writer.frames_written == 5
    with pytest.raises(ValueError, match="max_in_flight"):
        BackgroundFrameWriter(Sink(), max_in_flight=0)


# -- the CLI -----------------------------------------------------------------------------------------
CLI_ARGS = dict(prompt="a red fox running through snow", frames=21, height=32, width=48)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    from tiny_models import make_tiny_models

    d = tmp_path_factory.mktemp("models")
    make_tiny_models(d, families=("t2v",))
    return d


def _cli(models_dir, out):
    from wan_core.__main__ import main

    a = CLI_ARGS
    return main(
        ["generate", "--preset", "self-forcing-1.3b", "--prompt", a["prompt"], "--models-dir", str(models_dir),
         "--frames", str(a["frames"]), "--height", str(a["height"]), "--width", str(a["width"]),
         "--decoder", "taehv", "--device", "cpu", "--out", str(out)]
    )  # fmt: skip


@pytest.mark.skipif(not have_av(), reason="PyAV not installed")
def test_cli_writer_thread_writes_the_same_video_as_the_plain_loop(models_dir, tmp_path, capsys):
    """The CLI's threaded writer == the loop it replaced (generate, write the frames in the loop, finalize)."""
    from wan_core.rollout.loading import build_pipeline, encode_text, resolve_files

    assert _cli(models_dir, tmp_path / "cli.mp4") == 0
    assert "chunk 2/2" in capsys.readouterr().out
    a = CLI_ARGS
    preset = get_preset("self-forcing-1.3b")
    files = resolve_files(preset, models_dir, decoder="taehv")
    emb = encode_text(files["text_encoder"], [a["prompt"]])[0][None]
    pipe = build_pipeline(preset, files, decoder="taehv")
    pipe.initialize_cache(emb, height=a["height"], width=a["width"], num_frames=a["frames"], seed=0)
    written = 0
    with open_video_writer(tmp_path / "loop.mp4", preset.fps) as w:
        for i in range(pipe.num_chunks):
            r = pipe.generate(i)
            f = r.frames[:, :, : max(0, a["frames"] - written)]
            w.write(f)
            written += f.shape[2]
            pipe.finalize(i)
    cli, loop = _mp4_frames(tmp_path / "cli.mp4"), _mp4_frames(tmp_path / "loop.mp4")
    assert cli.shape == (21, 32, 48, 3) and np.array_equal(cli, loop)


@pytest.mark.skipif(not have_av(), reason="PyAV not installed")
def test_cli_writer_error_aborts_the_partial_file(models_dir, tmp_path, monkeypatch, capsys):
    from wan_core.rollout import video_io

    calls = []
    real = video_io.Mp4Writer._write

    def failing(self, arr):
        calls.append(arr.shape[0])
        if len(calls) == 2:
            raise ValueError("simulated encoder failure at chunk 2")
        real(self, arr)

    monkeypatch.setattr(video_io.Mp4Writer, "_write", failing)
    out = tmp_path / "broken.mp4"
    assert _cli(models_dir, out) == 2
    captured = capsys.readouterr()
    assert "simulated encoder failure at chunk 2" in captured.err
    assert calls[:2] == [9, 12] and not out.exists()


# -- the benchmark -----------------------------------------------------------------------------------
def test_bench_overlap_decode_reports_end_to_end_per_mode(tmp_path):
    import json

    from bench import bench_ar

    out = tmp_path / "overlap.json"
    bench_ar.main(
        ["--tiny", "--device", "cpu", "--height", "32", "--width", "32", "--warmup", "0", "--repeats", "1",
         "--chunks", "3", "--paths", "ours", "--decoder", "taehv", "--overlap-decode", "--json", str(out)]
    )  # fmt: skip
    rep = json.loads(out.read_text())
    assert rep["config"]["overlap_decode"] is True
    path = rep["paths"]["ours"]
    # the sequential per-segment numbers are still there
    assert len(path["decode_ms_per_chunk"]["taehv"]) == 3 and path["fps_end_to_end"]["taehv"] > 0
    modes = path["overlap_decode"]["taehv"]
    for mode in ("overlap", "inline"):
        m = modes[mode]
        assert m["frames"] == 9 + 12 + 12 == path["frames_decoded"]["taehv"]
        ready = m["host_ready_ms_per_chunk"]
        assert len(ready) == 3 and ready == sorted(ready) and ready[0] > 0
        assert m["first_chunk_latency_ms"] == ready[0] and m["wall_s"] == pytest.approx(ready[-1] / 1e3)
        assert m["fps_end_to_end"] == pytest.approx(33 / m["wall_s"])
        assert m["decode_stream"] == "DiT stream"  # CPU: no side stream
    b = modes["bound"]
    dec = path["decode_ms_per_chunk"]["taehv"]
    assert b["sequential_wall_s"] == pytest.approx(path["dit_total_s"] + sum(dec) / 1e3)
    assert b["ideal_overlap_wall_s"] == pytest.approx(path["dit_total_s"] + dec[-1] / 1e3)
