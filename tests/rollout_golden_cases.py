"""Golden rollouts of every preset on tiny random weights (CPU, fp32): the cases, the models, the runs.

One module for both sides: ``tools/make_rollout_goldens.py`` runs every case and stores what it returns
in ``tests/data/rollout_goldens.safetensors``; ``tests/test_rollout_goldens.py`` runs the same case again
and asserts ``torch.equal`` with the stored tensors. The goldens were recorded from the pipeline before
its split into plug-in schemes (issue 12); every later version must reproduce them exactly.

What a case stores (keys ``<case>/<name>``):

- ``chunk<i>``: the chunk's clean latents ``ChunkResult.latents`` ``[B, C, n, h, w]`` (cloned when the
  chunk comes out, before the next call);
- ``frames<i>``: its decoded frames ``ChunkResult.frames`` where a tiny decoder is attached;
- ``progress``: every progress callback ``(steps done, total steps or -1 for None, chunk)``, int64 ``[N, 3]``.

The cases use the pipeline only through its public API (constructor, ``initialize_cache``,
``switch_prompt``, ``generate``, ``finalize``, ``stream``, ``num_chunks``) with prompt *embeddings*
(seeded random ``[B, L, 4096]``), so no text encoder is involved. Every model is built here from
``WanDiTConfig`` / the VAE configs and filled by ``_randomize`` (seeded, sorted parameter names), fresh
for every case, so a case depends on nothing but its own definition. ``deterministic()`` runs a case on
one thread with deterministic algorithms: exact equality holds on the same machine type and PyTorch build
(another CPU's kernels may round differently; regenerate on the unchanged main there).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from wan_core.dit import DualExpertDiT, WanDiT, WanDiTConfig
from wan_core.rollout import EulerSchedule, StreamingPipeline, get_preset
from wan_core.vae import TAEHV, TAEHVConfig, WanVAE21, WanVAE21Config, WanVAE22, WanVAE22Config

__all__ = ["CASES", "GoldenCase", "deterministic", "run_case"]

TEXT_DIM = 4096  # prompt embeddings as UMT5 gives them
CLIP_DIM = 32  # the tiny CLIP stand-in's feature width (the I2V DiT's clip_dim)
H, W = 32, 48  # pixels -> latent 4 x 6 -> 2 x 3 = 6 tokens per latent frame (stride 8, patch 2)
SMALL_H, SMALL_W = 16, 32  # cases that keep decoded frames: latent 2 x 4 -> 1 x 2 tokens per frame
TI2V_H, TI2V_W = 64, 64  # Wan2.2 5B (stride 16): latent 4 x 4 -> 2 x 2 tokens per frame
TI2V_SMALL = 32  # ... with decoded frames: latent 2 x 2 -> 1 token per frame
DIT = dict(dim=32, ffn_dim=64, num_heads=2, num_layers=3)  # 3 layers: a frame's K/V can depend on others


# -- models -----------------------------------------------------------------------------------------------
def _randomize(module: torch.nn.Module, seed: int, std: float) -> torch.nn.Module:
    """Every parameter (sorted by name) from one seeded generator: independent of the init code."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(module.named_parameters()):
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float32) * std)
    return module.eval()


def _dit(kind: str, seed: int) -> WanDiT:
    if kind == "t2v":
        cfg = WanDiTConfig(**DIT, in_dim=16, out_dim=16, model_type="t2v")
    elif kind == "i2v":  # Wan2.1 I2V 14B: mask + image latent as y, CLIP image cross-attention
        cfg = WanDiTConfig(
            **DIT, in_dim=36, out_dim=16, model_type="i2v", image_cross_attn=True, clip_dim=CLIP_DIM
        )
    elif kind == "i2v-a14b":  # Wan2.2 I2V A14B experts: y, no CLIP
        cfg = WanDiTConfig(**DIT, in_dim=36, out_dim=16, model_type="i2v")
    elif kind == "ti2v":
        cfg = WanDiTConfig(**DIT, in_dim=48, out_dim=48, model_type="ti2v")
    else:
        raise ValueError(kind)
    return _randomize(WanDiT(cfg), seed, std=0.2)


def _dual(kind: str, seed: int, boundary: float) -> DualExpertDiT:
    return DualExpertDiT(_dit(kind, seed), _dit(kind, seed + 1), boundary)


