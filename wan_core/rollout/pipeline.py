"""``StreamingPipeline``: chunk-by-chunk (autoregressive) and whole-video (bidirectional) Wan sampling.

Autoregressive presets (Self-Forcing family)::

    pipe = StreamingPipeline(dit, preset, text_encoder=..., decoder=vae)
    pipe.initialize_cache(["a red fox running through snow"], height=480, width=832, num_frames=81, seed=0)
    for i in range(pipe.num_chunks):
        chunk = pipe.generate(i)     # ChunkResult: latents [B, C, n, h, w] (normalized), frames [B, 3, f, H, W]
        show(chunk.host_frames())    # frames are out before the cache update ...
        pipe.finalize(i)             # ... which writes chunk i's clean K/V (context pass at context_noise)
    # or simply: for chunk in pipe.stream(): ...   (same order)

Order of work per chunk ``i`` (what sits on the path to the next chunk's first frame):
``generate(i)`` = [prompt switch re-encode, if scheduled at i] -> K denoising steps (each a DiT call
that also writes the chunk's noisy K/V into its cache slots, overwritten by the next step) -> decode
chunk i's frames. ``finalize(i)`` = one DiT call on the clean x0 at ``context_noise`` that overwrites
the same slots with clean K/V. The frames of chunk i are therefore ready before the cache update; the
update is the only extra work between them and chunk i+1's first denoising step. ``generate(i+1)``
finalizes chunk i itself if the caller did not.

Decode overlap (``overlap_decode``, default on for CUDA; ``decode_stream.py``): the decode of chunk i
and the copy of its frames to pinned host memory run on a side CUDA stream that waits only for chunk
i's clean latents, so ``finalize(i)`` and ``generate(i+1)`` are enqueued on the main stream without
waiting for the decode. ``ChunkResult.host_frames()`` blocks the calling thread (e.g. a writer thread)
until that chunk's frames are on the host; ``ChunkResult.frames`` / ``wait_frames()`` give the device
frames and make the caller's current stream wait for the decode on the device (no host sync). On CPU,
or with ``overlap_decode=False``, the decode runs inline and the same calls return the same frames.
Krea KV recompute with the ``reencode`` anchor reads the decoded pixels on the main stream, so the main
stream waits for each chunk's decode there (no overlap for that preset).

Per-scheme variants (same call order): a prompt switch re-caches the frames held in the cache as
LongLive does (``prompt_switch.py``); ``preset.kv_recompute_frames`` (Krea realtime) rebuilds the cache
from the clean context before every chunk and ``finalize`` runs no DiT pass (``kv_recompute.py``);
``sampler="rolling_forcing"`` denoises a window of chunks at staggered noise levels, ``generate(i)``
runs windows until chunk i is done and ``finalize(i)`` writes its clean K/V (``rolling_window.py``).

Bidirectional presets (base Wan, CFG, Wan2.2 A14B dual expert, TI2V 5B) have one chunk: the whole
video; ``generate(0)`` runs the Euler loop with classifier-free guidance.

State is explicit (``RolloutState``): the KV cache, prompt caches, per-chunk seeded noise, the clean
latents of the frames still visible to attention (for prompt switching), the decoder stream.
Memory is bounded by the attention window (sink + window frames), not by the video length.
Back-to-back videos on one pipeline: ``initialize_cache`` reuses the previous video's KV cache (and the
captured graphs) when the cache geometry is unchanged, else frees it before allocating the new one;
``release()`` frees everything at once when the pipeline is done.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

from wan_core.dit.fuse import fuse_qkv_
from wan_core.dit.kv_cache import planned_kv_nbytes
from wan_core.fp8_linear import fp8_linears_
from wan_core.memory import explain_oom, gib, tensor_nbytes
from wan_core.rollout.noise import seeded_noise

from .conditioning import ConcatYStream, ImageCondition, stamp_input, stamp_x0
from .decode_stream import DecodedFrames, FrameDecodeStream, new_decode_side_stream
from .decoders import as_stream_decoder_factory
from .graphs import ChunkForward, compile_blocks, default_speed_flags, is_compile_error, log, uncompile_blocks
from .kv_cache import OffsetRollingKVCache
from .kv_recompute import KVRecomputeState, recompute_context
from .presets import RolloutPreset
from .prompt_switch import recache_span
from .rolling_window import RollingForcingSampler, RollingWindowCache
from .schedulers import flow_to_x0, renoise

__all__ = ["ChunkResult", "RolloutState", "RolloutInterrupted", "StreamingPipeline", "chunk_seed"]

ProgressFn = Callable[[int, "int | None", int], None]  # (steps done, total steps or None, chunk index)


class RolloutInterrupted(RuntimeError):
    """Raised between denoising steps when the interrupt hook asks to stop."""


@dataclass
class ChunkResult:
    index: int
    frame_start: int  # first latent frame of the chunk
    latents: torch.Tensor  # [B, C, n, h, w] normalized (DiT space)
    decoded: DecodedFrames | None = None  # the chunk's frames when a decoder is attached (maybe in flight)

    @property
    def num_latent_frames(self) -> int:
        return self.latents.shape[2]

    @property
    def frames(self) -> torch.Tensor | None:
        """``[B, 3, f, H, W]`` in [-1, 1] on the device, None without a decoder. Safe on the current
        stream: with decode overlap that stream waits (on the device) for this chunk's decode."""
        return None if self.decoded is None else self.decoded.device()

    def wait_frames(self) -> torch.Tensor | None:
        """Same as ``frames``: the device frames, after making the current stream wait for the decode."""
        return self.frames

    def host_frames(self) -> torch.Tensor | None:
        """``[B, 3, f, H, W]`` in [-1, 1] on the CPU (pinned when overlapped). Blocks the calling thread
        until this chunk's frames are on the host; never synchronizes the DiT's stream."""
        return None if self.decoded is None else self.decoded.host()


