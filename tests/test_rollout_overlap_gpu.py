"""GPU-only checks of the decode overlap (skipped without CUDA; the CPU API checks are
``test_rollout_overlap.py``): frames and latents with overlap == without; the decode really runs on the
side stream (recorded stream + profiler trace) and the main stream does not wait for it; the latents
survive the main stream dropping them while a slow decode still reads them (``record_stream``); no
host sync in ``generate`` + ``finalize`` with a decoder; a writer thread polling for frames does not
break CUDA-graph captures on the rollout thread (``graphs.CAPTURE_LOCK``)."""

import json

import pytest
import torch
from official_ref import max_rel_err, randomize_

from wan_core.dit import WanDiT, WanDiTConfig
from wan_core.rollout.frame_writer import BackgroundFrameWriter
from wan_core.rollout.pipeline import StreamingPipeline
from wan_core.rollout.presets import get_preset
from wan_core.vae.stream import rollout_decoder
from wan_core.vae.taehv import TAEHV, TAEHVConfig

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

BF16_TOL = 2e-2
PRESET = get_preset("self-forcing-1.3b").with_overrides(window_frames=6, sink_frames=1)  # 3-frame chunks
SIZE = dict(height=64, width=96)
SLOW_CYCLES = 2_000_000_000  # torch.cuda._sleep per decode: ~1 s at ~2 GHz, far longer than the tiny DiT


def _model():
    cfg = WanDiTConfig(dim=256, ffn_dim=512, num_heads=2, num_layers=3, text_dim=64)
    return randomize_(WanDiT(cfg), 0, std=0.05).to("cuda", torch.bfloat16).eval()


def _tae():
    cfg = TAEHVConfig(encoder_width=8, decoder_widths=(32, 16, 16, 8))
    return randomize_(TAEHV(cfg), 16, std=0.2).to("cuda", torch.bfloat16).eval()


def _ctx():
    return torch.randn(1, 12, 64, generator=torch.Generator().manual_seed(0))


class _SlowStream:
    def __init__(self, inner, cycles, streams):
        self.inner, self.cycles, self.streams = inner, cycles, streams

    def decode_chunk(self, latents):
        self.streams.append(torch.cuda.current_stream())
        if self.cycles:
            torch.cuda._sleep(self.cycles)  # a decode that takes long on the device
        return self.inner.decode_chunk(latents)


class SlowDecoder:
    """A TAEHV stream-decoder factory that records the stream each decode is enqueued on."""

    def __init__(self, tae, cycles=0):
        self.factory, self.cycles, self.streams = rollout_decoder(tae), cycles, []

    def stream_decoder(self):
        return _SlowStream(self.factory.stream_decoder(), self.cycles, self.streams)


def _pipe(dit, decoder, overlap, **kw):
    kw = {"cuda_graphs": False, "compile": False, "fuse_qkv": False, **kw}
    return StreamingPipeline(dit, PRESET, decoder=decoder, overlap_decode=overlap, **kw)


@torch.no_grad()
def _video(pipe, num_chunks=5):
    """Frames and latents of a video; keeps no reference to the pipeline's latents (only clones), so
    the rollout frees them as its window moves on while an overlapped decode may still be pending."""
    pipe.initialize_cache(_ctx(), num_chunks=num_chunks, seed=3, **SIZE)
    decoded, latents = [], []
    for r in pipe.stream():
        decoded.append(r.decoded)
        latents.append(r.latents.clone())
        del r
    frames = torch.cat([d.host() for d in decoded], dim=2).float()
    return frames, torch.cat(latents, dim=2).float()


def test_overlap_on_by_default_on_cuda_and_same_frames():
    dit, tae = _model(), _tae()
    pipe = _pipe(dit, tae, None)
    assert pipe.overlap_decode
    on_frames, on_lat = _video(pipe)
    assert pipe.decode_stream is not None
    off_frames, off_lat = _video(_pipe(dit, tae, False))
    assert on_frames.shape == (1, 3, 1 + 4 * 14, 64, 96)
    err = max_rel_err(on_frames, off_frames)
    print(
        f"\noverlap vs inline decode: frames bit-equal {torch.equal(on_frames, off_frames)}, max rel err {err:.2e}"
    )
    assert err < BF16_TOL and max_rel_err(on_lat, off_lat) < BF16_TOL