def _vae21(seed: int = 21) -> WanVAE21:
    return _randomize(WanVAE21(WanVAE21Config(dim=4, z_dim=16)), seed, std=0.1)


def _vae22(seed: int = 22) -> WanVAE22:
    return _randomize(WanVAE22(WanVAE22Config(dim=4, dec_dim=8, z_dim=48)), seed, std=0.1)


def _taehv(seed: int = 31) -> TAEHV:
    cfg = TAEHVConfig(latent_channels=16, patch_size=1, encoder_width=8, decoder_widths=(16, 8, 8, 8))
    return _randomize(TAEHV(cfg), seed, std=0.3)


class TinyClip:
    """CLIP vision stand-in: ``image [B, 3, H, W]`` -> ``[B, 5, CLIP_DIM]`` (a class token + 2x2 pooled
    patches through a seeded projection); deterministic, and different images give different features."""

    def __init__(self, seed: int = 5):
        g = torch.Generator().manual_seed(seed)
        self.proj = torch.randn(3, CLIP_DIM, generator=g)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        pooled = F.adaptive_avg_pool2d(image.float(), 2).flatten(2).transpose(1, 2)  # [B, 4, 3]
        tokens = torch.cat([pooled.mean(1, keepdim=True), pooled], dim=1)  # [B, 5, 3]
        return torch.tanh(tokens @ self.proj.to(image.device))


def _emb(seed: int, length: int = 9, batch: int = 1) -> torch.Tensor:
    return torch.randn(batch, length, TEXT_DIM, generator=torch.Generator().manual_seed(seed))


def _image(seed: int, h: int = H, w: int = W) -> torch.Tensor:
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# -- recording --------------------------------------------------------------------------------------------
class _Recorder:
    def __init__(self):
        self.out: dict[str, torch.Tensor] = {}
        self.progress: list[tuple[int, int, int]] = []
        self.kept: list[tuple[str, torch.Tensor, torch.Tensor]] = []  # (key, as returned, clone)

    def on_progress(self, done, total, chunk) -> None:
        self.progress.append((int(done), -1 if total is None else int(total), int(chunk)))

    def chunk(self, r, prefix: str = "") -> None:
        """Keep a ChunkResult's latents (and frames) as they are when the chunk comes out (in order)."""
        i = sum(1 for k in self.out if k.startswith(prefix + "chunk") and "/" not in k[len(prefix) :])
        if getattr(r, "index", i) != i:
            raise AssertionError(f"chunk {i} came out as ChunkResult.index {r.index}")
        key = f"{prefix}chunk{i}"
        self.out[key] = r.latents.detach().clone()
        self.kept.append((key, r.latents, self.out[key]))
        frames = r.frames
        if frames is not None:
            self.out[f"{prefix}frames{i}"] = frames.detach().clone()

    def result(self) -> dict[str, torch.Tensor]:
        out = dict(self.out)
        if self.progress:
            out["progress"] = torch.tensor(self.progress, dtype=torch.int64)
        return out


def _pipe(rec: _Recorder, dit, preset, **kw) -> StreamingPipeline:
    return StreamingPipeline(dit, preset, cuda_graphs=False, compile=False, progress=rec.on_progress, **kw)


def _stream(rec: _Recorder, pipe: StreamingPipeline, prefix: str = "") -> None:
    for r in pipe.stream():
        rec.chunk(r, prefix)


# -- the cases --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GoldenCase:
    name: str
    preset: str  # the ``wan_core.rollout.presets`` entry it runs (with overrides)
    what: str  # what it exercises
    run: Callable[[_Recorder], None]


CASES: dict[str, GoldenCase] = {}


def case(name: str, preset: str, what: str):
    def register(fn):
        if name in CASES:
            raise ValueError(f"duplicate golden case {name!r}")
        CASES[name] = GoldenCase(name, preset, what, fn)
        return fn

    return register


def _ar(name: str, **kw):
    """An AR preset, windowed to sink 3 + window 6 latent frames unless given (rolls after 9 frames)."""
    kw.setdefault("window_frames", 6)
    kw.setdefault("sink_frames", 3)
    return get_preset(name).with_overrides(**kw)


# Self-Forcing (the causal few-step scheme every AR preset shares)
@case(
    "self-forcing/window-sink",
    "self-forcing-1.3b",
    "sink 3 + window 6, 53 frames = 14 latent frames (the window rolls; last chunk of 2), absolute RoPE",
)
def _(rec):
    pipe = _pipe(rec, _dit("t2v", 1), _ar("self-forcing-1.3b"), rope="absolute")
    pipe.initialize_cache(_emb(101), height=H, width=W, num_frames=53, seed=7)
    _stream(rec, pipe)