@dataclass
class _Prompt:
    context: torch.Tensor  # [B, L, 4096]
    cross: list  # per expert: CrossAttnCache (cond)
    uncond: list | None = None  # per expert: CrossAttnCache (negative prompt), CFG only


@dataclass
class RolloutState:
    """Everything one video's rollout carries from chunk to chunk."""

    batch: int
    latent_channels: int
    latent_h: int
    latent_w: int
    num_latent_frames: int | None  # None = endless
    seed: int
    prompt: _Prompt
    switches: dict[int, object] = field(default_factory=dict)  # chunk index -> prompts (pending)
    image: ImageCondition | None = None
    cache: OffsetRollingKVCache | None = None
    cache_offset: int = 0  # real latent frame - cache frame (KV recompute rebuilds the cache from frame 0)
    history: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = field(
        default_factory=dict
    )  # frame -> (x0, y)
    pending: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = field(
        default_factory=dict
    )  # chunk -> (x0, y)
    generated: int = 0  # chunks generated
    finalized: int = 0  # chunks whose clean K/V is written
    decoder_stream: FrameDecodeStream | None = None
    steps_done: int = 0
    recompute: KVRecomputeState | None = None  # Krea KV recompute (preset.kv_recompute_frames > 0)
    rolling: RollingForcingSampler | None = None  # Rolling Forcing window sampler (sampler "rolling_forcing")


def chunk_seed(seed: int, chunk: int) -> int:
    """Seed of chunk ``chunk``'s noise: independent per chunk, so a chunk's noise never depends on
    how many chunks came before it or on prompt switches."""
    return (int(seed) * 1_000_003 + int(chunk) * 7919 + 12345) % (2**63 - 1)


def _oom_described(what: str):
    """``explain_oom`` describe function for a pipeline method: (what, device, the pipeline's fixes)."""

    def describe(pipe, *args, **kwargs):
        i = args[0] if args else kwargs.get("i", "?")
        label = what.format(i=i) if "{i}" in what else what
        return label, pipe.device, pipe.oom_fixes()

    return describe


def _release_after_oom(pipe, *args, **kwargs) -> None:
    pipe.release()  # the KV cache may be half-written: a later generate asks for initialize_cache


