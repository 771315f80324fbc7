"""The Streaming AR Sampler's in-process path (``nodes.core_bridge.sample``) on tiny models from files,
outside a ComfyUI server: the live preview decoded by the pipeline (on CUDA on a side stream) and sent
from a writer thread equals the inline preview; a preview VAE of the wrong family fails before any
chunk; Krea realtime runs in the node (re-encoded anchor with a full Wan VAE as preview_vae, Krea's
keep_first_frame without one)."""

import logging

import numpy as np
import pytest
import torch
from cpu_stand_ins import comfy_runtime_outside
from tiny_models import TEXT_DIM, make_tiny_models

from nodes import core_bridge
from nodes.payloads import PromptSegment, StreamConditioning

CHUNKS = 4


class _Recorder:
    """Stands in for ComfyUI's progress bar / preview events (``comfy_runtime.StepProgress``)."""

    events: list = []

    def __init__(self, num_chunks, steps_per_chunk, node_id, prompt_id):
        self.num_chunks, self.steps_per_chunk = num_chunks, steps_per_chunk

    def step(self, chunk, step):
        self.events.append(("step", chunk, step))

    def chunk_frames(self, chunk, frames, fps):
        self.events.append(("frames", chunk, frames.clone()))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    comfy_runtime_outside(mp, _Recorder)
    root = tmp_path_factory.mktemp("models")
    made = make_tiny_models(root, families=("t2v", "ti2v"))
    for fam in made.values():
        fam["paths"] = {role: str(root / rel) for role, rel in fam["files"].items()}
    info = made["t2v"]
    yield {
        "info": info,
        "dit": core_bridge.load_dit(info["paths"]["dit"], "auto", "auto", False, False),
        "taehv": core_bridge.load_taehv(info["paths"]["taehv"], "auto"),
        "vae": core_bridge.load_vae(info["paths"]["vae"], "auto"),
        "taehv_5b": core_bridge.load_taehv(made["ti2v"]["paths"]["taehv"], "auto"),
    }
    mp.undo()


def _cond():
    g = torch.Generator().manual_seed(5)
    return StreamConditioning(segments=(PromptSegment(0, "a", torch.randn(1, 6, TEXT_DIM, generator=g)),))


def _sample(env, preset="self-forcing-1.3b", preview="taehv"):
    _Recorder.events = []
    info = env["info"]
    latent = core_bridge.sample(
        env["dit"], _cond(), width=info["width"], height=info["height"], frames=1, preset=preset, seed=3,
        window_frames=-1, sink_frames=-1, chunks=CHUNKS, preview_vae=env[preview] if preview else None,
    )  # fmt: skip
    return latent, list(_Recorder.events)


def _previews(events):
    return [(e[1], e[2]) for e in events if e[0] == "frames"]


def test_background_preview_equals_inline_and_keeps_chunk_order(env, monkeypatch):
    inline_latent, inline_events = _sample(env)
    sent = []
    real_write = core_bridge._PreviewSender.write

    def write_on_thread(self, frames):  # record which thread sends each preview
        import threading

        sent.append(threading.current_thread().name)
        return real_write(self, frames)

    monkeypatch.setattr(core_bridge, "_previews_in_background", lambda pipe: True)
    monkeypatch.setattr(core_bridge._PreviewSender, "write", write_on_thread)
    bg_latent, bg_events = _sample(env)
    assert sent == ["wan-frame-writer"] * CHUNKS  # really sent from the writer thread
    torch.testing.assert_close(bg_latent, inline_latent, rtol=0, atol=0)
    inline, bg = _previews(inline_events), _previews(bg_events)
    assert [c for c, _ in bg] == [c for c, _ in inline] == list(range(CHUNKS))
    for (_, a), (_, b) in zip(inline, bg):
        assert a.shape == b.shape and a.shape[-1] == 3 and 0 <= float(a.min()) and float(a.max()) <= 1
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # as many frames as the video: 1 + 4 (latent frames - 1)
    assert sum(f.shape[0] for _, f in bg) == 1 + 4 * (bg_latent.shape[2] - 1)


def test_inline_preview_arrives_before_the_next_chunk_starts(env):
    _, events = _sample(env)
    for c in range(CHUNKS - 1):
        shown = next(i for i, e in enumerate(events) if e[0] == "frames" and e[1] == c)
        nxt = next(i for i, e in enumerate(events) if e[0] == "step" and e[1] == c + 1)
        assert shown < nxt


def test_preview_equals_a_plain_streaming_decode_of_the_latents(env):
    """The pipeline's decoder (normalized latents) == the node's own chunk decoder on the same latents."""
    from wan_core.vae.latent_norm import to_normalized

    latent, events = _sample(env)
    z = to_normalized(latent)
    dec = core_bridge._decoder_on_device(env["taehv"]).stream_decoder()
    n = z.shape[2] // CHUNKS
    for c, frames in _previews(events):
        ref = core_bridge._image_frames(dec.decode_chunk(z[:, :, c * n : (c + 1) * n]))
        # both quantised to 8 bits; the latents went through float32 host copies: at most one level apart
        assert frames.shape == ref.shape
        diff = (frames * 255).round() - (ref.clamp(0, 1) * 255).round()
        assert float(diff.abs().max()) <= 1.0


def test_preview_vae_of_the_wrong_family_fails_before_any_chunk(env):
    with pytest.raises(ValueError, match=r"16-channel latents.*Wan2\.2 TI2V 5B: 48"):
        _sample(env, preview="taehv_5b")
    assert not [e for e in _Recorder.events if e[0] == "step"]


def test_krea_realtime_runs_in_the_node(env, caplog):
    with caplog.at_level(logging.WARNING, logger="wan_stream"):
        keep_first, events = _sample(env, preset="krea-realtime-14b", preview="taehv")
    assert "keep_first_frame" in caplog.text and "preview_vae" in caplog.text
    assert [c for c, _ in _previews(events)] == list(range(CHUNKS))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="wan_stream"):
        reencoded, _ = _sample(env, preset="krea-realtime-14b", preview="vae")
    assert "keep_first_frame" not in caplog.text
    assert keep_first.shape == reencoded.shape and torch.isfinite(reencoded).all()
    # chunks 0-1 use latent frame 0 as the anchor either way (K = n = 3); from chunk 2 on the anchor is
    # the re-encoded pixel frame, so those chunks differ
    n = keep_first.shape[2] // CHUNKS
    torch.testing.assert_close(keep_first[:, :, : 2 * n], reencoded[:, :, : 2 * n], rtol=0, atol=0)
    assert not np.allclose(keep_first[:, :, 2 * n :].numpy(), reencoded[:, :, 2 * n :].numpy())