@case(
    "self-forcing/relative-rope",
    "self-forcing-1.3b",
    "as window-sink with rope='relative' (positions re-based inside the cache)",
)
def _(rec):
    pipe = _pipe(rec, _dit("t2v", 1), _ar("self-forcing-1.3b"), rope="relative")
    pipe.initialize_cache(_emb(101), height=H, width=W, num_frames=53, seed=7)
    _stream(rec, pipe)


@case(
    "self-forcing/published",
    "self-forcing-1.3b",
    "the preset as published (window 21, no sink, rope auto), 8 chunks: rolls at chunk 7",
)
def _(rec):
    pipe = _pipe(rec, _dit("t2v", 2), get_preset("self-forcing-1.3b"))
    pipe.initialize_cache(_emb(102), height=H, width=W, num_chunks=8, seed=11)
    _stream(rec, pipe)


@case(
    "self-forcing/endless",
    "self-forcing-1.3b",
    "endless stream (no length: rope auto -> relative, context pass after every chunk), 6 chunks taken",
)
def _(rec):
    pipe = _pipe(rec, _dit("t2v", 3), _ar("self-forcing-1.3b"))
    pipe.initialize_cache(_emb(103), height=H, width=W, seed=13)
    assert pipe.num_chunks is None
    for r in itertools.islice(pipe.stream(), 6):
        rec.chunk(r)


@case(
    "self-forcing/context-pass-last",
    "self-forcing-1.3b",
    "context_pass_last=True (the last chunk's clean K/V written too), then a second video on the same "
    "pipeline (kept cache)",
)
def _(rec):
    pipe = _pipe(rec, _dit("t2v", 4), _ar("self-forcing-1.3b"), context_pass_last=True)
    pipe.initialize_cache(_emb(104), height=H, width=W, num_chunks=4, seed=17)
    _stream(rec, pipe, "a/")
    pipe.initialize_cache(_emb(105), height=H, width=W, num_chunks=4, seed=18)
    _stream(rec, pipe, "b/")


@case(
    "self-forcing/back-to-back",
    "self-forcing-1.3b",
    "three videos on one pipeline: same geometry (cache reused), then another size (cache rebuilt); "
    "generate() only, each chunk finalizing the previous one",
)
def _(rec):
    pipe = _pipe(rec, _dit("t2v", 5), _ar("self-forcing-1.3b"))
    for v, (h, w, seed) in enumerate([(H, W, 19), (H, W, 20), (SMALL_H, SMALL_W, 21)]):
        pipe.initialize_cache(_emb(106 + v), height=h, width=w, num_chunks=4, seed=seed)
        for i in range(pipe.num_chunks):
            rec.chunk(pipe.generate(i), f"v{v}/")


@case(
    "self-forcing/batch2",
    "self-forcing-1.3b",
    "batch of 2 prompts of different lengths (list of [L_i, 4096], zero-padded), 4 chunks",
)
def _(rec):
    pipe = _pipe(rec, _dit("t2v", 6), _ar("self-forcing-1.3b"))
    prompts = [_emb(110, length=9)[0], _emb(111, length=5)[0]]
    pipe.initialize_cache(prompts, height=H, width=W, num_chunks=4, seed=23)
    _stream(rec, pipe)


@case(
    "self-forcing/image-mask-inject",
    "self-forcing-1.3b",
    "T2V preset + start image (mask_inject: latent 0 = the Wan2.1 VAE's image latent), 4 chunks",
)
def _(rec):
    pipe = _pipe(rec, _dit("t2v", 7), _ar("self-forcing-1.3b"), vae=_vae21())
    pipe.initialize_cache(_emb(112), _image(1), height=H, width=W, num_chunks=4, seed=29)
    _stream(rec, pipe)


@case(
    "self-forcing/switch-prompt-api",
    "self-forcing-1.3b",
    "switch_prompt(emb, 4) called mid-video (after chunk 3, window rolled), generate + finalize by hand",
)
def _(rec):
    pipe = _pipe(rec, _dit("t2v", 8), _ar("self-forcing-1.3b"))
    pipe.initialize_cache(_emb(113), height=H, width=W, num_chunks=6, seed=31)
    for i in range(pipe.num_chunks):
        if i == 3:
            pipe.switch_prompt(_emb(114, length=7), 4)
        rec.chunk(pipe.generate(i))
        pipe.finalize(i)