class StreamingPipeline:
    """Chunk-by-chunk Wan video generation; see the module docstring for the call order.

    dit: ``WanDiT`` (or ``DualExpertDiT`` for the bidirectional A14B presets).
    text_encoder: ``prompts (list[str]) -> [B, L, 4096]`` tensor or list of ``[L_i, 4096]`` (optional:
        ``initialize_cache`` also takes precomputed embeddings).
    vae: encoder for image conditioning (``new_encode_cache`` / ``encode_chunk``), optional.
    decoder: a Wan VAE, a TAEHV, or any ``stream_decoder()`` factory (see ``decoders.py``); optional --
        without it ``ChunkResult.frames`` / ``host_frames()`` are None.
    clip_vision: ``image [B, 3, H, W] in [-1, 1] -> clip_fea [B, 257, 1280]`` (Wan2.1 I2V).
    cuda_graphs / compile / fuse_qkv: default on for CUDA, off on CPU (``fuse_qkv`` stacks each
        self-attention's q/k/v into one Linear in place, ``wan_core.dit.fuse``).
    fp8_linear: run the Linears inside the blocks as e4m3 GEMMs (``wan_core.fp8_linear``: per-token
        activation / per-channel weight scales; needs FP8 tensor cores: Ada / Hopper or newer, else
        ``ValueError``); converts ``dit`` in place, after ``fuse_qkv`` and before ``compile``. Merge
        LoRAs before. ``fp8_report`` says what was converted.
    overlap_decode: decode each chunk on a side CUDA stream, overlapped with the next chunk's DiT work
        (default on for CUDA; a no-op on CPU; see the module docstring and ``decode_stream.py``).
    context_pass_last: run the clean-context pass after the last chunk of a video of known length
        (default False: nothing reads those K/V; endless streams always run it).
    rope: "auto" (absolute while the video fits the 1024-position RoPE table, else relative),
        "absolute" or "relative".
    progress: called after each denoising step with (steps done, total steps or None, chunk).
    interrupt: called before each denoising step; return True (or raise) to stop.
    """

    def __init__(
        self,
        dit,
        preset: RolloutPreset,
        *,
        text_encoder: Callable | None = None,
        vae=None,
        decoder=None,
        clip_vision: Callable | None = None,
        cuda_graphs: bool | None = None,
        compile: bool | None = None,
        compile_mode: str | None = None,
        fuse_qkv: bool | None = None,
        fp8_linear: bool = False,
        context_pass_last: bool = False,
        rope: str = "auto",
        cache_dtype: torch.dtype | None = None,
        progress: ProgressFn | None = None,
        interrupt: Callable[[], bool | None] | None = None,
        overlap_decode: bool | None = None,
    ):
        self.dit = dit
        self.preset = preset
        self.text_encoder = text_encoder
        self.vae = vae
        self.decoder = as_stream_decoder_factory(decoder)
        self.clip_vision = clip_vision
        self.progress = progress
        self.interrupt = interrupt
        if rope not in ("auto", "absolute", "relative"):
            raise ValueError(f"rope must be auto / absolute / relative, got {rope!r}")
        self.rope = rope
        self.cache_dtype = cache_dtype
        self.experts = tuple(dit.experts()) if hasattr(dit, "experts") else (dit,)
        if preset.is_autoregressive and len(self.experts) != 1:
            raise ValueError(
                f"preset {preset.name!r} is autoregressive; it needs a single DiT, not two experts"
            )
        cfg = self.experts[0].config
        if cfg.out_dim != preset.latent_channels:
            raise ValueError(
                f"preset {preset.name!r} works on {preset.latent_channels}-channel latents but the DiT outputs "
                f"{cfg.out_dim} channels: wrong diffusion model file for this preset"
            )
        self.device = self.experts[0].device
        graphs_default, compile_default = default_speed_flags(self.device)
        self.cuda_graphs = graphs_default if cuda_graphs is None else bool(cuda_graphs)
        self.compiled = compile_default if compile is None else bool(compile)
        self.fused_qkv = graphs_default if fuse_qkv is None else bool(fuse_qkv)
        cuda = self.device.type == "cuda"  # overlap needs CUDA streams: a no-op elsewhere
        self.overlap_decode = cuda and (graphs_default if overlap_decode is None else bool(overlap_decode))
        self.decode_stream: torch.cuda.Stream | None = None  # the side stream, made once, kept across videos
        if self.fused_qkv:
            fuse_qkv_(dit)  # before compile: one d -> 3d GEMM per self-attention (wan_core.dit.fuse)
        self.fp8_report = fp8_linears_(dit) if fp8_linear else None  # after fusing, before compile
        if self.fp8_report is not None and self.fused_qkv:
            fuse_qkv_(dit)  # blocks left unfused for unequal per-tensor fp8 scales stack now (per-channel)
        self.context_pass_last = bool(context_pass_last)  # False: skip it when the video length is known
        if self.compiled:
            compile_blocks(dit, mode=compile_mode)
        self.forward_runner = ChunkForward(enabled=self.cuda_graphs)
        self.state: RolloutState | None = None
        self._graph_cross: list | None = (
            None  # per expert: the CrossAttnCache buffers graphs were captured on
        )

    # ------------------------------------------------------------------------------------------------
    # geometry
    @property
    def frames_per_chunk(self) -> int:
        return self.preset.frames_per_chunk

    @property
    def num_latent_frames(self) -> int | None:
        return None if self.state is None else self.state.num_latent_frames

    @property
    def num_chunks(self) -> int | None:
        t = self.num_latent_frames
        if self.state is None:
            return None
        if not self.preset.is_autoregressive:
            return 1
        return None if t is None else math.ceil(t / self.frames_per_chunk)

    def chunk_bounds(self, i: int) -> tuple[int, int]:
        """(first latent frame, number of latent frames) of chunk ``i``."""
        t = self.num_latent_frames
        if not self.preset.is_autoregressive:
            return 0, t
        n = self.frames_per_chunk
        start = i * n
        if t is not None:
            if not 0 <= i < self.num_chunks:
                raise IndexError(f"chunk {i} out of range: this video has {self.num_chunks} chunks")
            n = min(n, t - start)
        return start, n

    @staticmethod
    def latent_frames_for(num_frames: int, temporal_scale: int = 4) -> int:
        """Latent frames covering ``num_frames`` pixel frames (``1 + 4 (T - 1) >= num_frames``)."""
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        return (num_frames - 1 + temporal_scale - 1) // temporal_scale + 1

    # ------------------------------------------------------------------------------------------------
    # setup
    def _embed(self, prompts) -> torch.Tensor:
        if isinstance(prompts, str):
            prompts = [prompts]
        if isinstance(prompts, torch.Tensor):
            ctx = prompts if prompts.ndim == 3 else prompts[None]
        elif isinstance(prompts, Sequence) and prompts and isinstance(prompts[0], torch.Tensor):
            ctx = _pad_stack(list(prompts))
        else:
            if self.text_encoder is None:
                raise ValueError(
                    "text prompts given but the pipeline has no text_encoder; pass embeddings instead"
                )
            out = self.text_encoder(list(prompts))
            ctx = out if isinstance(out, torch.Tensor) else _pad_stack(list(out))
        return ctx.to(self.device)

    def _make_prompt(self, prompts, negative=None, clip_fea=None, batch: int | None = None) -> _Prompt:
        ctx = self._embed(prompts)
        if batch is not None and ctx.shape[0] != batch:
            if ctx.shape[0] == 1:
                ctx = ctx.expand(batch, -1, -1)
            else:
                raise ValueError(f"got {ctx.shape[0]} prompts for a batch of {batch}")
        cross = [m.prepare_context(ctx, clip_fea) for m in self.experts]
        uncond = None
        if negative is not None:
            nctx = self._embed(negative)
            if nctx.shape[0] != ctx.shape[0]:
                nctx = nctx.expand(ctx.shape[0], -1, -1)
            uncond = [m.prepare_context(nctx, clip_fea) for m in self.experts]
        return _Prompt(ctx, cross, uncond)

    def _needs_cfg(self) -> bool:
        p = self.preset
        return p.sampler == "euler_cfg" and (p.guidance_scale != 1.0 or (p.guidance_scale_high or 1.0) != 1.0)

    @torch.no_grad()
    @explain_oom(_oom_described("allocating the video's KV cache and prompt buffers"), _release_after_oom)
    def initialize_cache(self, *args, **kwargs) -> RolloutState:
        """Start a new video (see ``_initialize_cache`` for the arguments). If this fails (bad size,
        missing encoder, ...) the previous video's state is released too, so a later ``generate`` cannot
        silently continue the old video: it asks for ``initialize_cache`` again."""
        try:
            return self._initialize_cache(*args, **kwargs)
        except BaseException:
            self.release()
            raise

    def _initialize_cache(
        self,
        prompts,
        image: torch.Tensor | None = None,
        *,
        height: int | None = None,
        width: int | None = None,
        num_frames: int | None = None,
        num_chunks: int | None = None,
        seed: int = 0,
        negative_prompt=None,
        prompt_switches: dict[int, object] | None = None,
        image_mode: str | None = None,
    ) -> RolloutState:
        """Start a new video. ``prompts``: list of strings (one per batch element) or embeddings
        ``[B, L, 4096]``; ``image``: ``[B, 3, H, W]`` in [-1, 1] (I2V / TI2V); ``num_frames`` (pixel)
        or ``num_chunks`` (AR); neither = endless stream (AR only). ``prompt_switches``: {chunk: prompts}.
        """
        p = self.preset
        height, width = height or p.height, width or p.width
        st, sh, sw = p.vae_stride
        ph, pw = p.patch_size[1:]
        if height % (sh * ph) or width % (sw * pw):
            raise ValueError(
                f"{width}x{height} is not a multiple of {sw * pw}x{sh * ph} (VAE stride x patch) for preset "
                f"{p.name!r}; try {width // (sw * pw) * sw * pw}x{height // (sh * ph) * sh * ph}"
            )
        lh, lw = height // sh, width // sw
        if num_frames is not None and num_chunks is not None:
            raise ValueError("give num_frames or num_chunks, not both")
        if num_frames is not None:
            t = self.latent_frames_for(num_frames, st)
        elif num_chunks is not None:
            if not p.is_autoregressive:
                raise ValueError(f"preset {p.name!r} generates the whole video at once: give num_frames")
            t = num_chunks * p.frames_per_chunk
        elif p.is_autoregressive:
            t = None
        else:
            t = self.latent_frames_for(p.default_frames, st)

        # prompts (+ image features)
        cond = None
        clip_fea = None
        mode = image_mode or p.image_stamp
        if image is not None:
            image = image.to(self.device)
            if image.ndim == 3:
                image = image[None]
            if mode == "none":
                mode = "mask_inject"
            if mode == "concat_y":
                if self.vae is None:
                    raise ValueError("image-to-video needs the VAE encoder (vae=...)")
                if self.experts[0].config.image_cross_attn:
                    if self.clip_vision is None:
                        raise ValueError("this I2V DiT needs CLIP vision features: pass clip_vision=...")
                    clip_fea = self.clip_vision(image)
                cond = ImageCondition(mode, clip_fea=clip_fea, y_stream=ConcatYStream(self.vae, image, st))
            else:
                if self.vae is None:
                    raise ValueError("image conditioning needs the VAE encoder (vae=...)")
                z = self.vae.encode_chunk(image[:, :, None], self.vae.new_encode_cache())  # [B, C, 1, h, w]
                if z.shape[-2:] != (lh, lw):
                    raise ValueError(
                        f"image latent {tuple(z.shape[-2:])} does not match the video latent {(lh, lw)}"
                    )
                cond = ImageCondition(mode, image_latent=z.float())
        elif mode == "concat_y" or self.experts[0].config.cond_dim:
            raise ValueError(f"preset {p.name!r} is image-to-video: pass image=[B, 3, H, W]")

        negative = None
        if self._needs_cfg():
            from .presets import DEFAULT_NEGATIVE_PROMPT

            negative = DEFAULT_NEGATIVE_PROMPT if negative_prompt is None else negative_prompt
        prompt = self._make_prompt(prompts, negative, clip_fea)
        batch = prompt.context.shape[0]
        if image is not None and image.shape[0] != batch:
            raise ValueError(f"{image.shape[0]} images for {batch} prompts")

        state = RolloutState(
            batch=batch,
            latent_channels=p.latent_channels,
            latent_h=lh,
            latent_w=lw,
            num_latent_frames=t,
            seed=int(seed),
            prompt=prompt,
            switches=dict(prompt_switches or {}),
            image=cond,
        )
        if state.switches and not p.is_autoregressive:
            raise ValueError("prompt switching needs an autoregressive preset")
        if p.kv_recompute_frames:
            state.recompute = self._new_recompute(cond)
        previous = self.state
        if p.sampler == "rolling_forcing":
            self._new_rolling(state, cond)
        elif p.is_autoregressive:
            state.cache = self._new_cache(batch, lh, lw, t)
        # the captured graphs read the KV cache and the prompt's cross-attention K/V by address: keep
        # them only when both are the previous video's buffers (``_reuse_cache`` / ``_reuse_cross``)
        kept_cache = previous is not None and state.cache is not None and state.cache is previous.cache
        if not (self._reuse_cross(prompt, previous) and kept_cache):
            self.forward_runner.reset()
        if previous is not None:
            previous.cache = previous.rolling = None
        if self.decoder is not None:
            if self.overlap_decode and self.decode_stream is None:
                self.decode_stream = new_decode_side_stream(self.device)
            state.decoder_stream = FrameDecodeStream(
                self.decoder, self.decode_stream if self.overlap_decode else None
            )
        self.state = state
        return state

    def planned_cache_nbytes(
        self,
        height: int | None = None,
        width: int | None = None,
        num_frames: int | None = None,
        num_chunks: int | None = None,
        batch: int = 1,
    ) -> int:
        """Bytes of the KV cache ``initialize_cache`` allocates for a video of this geometry (no memory
        is allocated; 0 for presets that generate the whole video at once)."""
        p = self.preset
        if not p.is_autoregressive:
            return 0
        st, sh, sw = p.vae_stride
        lh, lw = (height or p.height) // sh, (width or p.width) // sw
        if p.sampler == "rolling_forcing":
            return planned_kv_nbytes(RollingWindowCache, self._rolling_spec(batch, lh, lw))
        t = self.latent_frames_for(num_frames, st) if num_frames is not None else None
        if num_chunks is not None:
            t = num_chunks * p.frames_per_chunk
        return planned_kv_nbytes(OffsetRollingKVCache, self._cache_spec(batch, lh, lw, t))

    def cache_growth_nbytes(self, *args, **kwargs) -> int:
        """Bytes ``initialize_cache`` will newly allocate for this geometry (arguments as
        ``planned_cache_nbytes``): the planned KV cache minus the kept one, which it frees or reuses."""
        st = self.state
        kept = st.cache.kv_nbytes() if st is not None and st.cache is not None else 0
        return max(0, self.planned_cache_nbytes(*args, **kwargs) - kept)

    def held_nbytes(self) -> int:
        """Bytes the pipeline keeps between videos: the KV cache (+ visible-frame history) and the
        prompts' cross-attention K/V (the captured graphs read them). The graphs' memory pool (about
        one pass's activations) is not counted."""
        st = self.state
        if st is None:
            return 0
        n = self.cache_nbytes()
        for crosses in (st.prompt.cross, st.prompt.uncond or []):
            for c in crosses:
                n += tensor_nbytes(_cross_tensors(c))
        return n

    def oom_fixes(self) -> list[str]:
        """What shrinks this pipeline's memory, with the current values (for out-of-memory errors)."""
        p, st = self.preset, self.state
        fixes = []
        if st is not None:
            size = f"{st.latent_w * p.vae_stride[2]}x{st.latent_h * p.vae_stride[1]}"
            fixes.append(
                f"a smaller video (now {size}): the KV cache and every pass's activations grow with it"
            )
        else:
            fixes.append(
                "a smaller video (width / height): the KV cache and every pass's activations grow with it"
            )
        cache = None if st is None else st.cache
        if cache is not None and hasattr(cache, "window_frames"):
            fixes.append(
                f"a shorter attention window: {cache.sink_frames} sink + {cache.window_frames} window latent frames "
                f"hold {gib(cache.nbytes())} of KV cache (sampler window_frames / sink_frames; CLI --window / --sink)"
            )
        elif p.is_autoregressive:
            fixes.append(
                "a shorter attention window (sampler window_frames / sink_frames; CLI --window / --sink)"
            )
        fixes.append(
            "fp8 DiT weights: an *_fp8_scaled.safetensors file (Load Wan DiT precision fp8) halve the DiT's memory"
        )
        if self.cuda_graphs:
            fixes.append(
                "CUDA graphs off (Load Wan DiT cuda_graphs; CLI --no-cuda-graphs): their pool holds a pass"
            )
        if getattr(self.decoder, "kind", None) == "wan_vae":
            fixes.append(
                "the TAEHV decoder instead of the Wan VAE for the frames (Load TAEHV; CLI --decoder taehv)"
            )
        fixes.append("fewer other models or programs on this GPU (ComfyUI: Free model and node cache)")
        return fixes

    def rebind(
        self,
        *,
        vae=None,
        decoder=None,
        clip_vision: Callable | None = None,
        progress: ProgressFn | None = None,
        interrupt: Callable[[], bool | None] | None = None,
    ) -> None:
        """Give a kept pipeline the next video's collaborators (as in the constructor; ``None`` = none):
        the VAE encoder, the frame decoder, the CLIP vision callable, the progress and interrupt
        callbacks. Call it before ``initialize_cache``. What the constructor made of the DiT (fused
        q/k/v, FP8 linears, compiled blocks), the KV cache and the captured graphs are kept, so a video
        of the same geometry replays the previous video's graphs from its first pass."""
        self.vae = vae
        self.decoder = as_stream_decoder_factory(decoder)
        self.clip_vision = clip_vision
        self.progress = progress
        self.interrupt = interrupt

    def end_video(self) -> None:
        """The video is done and the pipeline is kept for the next one: let go of what only this video
        used (frame decoder stream, image condition, visible-frame history, pending switches, KV
        recompute state, the collaborators given to ``rebind``), keep what the next video of the same
        geometry reuses (KV cache, the prompt's cross-attention buffers, the captured graphs)."""
        st = self.state
        if st is not None:
            st.decoder_stream = st.image = st.recompute = None
            st.history.clear()
            st.pending.clear()
            st.switches.clear()
        self.rebind()

    def release(self) -> None:
        """Free this video's state now: KV cache, prompt caches, captured graphs. For a pipeline dropped
        after its video (one ComfyUI job): its memory goes back at once, not at the next garbage
        collection (Rolling Forcing's window sampler and the pipeline reference each other)."""
        if self.state is not None:
            self.state.cache = self.state.rolling = None
        self.state = None
        self._graph_cross = None
        self.forward_runner.reset()

    def _reuse_cache(self, cls: type, spec: dict):
        """The KV cache for a new video: the previous video's cache, its bookkeeping reset, when
        ``cls(**spec)`` would build the same one (geometry: batch, tokens per frame, window, sink,
        dtype, device, RoPE mode, ...); otherwise the previous cache is released *before* the new one is
        allocated, so back-to-back videos (many jobs in one ComfyUI process) never hold two caches."""
        previous = self.state
        old = None if previous is None else previous.cache
        if (
            old is not None
            and type(old) is cls
            and all(
                getattr(old, k, None) == (torch.device(v) if k == "device" else v) for k, v in spec.items()
            )
        ):
            old.reset()
            return old
        if previous is not None:  # the rolling sampler holds the cache too
            previous.cache = previous.rolling = None
        self.forward_runner.reset()  # captured graphs (and their closures) may hold the old cache
        del old
        return cls(**spec)

    def _reuse_cross(self, prompt: _Prompt, previous: RolloutState | None) -> bool:
        """Copy the new prompt's cross-attention K/V into the previous video's buffers when their shapes
        match (the graphs captured for the previous video read them), and use those; returns whether
        it did. After a prompt switch the buffers are the switched prompt's, which no graph of the next
        video may be keyed on: no reuse then."""
        old = self._graph_cross
        if previous is not None and previous.prompt.cross is old and _same_shapes(old, prompt.cross):
            for dst, src in zip(old, prompt.cross):
                for d, s in zip(_cross_tensors(dst), _cross_tensors(src)):
                    d.copy_(s)
            prompt.cross = old
            return True
        self._graph_cross = prompt.cross
        return False

    def _new_rolling(self, st: RolloutState, cond) -> None:
        """Rolling Forcing: the window sampler and its cache (see ``rolling_window.py``)."""
        p = self.preset
        n = p.frames_per_chunk
        if cond is not None or st.switches:
            raise ValueError(
                f"preset {p.name!r} (Rolling Forcing) supports neither image conditioning nor prompt switches"
            )
        if st.num_latent_frames is not None and st.num_latent_frames % n:
            raise ValueError(
                f"Rolling Forcing denoises whole chunks of {n} latent frames; {st.num_latent_frames} latent frames "
                f"is not a multiple of {n}: pass num_chunks, or num_frames = 1 + 4 (T - 1) with T a multiple of {n}"
            )
        model = self.experts[0]
        sched = p.schedule
        cache = self._reuse_cache(RollingWindowCache, self._rolling_spec(st.batch, st.latent_h, st.latent_w))

        def run(x, t):
            return self._guard_compile(model.forward_planned, x, t, st.prompt.cross[0], cache, None)

        st.cache = cache
        st.rolling = RollingForcingSampler(
            cache,
            sched.timesteps,
            sched.sigmas,
            n,
            None if st.num_latent_frames is None else st.num_latent_frames // n,
            run,
            self.chunk_noise,
            sched.context_noise,
            on_window=self._check_interrupt,
        )

    def _new_recompute(self, cond) -> KVRecomputeState:
        p = self.preset
        if cond is not None:
            raise ValueError(
                f"preset {p.name!r} recomputes the KV cache every chunk; image conditioning is not supported"
            )
        if p.kv_recompute_anchor == "reencode" and (self.decoder is None or self.vae is None):
            raise ValueError(
                f"preset {p.name!r} re-encodes a decoded frame as the first context latent (Krea KV recompute): "
                "pass decoder= and vae= (the VAE encoder), or override kv_recompute_anchor='first_frame'"
            )
        return KVRecomputeState(p.kv_recompute_frames, p.kv_recompute_anchor, p.vae_stride[0])

    def _recompute_cache(self, i: int, start: int) -> None:
        """Krea KV recompute: rebuild the cache from the chunk's clean context (see ``kv_recompute.py``)."""
        st = self.state
        st.cache.reset()
        st.cache_offset = start
        if start == 0:
            return
        vae = self.vae
        encode = None if vae is None else (lambda px: vae.encode_chunk(px, vae.new_encode_cache()))
        context = st.recompute.context(i, start, self.frames_per_chunk, encode)
        cross, model = st.prompt.cross[0], self.experts[0]

        def run_piece(x, t, cache_frame):
            st.cache.plan_chunk(cache_frame, x.shape[2])
            self._guard_compile(self.forward_runner, model, x, t, cross, st.cache, None)

        st.cache_offset = start - recompute_context(
            run_piece, context, self.frames_per_chunk, st.batch, self.device
        )

    def _rolling_spec(self, batch: int, lh: int, lw: int) -> dict:
        """Constructor arguments of Rolling Forcing's ``RollingWindowCache`` (no memory)."""
        p, cfg, model = self.preset, self.experts[0].config, self.experts[0]
        frame_tokens = (lh // cfg.patch[1]) * (lw // cfg.patch[2])
        if model.kv_cache_geometry(frame_tokens) != (frame_tokens, cfg.num_heads):
            raise ValueError(
                f"preset {p.name!r} (Rolling Forcing) does not run context-parallel yet (its window cache is "
                "not sharded); run it on one GPU"
            )
        return dict(
            num_layers=cfg.num_layers,
            batch=batch,
            frame_tokens=frame_tokens,
            num_heads=cfg.num_heads,
            head_dim=cfg.head_dim,
            block_frames=p.frames_per_chunk,
            window_blocks=len(p.schedule.timesteps),
            dtype=self.cache_dtype or model.compute_dtype,
            device=self.device,
        )

    def _new_cache(self, batch: int, lh: int, lw: int, t: int | None) -> OffsetRollingKVCache:
        return self._reuse_cache(OffsetRollingKVCache, self._cache_spec(batch, lh, lw, t))

    def _cache_spec(self, batch: int, lh: int, lw: int, t: int | None) -> dict:
        """Constructor arguments of the AR video's ``OffsetRollingKVCache`` (no memory)."""
        p = self.preset
        cfg = self.experts[0].config
        # tokens per frame and heads this DiT caches (a context-parallel DiT: its rank's share)
        frame_tokens, num_heads = self.experts[0].kv_cache_geometry(
            (lh // cfg.patch[1]) * (lw // cfg.patch[2])
        )
        window = p.window_frames
        if window is None:
            if t is None:
                raise ValueError(
                    f"preset {p.name!r} has unbounded attention: give num_frames (or set window_frames)"
                )
            window = t
        rope = self.rope
        if rope == "auto":
            rope = "absolute" if t is not None and t <= cfg.rope_max_positions else "relative"
        return dict(
            num_layers=cfg.num_layers,
            batch=batch,
            frame_tokens=frame_tokens,
            num_heads=num_heads,
            head_dim=cfg.head_dim,
            window_frames=window,
            sink_frames=p.sink_frames,
            dtype=self.cache_dtype or self.experts[0].compute_dtype,
            device=self.device,
            rope=rope,
            max_positions=cfg.rope_max_positions,
        )

    def switch_prompt(self, prompts, at_chunk: int) -> None:
        """Use ``prompts`` from chunk ``at_chunk`` on (must not be generated yet). The K/V of the frames
        held in the cache are re-encoded with the new prompt as LongLive does (``prompt_switch.py``)."""
        st = self._require_state()
        if not self.preset.is_autoregressive:
            raise ValueError("prompt switching needs an autoregressive preset")
        if at_chunk < st.generated:
            raise ValueError(f"chunk {at_chunk} is already generated (next is {st.generated})")
        if st.rolling is not None:
            raise ValueError(
                f"preset {self.preset.name!r} (Rolling Forcing) does not support prompt switches"
            )
        st.switches[int(at_chunk)] = prompts

    # ------------------------------------------------------------------------------------------------
    # noise
    def chunk_noise(self, i: int) -> torch.Tensor:
        """``[K, B, C, n, h, w]`` float32: the initial noise of chunk ``i`` and one fresh draw per
        re-noise step (AR), or ``[1, B, C, T, h, w]`` (bidirectional). Drawn on the model's device from a
        seeded generator (no host sync; same seed -> same numbers on the same device type, CPU and CUDA
        differ: ``noise.py``)."""
        st = self._require_state()
        start, n = self.chunk_bounds(i)
        k = len(self.preset.schedule) if self.preset.is_autoregressive else 1
        shape = (k, st.batch, st.latent_channels, n, st.latent_h, st.latent_w)
        return seeded_noise(chunk_seed(st.seed, i), shape, self.device)

    # ------------------------------------------------------------------------------------------------
    # AR core
    def _require_state(self) -> RolloutState:
        if self.state is None:
            raise RuntimeError("call initialize_cache(...) first")
        return self.state

    def _check_interrupt(self) -> None:
        if self.interrupt is not None and self.interrupt():
            raise RolloutInterrupted("generation interrupted")

    def _step_done(self, chunk: int) -> None:
        st = self.state
        st.steps_done += 1
        if self.progress is not None:
            self.progress(st.steps_done, self.total_steps, chunk)

    @property
    def total_steps(self) -> int | None:
        if self.state is None:
            return None
        if self.preset.is_autoregressive:
            n = self.num_chunks
            if n is None:
                return None
            if self.preset.sampler == "rolling_forcing":  # a window pass per chunk + R - 1 filling the window
                return n + len(self.preset.schedule) - 1
            return n * len(self.preset.schedule)
        return self.preset.euler.num_steps

    def _y_for(self, start: int, n: int) -> torch.Tensor | None:
        cond = self.state.image
        if cond is None or cond.mode != "concat_y":
            return None
        return cond.y_stream.take(start, n)

    def _run_chunk(self, x: torch.Tensor, t: torch.Tensor, start: int, y, cross) -> torch.Tensor:
        """Plan the cache for real latent frames ``[start, start + n)`` and run the DiT chunk pass."""
        st = self.state
        model = self.experts[0]
        st.cache.plan_chunk(start - st.cache_offset, x.shape[2])
        return self._guard_compile(self.forward_runner, model, x, t, cross, st.cache, y)

    def _guard_compile(self, fn, *args, **kw):
        """Run ``fn``; if torch.compile fails, fall back to eager blocks once (warned) and rerun.
        Re-running a chunk pass is safe: it overwrites the same cache slots."""
        try:
            return fn(*args, **kw)
        except Exception as e:
            if not (self.compiled and is_compile_error(e)):
                raise
            log.warning("torch.compile failed (%s: %s); continuing with eager blocks", type(e).__name__, e)
            uncompile_blocks(self.dit)
            self.compiled = False
            self.forward_runner.reset()
            return fn(*args, **kw)

    def _timesteps(self, value: float, n: int, clean_first: bool) -> torch.Tensor:
        t = torch.full((self.state.batch, n), float(value), device=self.device)
        if clean_first:
            t[:, 0] = 0.0
        return t

    @torch.no_grad()
    @explain_oom(_oom_described("generating chunk {i}"), _release_after_oom)
    def generate(self, i: int) -> ChunkResult:
        """Generate chunk ``i`` (chunks go in order; re-generating the last chunk is not supported)."""
        st = self._require_state()
        if not self.preset.is_autoregressive:
            if i != 0:
                raise IndexError(f"preset {self.preset.name!r} generates the whole video as chunk 0")
            return self._generate_bidirectional()
        if i != st.generated:
            raise ValueError(f"chunks are generated in order: next is {st.generated}, got {i}")
        if st.finalized < i:
            self.finalize(i - 1)
        if st.rolling is not None:
            return self._generate_rolling(i)
        if i in st.switches:
            self._apply_switch(i, st.switches.pop(i))
        start, n = self.chunk_bounds(i)
        if st.recompute is not None:
            self._recompute_cache(i, start)
        sched = self.preset.schedule
        timesteps, sigmas = sched.timesteps, sched.sigmas
        noise = self.chunk_noise(i)
        y = self._y_for(start, n)
        cross = st.prompt.cross[0]
        x = noise[0]
        x0 = x
        for k, (tk, sk) in enumerate(zip(timesteps, sigmas)):
            self._check_interrupt()
            x_in, clean_first = stamp_input(x, st.image, start, sk, noise[k])
            v = self._run_chunk(x_in, self._timesteps(tk, n, clean_first), start, y, cross)
            x0 = stamp_x0(flow_to_x0(x_in, v, sk), st.image, start)
            if k + 1 < len(timesteps):
                x = renoise(x0, noise[k + 1], sigmas[k + 1])
            self._step_done(i)
        st.pending[i] = (x0, y)
        st.generated = i + 1
        decoded = self._decode(x0)
        if st.recompute is not None and st.recompute.anchor == "reencode" and decoded is not None:
            st.recompute.remember_pixels(decoded.device())  # the next chunk re-encodes them on this stream
        return ChunkResult(i, start, x0, decoded)

    def _generate_rolling(self, i: int) -> ChunkResult:
        st = self.state
        start, _ = self.chunk_bounds(i)
        windows = st.rolling.next_window
        x0 = st.rolling.generate(i)
        for _ in range(st.rolling.next_window - windows):
            self._step_done(i)
        st.pending[i] = (x0, None)
        st.generated = i + 1
        return ChunkResult(i, start, x0, self._decode(x0))

    def _decode(self, latents: torch.Tensor) -> DecodedFrames | None:
        """Enqueue the decode of a chunk's clean latents (on the side stream with overlap)."""
        stream = self.state.decoder_stream
        return None if stream is None else stream.decode(latents)

    @torch.no_grad()
    @explain_oom(_oom_described("writing chunk {i}'s clean K/V (context pass)"), _release_after_oom)
    def finalize(self, i: int) -> None:
        """Write chunk ``i``'s clean K/V into the cache (DiT pass on x0 at ``context_noise``)."""
        st = self._require_state()
        if not self.preset.is_autoregressive:
            return
        if i not in st.pending:
            if i < st.finalized:
                return  # already done
            raise ValueError(f"chunk {i} has not been generated")
        x0, y = st.pending.pop(i)
        start, n = self.chunk_bounds(i)
        if st.rolling is not None:  # Rolling Forcing: clean pass of the emitted chunk
            st.rolling.finalize(i)
            st.finalized = i + 1
            return
        if st.recompute is not None:  # no clean pass: the next chunk rebuilds the cache
            st.recompute.remember_latents(start, x0)
            st.finalized = i + 1
            return
        clean_first = st.image is not None and st.image.mode == "clean_t0" and start == 0
        t = self._timesteps(self.preset.schedule.context_noise, n, clean_first)
        if self.context_pass_last or i + 1 != self.num_chunks:  # nothing reads the last chunk's K/V
            self._run_chunk(x0, t, start, y, st.prompt.cross[0])
        st.finalized = i + 1
        self._remember(start, x0, y)

    # ------------------------------------------------------------------------------------------------
    # prompt switching
    def _remember(self, start: int, x0: torch.Tensor, y: torch.Tensor | None) -> None:
        """Keep the clean latents of frames that later chunks can still see (bounded by sink + window)."""
        st = self.state
        for j in range(x0.shape[2]):
            st.history[start + j] = (x0[:, :, j : j + 1], None if y is None else y[:, :, j : j + 1])
        end = start + x0.shape[2]
        s, w = self.preset.sink_frames, st.cache.window_frames
        keep_from = max(s, end - w)
        for f in [f for f in st.history if s <= f < keep_from]:
            del st.history[f]

    def _apply_switch(self, i: int, prompts) -> None:
        """New prompt from chunk ``i``: new cross-attention caches, then LongLive's KV re-cache (see
        ``prompt_switch.recache_span``): the frames held in the cache are re-encoded with the new prompt
        in one pass."""
        st = self.state
        clip_fea = st.image.clip_fea if st.image is not None else None
        st.prompt = self._make_prompt(prompts, None, clip_fea, batch=st.batch)
        self.forward_runner.reset()
        start, _ = self.chunk_bounds(i)
        if start == 0 or st.recompute is not None:  # KV recompute re-encodes with the new prompt anyway
            return
        first, count = recache_span(start, self.preset.sink_frames, st.cache.window_frames)
        frames = list(range(first, first + count))
        x = torch.cat([st.history[f][0] for f in frames], dim=2)
        ys = [st.history[f][1] for f in frames]
        y = None if ys[0] is None else torch.cat(ys, dim=2)
        clean_first = st.image is not None and st.image.mode == "clean_t0" and first == 0
        t = self._timesteps(self.preset.schedule.context_noise, count, clean_first)
        st.cache.plan_span(first - st.cache_offset, count)
        self._guard_compile(self.experts[0].forward_planned, x, t, st.prompt.cross[0], st.cache, y)

    # ------------------------------------------------------------------------------------------------
    # bidirectional (base Wan, CFG, dual expert)
    def _generate_bidirectional(self) -> ChunkResult:
        st = self.state
        p = self.preset
        sched = p.euler
        t_frames = st.num_latent_frames
        noise = self.chunk_noise(0)[0]
        y = self._y_for(0, t_frames)
        x = noise
        sigmas = sched.sigmas
        for k, tk in enumerate(sched.timesteps):
            self._check_interrupt()
            e = 0
            scale = p.guidance_scale
            if len(self.experts) == 2:
                high = tk >= p.boundary * 1000.0
                e = 0 if high else 1  # experts() = (high, low)
                if high and p.guidance_scale_high is not None:
                    scale = p.guidance_scale_high
            model = self.experts[e]
            x_in, clean_first = stamp_input(x, st.image, 0, sigmas[k], noise)
            t = (
                self._timesteps(tk, t_frames, clean_first)
                if clean_first
                else torch.full((st.batch,), tk, device=self.device)
            )
            v = self._guard_compile(model, x_in, t, st.prompt.cross[e], y=y)
            if st.prompt.uncond is not None and scale != 1.0:
                v_u = self._guard_compile(model, x_in, t, st.prompt.uncond[e], y=y)
                v = v_u + scale * (v - v_u)
            x = sched.step(x_in, v, k)
            self._step_done(0)
        x0 = stamp_x0(x, st.image, 0)
        st.generated = 1
        st.finalized = 1
        return ChunkResult(0, 0, x0, self._decode(x0))

    # ------------------------------------------------------------------------------------------------
    # iteration
    def stream(self) -> Iterator[ChunkResult]:
        """Chunks in order: generate(i) -> yield -> finalize(i). Endless when the video has no length."""
        st = self._require_state()
        i = st.generated
        while self.num_chunks is None or i < self.num_chunks:
            r = self.generate(i)
            yield r
            self.finalize(i)
            i += 1

    __iter__ = stream

    def cache_nbytes(self) -> int:
        """Bytes held by the rollout state that can grow with the video: KV cache + visible-frame history."""
        st = self._require_state()
        n = st.cache.nbytes() if st.cache is not None else 0
        for x0, y in st.history.values():
            n += tensor_nbytes((x0, y))
        if st.recompute is not None:
            n += st.recompute.nbytes()
        return n


def _cross_tensors(cross) -> list[torch.Tensor]:
    return [*cross.text_k, *cross.text_v, *(cross.image_k or []), *(cross.image_v or [])]


def _same_shapes(a: list | None, b: list) -> bool:
    """Whether two per-expert lists of ``CrossAttnCache`` have the same tensors (shape, dtype, device)."""
    if a is None or len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if (x.image_k is None) != (y.image_k is None) or len(x.text_k) != len(y.text_k):
            return False
        tx, ty = _cross_tensors(x), _cross_tensors(y)
        if any((u.shape, u.dtype, u.device) != (v.shape, v.dtype, v.device) for u, v in zip(tx, ty)):
            return False
    return True


def _pad_stack(embs: list[torch.Tensor]) -> torch.Tensor:
    """List of ``[L_i, D]`` (or ``[1, L_i, D]``) -> zero-padded ``[B, max L, D]``."""
    embs = [e[0] if e.ndim == 3 else e for e in embs]
    L = max(e.shape[0] for e in embs)
    out = embs[0].new_zeros(len(embs), L, embs[0].shape[-1])
    for i, e in enumerate(embs):
        out[i, : e.shape[0]] = e
    return out