def test_slow_decode_on_side_stream_reads_the_right_latents():
    """The main stream races ahead and frees the latents of evicted chunks; a decode that is ~1 s late
    still decodes what the DiT produced (``record_stream`` on the latents)."""
    dit, tae = _model(), _tae()
    _video(_pipe(dit, tae, True))  # warm-up (cuBLAS, cuDNN)
    slow = SlowDecoder(tae, SLOW_CYCLES)
    pipe = _pipe(dit, slow, True)
    frames, lat = _video(pipe)
    ref_frames, ref_lat = _video(_pipe(dit, tae, False))
    side, main = pipe.decode_stream, torch.cuda.current_stream()
    assert len(slow.streams) == 5 and all(s == side for s in slow.streams) and side != main
    assert max_rel_err(lat, ref_lat) < BF16_TOL
    assert max_rel_err(frames, ref_frames) < BF16_TOL


@torch.no_grad()
def test_main_stream_does_not_wait_for_the_decode():
    dit, tae = _model(), _tae()
    slow = SlowDecoder(tae, 0)
    pipe = _pipe(dit, slow, True)
    # warm-up on the same pipeline: the side stream (kept across videos) gets its allocator blocks and
    # pinned buffers now, so no allocation during the check can serialize the streams
    _video(pipe, num_chunks=3)
    slow.cycles = SLOW_CYCLES  # from the next video on
    pipe.initialize_cache(_ctx(), num_chunks=3, seed=3, **SIZE)
    r0 = pipe.generate(0)
    pipe.finalize(0)
    r1 = pipe.generate(1)
    pipe.finalize(1)
    main_done = torch.cuda.Event()
    main_done.record()
    main_done.synchronize()  # the DiT work of two chunks is done ...
    assert not r0.decoded.on_host()  # ... while chunk 0's (slow) decode is still running on the side stream
    assert r1.host_frames().shape == (1, 3, 12, 64, 96) and r0.decoded.on_host()
    f0 = r0.wait_frames()  # device frames: the current stream now waits for the decode (device side)
    assert f0.is_cuda and torch.equal(f0.cpu(), r0.host_frames())


@torch.no_grad()
def test_decode_kernels_run_on_another_stream_in_the_profiler_trace(tmp_path):
    from torch.profiler import ProfilerActivity, profile

    dit, tae = _model(), _tae()
    pipe = _pipe(dit, tae, True)
    _video(pipe, num_chunks=2)  # warm-up
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        _video(pipe, num_chunks=3)
    path = tmp_path / "trace.json"
    prof.export_chrome_trace(str(path))
    events = json.loads(path.read_text())["traceEvents"]
    streams = {e.get("args", {}).get("stream") for e in events if e.get("cat") == "kernel"}
    streams.discard(None)
    print(f"\nkernel streams in the trace: {sorted(streams)}")
    assert len(streams) >= 2  # the DiT's stream and the decode side stream


def test_no_host_sync_in_generate_and_finalize_with_a_decoder():
    pipe = _pipe(_model(), _tae(), True)
    with torch.no_grad():
        pipe.initialize_cache(_ctx(), num_chunks=4, seed=3, **SIZE)
        pipe.generate(0).host_frames()  # lazy initialisation (cuBLAS, cuDNN, pinned pool) outside the check
        pipe.finalize(0)
        torch.cuda.synchronize()
        results = []
        torch.cuda.set_sync_debug_mode("error")
        try:
            for i in (1, 2, 3):
                results.append(pipe.generate(i))  # DiT steps + enqueued decode and D2H copy
                pipe.finalize(i)
        finally:
            torch.cuda.set_sync_debug_mode(0)
        assert [r.host_frames().shape[2] for r in results] == [12, 12, 12]


def test_writer_thread_does_not_break_graph_captures():
    """CUDA graphs captured on the rollout thread while a writer thread polls for decoded frames (the
    decode is slowed down so the writer is still polling during the captures of chunks 1 and 2): every
    capture succeeds (no fallback to eager) and the frames equal the graph-less inline decode."""

    class Collect:
        def __init__(self):
            self.arrays = []

        def write(self, arr):
            self.arrays.append(torch.from_numpy(arr.copy()))

    dit, tae = _model(), _tae()
    pipe = _pipe(dit, SlowDecoder(tae, SLOW_CYCLES // 4), True, cuda_graphs=True)
    collected = Collect()
    with torch.no_grad(), BackgroundFrameWriter(collected) as sink:
        pipe.initialize_cache(_ctx(), num_chunks=5, seed=3, **SIZE)
        for i in range(5):
            sink.submit(pipe.generate(i))
            pipe.finalize(i)
    fr = pipe.forward_runner
    assert fr.enabled and fr.captures == 3, "a graph capture failed (fell back to eager)"
    ref, _ = _video(_pipe(dit, tae, False))
    ref_u8 = ((ref[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0)
    got = torch.cat(collected.arrays)
    assert got.shape == ref_u8.shape
    assert (got.int() - ref_u8.int()).abs().float().mean() < 2.0  # bf16 graphs vs eager, in uint8 steps