@case(
    "self-forcing/taehv-frames",
    "self-forcing-1.3b",
    "TAEHV decoder attached: decoded frames of every chunk, 16x32, 3 chunks",
)
def _(rec):
    pipe = _pipe(rec, _dit("t2v", 9), _ar("self-forcing-1.3b"), decoder=_taehv())
    pipe.initialize_cache(_emb(115), height=SMALL_H, width=SMALL_W, num_chunks=3, seed=37)
    _stream(rec, pipe)


@case(
    "self-forcing/ar-ti2v-switch",
    "self-forcing-1.3b",
    "AR TI2V (overrides: 48 channels, stride 16, image_stamp clean_t0 with the Wan2.2 VAE encoder; latent 0 "
    "at t = 0 in the steps, the context pass and the re-cache) + a switch at chunk 2, 64x64, 4 chunks",
)
def _(rec):
    p = _ar("self-forcing-1.3b", latent_channels=48, vae_stride=(4, 16, 16), image_stamp="clean_t0")
    pipe = _pipe(rec, _dit("ti2v", 30), p, vae=_vae22())
    pipe.initialize_cache(
        _emb(145),
        _image(5, TI2V_H, TI2V_W),
        height=TI2V_H,
        width=TI2V_W,
        num_chunks=4,
        seed=127,
        prompt_switches={2: _emb(146, length=6)},
    )
    _stream(rec, pipe)


# the other causal few-step presets
@case("causvid/window-sink", "causvid-1.3b", "CausVid 3 unwarped steps, shift 8; sink 3 + window 6, 5 chunks")
def _(rec):
    pipe = _pipe(rec, _dit("t2v", 11), _ar("causvid-1.3b"))
    pipe.initialize_cache(_emb(117), height=H, width=W, num_chunks=5, seed=43)
    _stream(rec, pipe)


@case(
    "causal-forcing-chunkwise/window-sink",
    "causal-forcing-chunkwise-1.3b",
    "sink 3 + window 6, 5 chunks",
)
def _(rec):
    pipe = _pipe(rec, _dit("t2v", 12), _ar("causal-forcing-chunkwise-1.3b"))
    pipe.initialize_cache(_emb(118), height=H, width=W, num_chunks=5, seed=47)
    _stream(rec, pipe)


@case(
    "causal-forcing-framewise/window-sink",
    "causal-forcing-framewise-1.3b",
    "one latent frame per chunk; sink 1 + window 3, 7 chunks",
)
def _(rec):
    p = _ar("causal-forcing-framewise-1.3b", window_frames=3, sink_frames=1)
    pipe = _pipe(rec, _dit("t2v", 13), p)
    pipe.initialize_cache(_emb(119), height=H, width=W, num_chunks=7, seed=53)
    _stream(rec, pipe)


# LongLive: prompt switches with the KV re-cache
@case("longlive/published", "longlive-1.3b", "as published (sink 3 + window 9), 6 chunks (rolls), no switch")
def _(rec):
    pipe = _pipe(rec, _dit("t2v", 14), get_preset("longlive-1.3b"))
    pipe.initialize_cache(_emb(120), height=H, width=W, num_chunks=6, seed=59)
    _stream(rec, pipe)


@case(
    "longlive/switch-before-roll",
    "longlive-1.3b",
    "prompt_switches={2: ...}: frame 6 <= 12, every cached frame (sink too) re-cached, 5 chunks",
)
def _(rec):
    pipe = _pipe(rec, _dit("t2v", 14), get_preset("longlive-1.3b"))
    pipe.initialize_cache(
        _emb(120), height=H, width=W, num_chunks=5, seed=59, prompt_switches={2: _emb(121, length=7)}
    )
    _stream(rec, pipe)


@case(
    "longlive/switch-after-roll",
    "longlive-1.3b",
    "prompt_switches={5: ...}: frame 15 > 12, window frames re-cached, the sink keeps the old prompt; "
    "7 chunks, absolute RoPE",
)
def _(rec):
    pipe = _pipe(rec, _dit("t2v", 14), get_preset("longlive-1.3b"), rope="absolute")
    pipe.initialize_cache(
        _emb(120), height=H, width=W, num_chunks=7, seed=59, prompt_switches={5: _emb(121, length=7)}
    )
    _stream(rec, pipe)


@case(
    "longlive/switch-relative-rope",
    "longlive-1.3b",
    "as switch-after-roll with rope='relative'",
)
def _(rec):
    pipe = _pipe(rec, _dit("t2v", 14), get_preset("longlive-1.3b"), rope="relative")
    pipe.initialize_cache(
        _emb(120), height=H, width=W, num_chunks=7, seed=59, prompt_switches={5: _emb(121, length=7)}
    )
    _stream(rec, pipe)


@case(
    "longlive/two-switches",
    "longlive-1.3b",
    "two switches (chunks 3 and 6), the second given by switch_prompt during the stream, 8 chunks",
)
def _(rec):
    pipe = _pipe(rec, _dit("t2v", 15), get_preset("longlive-1.3b"))
    pipe.initialize_cache(
        _emb(122), height=H, width=W, num_chunks=8, seed=61, prompt_switches={3: _emb(123, length=5)}
    )
    for r in pipe.stream():
        rec.chunk(r)
        if r.index == 4:
            pipe.switch_prompt(_emb(124, length=11), 6)


# Rolling Forcing
@case(
    "rolling-forcing/published",
    "rolling-forcing-1.3b",
    "window of 5 chunks at staggered steps, 9 chunks: ramp-up, steady, anchor, tail windows",
)
def _(rec):
    pipe = _pipe(rec, _dit("t2v", 16), get_preset("rolling-forcing-1.3b"))
    pipe.initialize_cache(_emb(125), height=H, width=W, num_chunks=9, seed=67)
    _stream(rec, pipe)


@case(
    "rolling-forcing/endless",
    "rolling-forcing-1.3b",
    "endless Rolling Forcing stream, 8 chunks taken",
)
def _(rec):
    pipe = _pipe(rec, _dit("t2v", 17), get_preset("rolling-forcing-1.3b"))
    pipe.initialize_cache(_emb(126), height=H, width=W, seed=71)
    for r in itertools.islice(pipe.stream(), 8):
        rec.chunk(r)


# Krea realtime: KV recompute
@case(
    "krea/reencode",
    "krea-realtime-14b",
    "KV recompute with the re-encoded anchor (Wan2.1 VAE decoder + encoder), frames kept, 16x32, 4 chunks",
)
def _(rec):
    vae = _vae21()
    pipe = _pipe(rec, _dit("t2v", 18), get_preset("krea-realtime-14b"), vae=vae, decoder=vae)
    pipe.initialize_cache(_emb(127), height=SMALL_H, width=SMALL_W, num_chunks=4, seed=73)
    _stream(rec, pipe)


@case(
    "krea/first-frame",
    "krea-realtime-14b",
    "KV recompute, anchor = latent frame 0 (kv_recompute_anchor='first_frame'), no decoder, 5 chunks",
)
def _(rec):
    p = get_preset("krea-realtime-14b").with_overrides(kv_recompute_anchor="first_frame")
    pipe = _pipe(rec, _dit("t2v", 19), p)
    pipe.initialize_cache(_emb(128), height=H, width=W, num_chunks=5, seed=79)
    _stream(rec, pipe)


@case(
    "krea/switch",
    "krea-realtime-14b",
    "first_frame anchor + a prompt switch at chunk 3 (the recompute re-encodes with the new prompt)",
)
def _(rec):
    p = get_preset("krea-realtime-14b").with_overrides(kv_recompute_anchor="first_frame")
    pipe = _pipe(rec, _dit("t2v", 19), p)
    pipe.initialize_cache(
        _emb(128), height=H, width=W, num_chunks=5, seed=79, prompt_switches={3: _emb(129, length=6)}
    )
    _stream(rec, pipe)


# bidirectional presets (one chunk: the whole video)
def _euler(name: str, steps: int, **kw):
    p = get_preset(name)
    return p.with_overrides(euler=EulerSchedule(num_steps=steps, shift=p.euler.shift), **kw)


@case("wan2.1-t2v-1.3b/cfg", "wan2.1-t2v-1.3b", "Euler 4 steps, CFG 5 with a negative prompt, 9 frames")
def _(rec):
    pipe = _pipe(rec, _dit("t2v", 20), _euler("wan2.1-t2v-1.3b", 4))
    pipe.initialize_cache(_emb(130), height=H, width=W, num_frames=9, seed=83, negative_prompt=_emb(131, 5))
    _stream(rec, pipe)


@case(
    "wan2.1-t2v-1.3b/no-cfg",
    "wan2.1-t2v-1.3b",
    "guidance 1 (no unconditional pass), Euler 3 steps, 13 frames",
)
def _(rec):
    pipe = _pipe(rec, _dit("t2v", 21), _euler("wan2.1-t2v-1.3b", 3, guidance_scale=1.0))
    pipe.initialize_cache(_emb(132), height=H, width=W, num_frames=13, seed=89)
    _stream(rec, pipe)


@case("wan2.1-t2v-14b/cfg", "wan2.1-t2v-14b", "Euler 3 steps, CFG 5, 13 frames, generate(0) directly")
def _(rec):
    pipe = _pipe(rec, _dit("t2v", 22), _euler("wan2.1-t2v-14b", 3))
    pipe.initialize_cache(_emb(133), height=H, width=W, num_frames=13, seed=97, negative_prompt=_emb(134, 5))
    assert pipe.num_chunks == 1
    rec.chunk(pipe.generate(0))
    pipe.finalize(0)


@case(
    "wan2.1-i2v-14b-480p/clip-concat-y",
    "wan2.1-i2v-14b-480p",
    "I2V: CLIP features + mask + image latent as y (Wan2.1 VAE encoder), Euler 3 steps, CFG 5, 9 frames",
)
def _(rec):
    pipe = _pipe(rec, _dit("i2v", 23), _euler("wan2.1-i2v-14b-480p", 3), vae=_vae21(), clip_vision=TinyClip())
    pipe.initialize_cache(
        _emb(135), _image(2), height=H, width=W, num_frames=9, seed=101, negative_prompt=_emb(136, 5)
    )
    _stream(rec, pipe)


@case(
    "wan2.2-ti2v-5b/image",
    "wan2.2-ti2v-5b",
    "TI2V, 48 channels: latent 0 = the Wan2.2 VAE's image latent with t = 0, Euler 3 steps, CFG 5, "
    "64x64, 9 frames",
)
def _(rec):
    pipe = _pipe(rec, _dit("ti2v", 24), _euler("wan2.2-ti2v-5b", 3), vae=_vae22())
    pipe.initialize_cache(
        _emb(137),
        _image(3, TI2V_H, TI2V_W),
        height=TI2V_H,
        width=TI2V_W,
        num_frames=9,
        seed=103,
        negative_prompt=_emb(138, 5),
    )
    _stream(rec, pipe)


@case(
    "wan2.2-ti2v-5b/text-vae-frames",
    "wan2.2-ti2v-5b",
    "TI2V model from text only (no image), Euler 3 steps, CFG 5, Wan2.2 VAE frames kept, 32x32, 9 frames",
)
def _(rec):
    pipe = _pipe(rec, _dit("ti2v", 25), _euler("wan2.2-ti2v-5b", 3), decoder=_vae22())
    pipe.initialize_cache(
        _emb(139), height=TI2V_SMALL, width=TI2V_SMALL, num_frames=9, seed=107, negative_prompt=_emb(140, 5)
    )
    _stream(rec, pipe)


@case(
    "wan2.2-t2v-a14b/dual-expert",
    "wan2.2-t2v-a14b",
    "two experts (boundary 0.875: 4 high-noise steps, 2 low), CFG 4 / 3, Euler 6 steps shift 12, 9 frames",
)
def _(rec):
    p = _euler("wan2.2-t2v-a14b", 6)
    pipe = _pipe(rec, _dual("t2v", 26, p.boundary), p)
    pipe.initialize_cache(_emb(141), height=H, width=W, num_frames=9, seed=109, negative_prompt=_emb(142, 5))
    _stream(rec, pipe)


@case(
    "wan2.2-i2v-a14b/dual-expert-concat-y",
    "wan2.2-i2v-a14b",
    "two I2V experts (boundary 0.9: 2 high, 2 low), mask + image latent as y, no CLIP, CFG 3.5, "
    "Euler 4 steps, 9 frames",
)
def _(rec):
    p = _euler("wan2.2-i2v-a14b", 4)
    pipe = _pipe(rec, _dual("i2v-a14b", 28, p.boundary), p, vae=_vae21())
    pipe.initialize_cache(
        _emb(143), _image(4), height=H, width=W, num_frames=9, seed=113, negative_prompt=_emb(144, 5)
    )
    _stream(rec, pipe)


# the families of issue 16 (recorded after the scheme refactor; their parity with the official code is in
# test_rollout_families.py)
def _taehv22(seed: int = 32) -> TAEHV:
    cfg = TAEHVConfig(latent_channels=48, patch_size=2, encoder_width=8, decoder_widths=(16, 8, 8, 8))
    return _randomize(TAEHV(cfg), seed, std=0.3)


@case(
    "causal-forcing-pp/2step-first-chunk-4",
    "causal-forcing-pp-2step-1.3b",
    "frame-wise, chunk 0 with its own 4 steps then 2 per chunk; sink 3 + window 6, 11 chunks (rolls)",
)
def _(rec):
    pipe = _pipe(rec, _dit("t2v", 40), _ar("causal-forcing-pp-2step-1.3b"))
    pipe.initialize_cache(_emb(150), height=H, width=W, num_chunks=11, seed=131)
    _stream(rec, pipe)


@case(
    "causal-forcing-pp/1step", "causal-forcing-pp-1step-1.3b", "the preset as published (window 21), 4 chunks"
)
def _(rec):
    pipe = _pipe(rec, _dit("t2v", 41), get_preset("causal-forcing-pp-1step-1.3b"))
    pipe.initialize_cache(_emb(151), height=H, width=W, num_chunks=4, seed=137)
    _stream(rec, pipe)


@case(
    "reward-forcing/ema-sink",
    "reward-forcing-1.3b",
    "the preset as published (sink 3 + window 6, EMA 0.999, relative RoPE), 6 chunks: blends at 3, 4, 5",
)
def _(rec):
    pipe = _pipe(rec, _dit("t2v", 42), get_preset("reward-forcing-1.3b"))
    pipe.initialize_cache(_emb(152), height=H, width=W, num_chunks=6, seed=139)
    _stream(rec, pipe)


@case(
    "longlive2-5b/text",
    "longlive2-5b",
    "UniPC 4 steps per chunk, chunks of 2, sink 1 + window 3 (rolls), 64x64, 4 chunks",
)
def _(rec):
    p = get_preset("longlive2-5b").with_overrides(frames_per_chunk=2, sink_frames=1, window_frames=3)
    pipe = _pipe(rec, _dit("ti2v", 43), p)
    pipe.initialize_cache(_emb(153), height=TI2V_H, width=TI2V_W, num_chunks=4, seed=149)
    _stream(rec, pipe)


@case(
    "longlive2-5b/image-switch",
    "longlive2-5b",
    "I2V: latent 0 = the Wan2.2 VAE's image latent at t = 0; a prompt switch at chunk 2 (no re-cache), "
    "TAEHV frames, 32x32, 3 chunks",
)
def _(rec):
    p = get_preset("longlive2-5b").with_overrides(frames_per_chunk=2, sink_frames=1, window_frames=3)
    pipe = _pipe(rec, _dit("ti2v", 44), p, vae=_vae22(), decoder=_taehv22())
    pipe.initialize_cache(
        _emb(154),
        _image(6, TI2V_SMALL, TI2V_SMALL),
        height=TI2V_SMALL,
        width=TI2V_SMALL,
        num_chunks=3,
        seed=151,
        prompt_switches={2: _emb(155, length=6)},
    )
    _stream(rec, pipe)


# -- running ----------------------------------------------------------------------------------------------
@contextlib.contextmanager
def deterministic():
    """One thread, deterministic algorithms, a fixed global seed; the previous settings restored after."""
    threads = torch.get_num_threads()
    det = torch.are_deterministic_algorithms_enabled()
    rng = torch.get_rng_state()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(0)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(det)
        torch.set_num_threads(threads)
        torch.set_rng_state(rng)


@torch.no_grad()
def run_case(name: str) -> dict[str, torch.Tensor]:
    """Run one case from scratch (fresh models) and return its tensors (keys without the case prefix)."""
    rec = _Recorder()
    with deterministic():
        CASES[name].run(rec)
    for key, returned, kept in rec.kept:
        if not torch.equal(returned, kept):
            raise AssertionError(
                f"{name}: {key}'s latents changed after the chunk was returned (a view of a reused buffer)"
            )
    return rec.result()
