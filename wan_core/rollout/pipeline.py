"""``StreamingPipeline``: Wan video chunk by chunk (or whole, for bidirectional presets), with the
rollout scheme of its preset (``schemes/``). Call order, runner and lifecycle: docs/ARCHITECTURE.md.

    pipe = StreamingPipeline(dit, preset, text_encoder=..., decoder=vae)
    pipe.start_video(["a red fox running through snow"], height=480, width=832, num_frames=81, seed=0)
    for chunk in pipe.stream():      # generate(i) -> yield -> finalize(i)
        show(chunk.host_frames())    # ChunkResult: latents [B, C, n, h, w] (normalized), frames [B, 3, f, H, W]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import torch

from wan_core.accel import prepare_dit
from wan_core.dit.model import dit_experts
from wan_core.memory import Allocation, describe_pipeline_step, explain_oom
from wan_core.vae.stream import as_rollout_decoder

from .decode_stream import FrameDecodeStream, new_decode_side_stream
from .graphs import ChunkForward, default_speed_flags, is_compile_error, log, uncompile_blocks
from .image_input import image_condition
from .noise import as_noise_source, chunk_seed
from .pipeline_memory import PipelineMemory
from .presets import DEFAULT_NEGATIVE_PROMPT, RolloutPreset
from .prompt import make_prompt
from .runner import PipelineRunner, RolloutInterrupted, release_after_oom
from .schemes import SchemeOptions, scheme_for
from .state import ChunkResult, RolloutState
from .video import VideoSpec, latent_frames_for

__all__ = ["ChunkResult", "RolloutState", "RolloutInterrupted", "StreamingPipeline", "chunk_seed"]

ProgressFn = Callable[[int, "int | None", int], None]  # (steps done, total steps or None, chunk index)


class StreamingPipeline(PipelineMemory):
    """Chunk-by-chunk Wan video generation with the preset's rollout scheme.

    dit: ``WanDiT`` (or ``DualExpertDiT`` for the bidirectional A14B presets).
    text_encoder: ``prompts (list[str]) -> [B, L, 4096]`` tensor or list of ``[L_i, 4096]`` (optional:
        ``start_video`` also takes embeddings).
    vae: encoder for image conditioning (``new_encode_cache`` / ``encode_chunk``), optional.
    decoder: a Wan VAE, a TAEHV, or any ``stream_decoder()`` factory (``wan_core.vae.stream``); optional --
        without it ``ChunkResult.frames`` / ``host_frames()`` are None.
    clip_vision: ``image [B, 3, H, W] in [-1, 1] -> clip_fea [B, 257, 1280]`` (Wan2.1 I2V).
    cuda_graphs / compile / fuse_qkv: default on for CUDA, off on CPU. fp8_linear: e4m3 GEMMs in the
        blocks (needs Ada / Hopper or newer, else ``ValueError``; ``fp8_report`` says what was converted).
        The DiT is prepared in place by ``wan_core.accel.prepare_dit`` (merge LoRAs before).
    overlap_decode: decode each chunk on a side CUDA stream (default on for CUDA; a no-op on CPU).
    context_pass_last: run the clean-context pass after the last chunk of a video of known length too.
    rope: "auto" (absolute while the video fits the 1024-position RoPE table, else relative),
        "absolute" or "relative".
    missing_inputs: "raise" (default) or "warn" when the preset's published behaviour needs a
        collaborator that was not given (e.g. Krea's re-encoded anchor without the VAE encoder).
    progress: called after each denoising step with (steps done, total steps or None, chunk).
    interrupt: called before each denoising step; return True (or raise) to stop.
    """

    def __init__(
        self, dit, preset: RolloutPreset, *, text_encoder: Callable | None = None, vae=None, decoder=None,
        clip_vision: Callable | None = None, cuda_graphs: bool | None = None, compile: bool | None = None,
        compile_mode: str | None = None, fuse_qkv: bool | None = None, fp8_linear: bool = False,
        context_pass_last: bool = False, rope: str = "auto", cache_dtype: torch.dtype | None = None,
        progress: ProgressFn | None = None, interrupt: Callable[[], bool | None] | None = None,
        overlap_decode: bool | None = None, missing_inputs: str = "raise",
    ):  # fmt: skip
        if rope not in ("auto", "absolute", "relative"):
            raise ValueError(f"rope must be auto / absolute / relative, got {rope!r}")
        if missing_inputs not in ("raise", "warn"):
            raise ValueError(f"missing_inputs must be raise / warn, got {missing_inputs!r}")
        self.dit, self.preset, self.text_encoder = dit, preset, text_encoder
        self.rope, self.cache_dtype, self.context_pass_last = rope, cache_dtype, bool(context_pass_last)
        self.rebind(vae=vae, decoder=decoder, clip_vision=clip_vision, progress=progress, interrupt=interrupt)
        self.experts = dit_experts(dit)
        cfg = self.experts[0].config
        if cfg.out_dim != preset.latent_channels:
            raise ValueError(
                f"preset {preset.name!r} works on {preset.latent_channels}-channel latents but the DiT outputs "
                f"{cfg.out_dim} channels: wrong diffusion model file for this preset"
            )
        self.device = self.experts[0].device
        options = SchemeOptions(rope, cache_dtype, self.context_pass_last, missing_inputs)
        self.scheme = scheme_for(preset)(preset, dit, PipelineRunner(self), options)
        graphs_default, compile_default = default_speed_flags(self.device)
        self.cuda_graphs = graphs_default if cuda_graphs is None else bool(cuda_graphs)
        self.compiled = compile_default if compile is None else bool(compile)
        self.fused_qkv = graphs_default if fuse_qkv is None else bool(fuse_qkv)
        cuda = self.device.type == "cuda"  # overlap needs CUDA streams: a no-op elsewhere
        self.overlap_decode = cuda and (graphs_default if overlap_decode is None else bool(overlap_decode))
        self.decode_stream: torch.cuda.Stream | None = None  # the side stream, made once, kept across videos
        prepared = prepare_dit(
            dit,
            fuse_qkv=self.fused_qkv,
            fp8_linear=fp8_linear,
            compile=self.compiled,
            compile_mode=compile_mode,
        )
        self.fp8_report = prepared.fp8
        self.forward_runner = ChunkForward(enabled=self.cuda_graphs)
        self.state: RolloutState | None = None

    # -- geometry ------------------------------------------------------------------------------------
    @property
    def frames_per_chunk(self) -> int:
        return self.preset.frames_per_chunk

    @property
    def num_latent_frames(self) -> int | None:
        return None if self.state is None else self.state.video.num_latent_frames

    @property
    def num_chunks(self) -> int | None:
        return None if self.state is None else self.state.video.num_chunks

    def chunk_bounds(self, i: int) -> tuple[int, int]:
        """(first latent frame, number of latent frames) of chunk ``i``."""
        return self._require_state().video.chunk_bounds(i)

    latent_frames_for = staticmethod(latent_frames_for)

    def _plan_video(self, height=None, width=None, num_frames=None, num_chunks=None, batch=1) -> VideoSpec:
        return VideoSpec.plan(
            self.preset, whole_video=self.scheme.whole_video, height=height, width=width,
            num_frames=num_frames, num_chunks=num_chunks, batch=batch,
        )  # fmt: skip

    # -- starting a video ----------------------------------------------------------------------------
    @torch.no_grad()
    @explain_oom(
        describe_pipeline_step("allocating the video's KV cache and prompt buffers", Allocation.KV_CACHE),
        release_after_oom,
    )
    def start_video(self, *args, **kwargs) -> RolloutState:
        """Start a new video (arguments: ``_start_video``). If this fails (bad size, missing encoder, ...)
        the previous video's state is released too: a later ``generate`` asks for a new start."""
        try:
            return self._start_video(*args, **kwargs)
        except BaseException:
            self.release()
            raise

    initialize_cache = start_video  # deprecated name of start_video (same arguments)

    def _start_video(
        self, prompts, image: torch.Tensor | None = None, *, height: int | None = None, width: int | None = None,
        num_frames: int | None = None, num_chunks: int | None = None, seed: int = 0,
        negative_prompt=None, prompt_switches: dict[int, object] | None = None, image_mode: str | None = None,
        noise=None,
    ) -> RolloutState:  # fmt: skip
        """``prompts``: strings (one per batch element) or embeddings ``[B, L, 4096]``; ``image``:
        ``[B, 3, H, W]`` in [-1, 1] (I2V / TI2V); ``num_frames`` (pixel) or ``num_chunks``; neither =
        endless (chunked schemes). ``prompt_switches``: {chunk: prompts}. ``noise``: None (seeded from
        ``seed``) or a noise source (``noise.py``: ``TensorNoise``, ``CallableNoise``, a
        callable). The CLI, the nodes and ``wan_core.api`` check the whole request first (``request.py``)."""
        scheme = self.scheme
        video = self._plan_video(height, width, num_frames, num_chunks)
        cond, clip_fea = image_condition(
            self.preset, self.experts[0].config, image, image_mode, vae=self.vae, clip_vision=self.clip_vision,
            latent_hw=(video.latent_h, video.latent_w), device=self.device,
        )  # fmt: skip
        negative = None
        if scheme.uses_negative_prompt:
            negative = DEFAULT_NEGATIVE_PROMPT if negative_prompt is None else negative_prompt
        prompt = make_prompt(self.experts, self.text_encoder, self.device, prompts, negative, clip_fea)
        video = dataclasses.replace(video, batch=prompt.context.shape[0])
        images = 0 if image is None else (1 if image.ndim == 3 else image.shape[0])
        if image is not None and images != video.batch:
            raise ValueError(f"{images} images for {video.batch} prompts")
        switches, source = dict(prompt_switches or {}), as_noise_source(noise, seed)
        state = RolloutState(video, int(seed), source, prompt, scheme, switches, cond, self.vae)
        if self.decoder is not None:
            if self.overlap_decode and self.decode_stream is None:
                self.decode_stream = new_decode_side_stream(self.device)
            side = self.decode_stream if self.overlap_decode else None
            state.decoder_stream = FrameDecodeStream(self.decoder, side)
        scheme.check_start(video, state)
        spec = scheme.cache_spec(video)
        cache = None if spec is None else self._reuse_cache(*spec)
        # the captured graphs read the KV cache and the prompt's cross K/V by address (graphs.py)
        prompt.cross = self.forward_runner.bind_cross(prompt.cross, cache)
        scheme.start(video, state, cache)
        self.state = state
        return state

    def _reuse_cache(self, cls: type, spec: dict):
        """The previous video's KV cache, its bookkeeping reset, when ``cls(**spec)`` would build the same
        one; otherwise the previous cache is released *before* the new one is allocated, so back-to-back
        videos (many jobs in one ComfyUI process) never hold two caches."""
        old = self.scheme.cache
        same = old is not None and type(old) is cls
        if same and all(
            getattr(old, k, None) == (torch.device(v) if k == "device" else v) for k, v in spec.items()
        ):
            old.reset()
            return old
        self.scheme.release()
        self.forward_runner.reset()  # captured graphs (and their closures) may hold the old cache
        del old
        return cls(**spec)

    def switch_prompt(self, prompts, at_chunk: int) -> None:
        """Use ``prompts`` from chunk ``at_chunk`` on (must not be generated yet); what that means is the
        scheme's (LongLive's KV re-cache for the causal scheme)."""
        st = self._require_state()
        self.scheme.check_switch(at_chunk)
        if at_chunk < st.generated:
            raise ValueError(f"chunk {at_chunk} is already generated (next is {st.generated})")
        st.switches[int(at_chunk)] = prompts

    def _apply_switch(self, i: int, prompts) -> None:
        st = self.state
        clip_fea = st.image.clip_fea if st.image is not None else None
        st.prompt = make_prompt(
            self.experts, self.text_encoder, self.device, prompts, None, clip_fea, st.batch
        )
        self.scheme.switch_prompt(i, st.prompt)

    def chunk_noise(self, i: int) -> torch.Tensor:
        """``[K, B, C, n, h, w]`` float32: chunk ``i``'s initial noise and one fresh draw per re-noise step
        (whole-video presets: ``[1, B, C, T, h, w]``), from the video's noise source (``noise.py``)."""
        st = self._require_state()
        return st.noise(i, st.video.noise_shape(i, self.scheme.noise_draws), self.device)

    # -- the runner ----------------------------------------------------------------------------------
    def _require_state(self) -> RolloutState:
        if self.state is None:
            raise RuntimeError("call start_video(...) (initialize_cache) first")
        return self.state

    def _check_interrupt(self) -> None:
        if self.interrupt is not None and self.interrupt():
            raise RolloutInterrupted("generation interrupted")

    def _step_done(self, chunk: int) -> None:
        self.state.steps_done += 1
        if self.progress is not None:
            self.progress(self.state.steps_done, self.total_steps, chunk)

    @property
    def total_steps(self) -> int | None:
        return None if self.state is None else self.scheme.total_steps(self.num_chunks)

    def _run_chunk(self, model, x, t, cross, cache, y=None) -> torch.Tensor:
        """One planned DiT pass, replayed from a CUDA graph where ``ChunkForward`` has one."""
        return self._guard_compile(self.forward_runner, model, x, t, cross, cache, y)

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

    # -- chunks --------------------------------------------------------------------------------------
    @torch.no_grad()
    @explain_oom(
        describe_pipeline_step("generating chunk {chunk}", Allocation.ACTIVATIONS), release_after_oom
    )
    def generate(self, i: int) -> ChunkResult:
        """Generate chunk ``i`` (chunks go in order; re-generating the last chunk is not supported)."""
        st = self._require_state()
        start, _ = st.video.chunk_bounds(i)
        if i != st.generated:
            raise ValueError(f"chunks are generated in order: next is {st.generated}, got {i}")
        if st.finalized < i:
            self.finalize(i - 1)
        if i in st.switches:
            self._apply_switch(i, st.switches.pop(i))
        x0 = self.scheme.generate(i)
        st.generated = i + 1
        decoded = None if st.decoder_stream is None else st.decoder_stream.decode(x0)
        self.scheme.on_decoded(i, decoded)
        return ChunkResult(i, start, x0, decoded)

    @torch.no_grad()
    @explain_oom(
        describe_pipeline_step("writing chunk {chunk}'s clean K/V (context pass)", Allocation.ACTIVATIONS),
        release_after_oom,
    )
    def finalize(self, i: int) -> None:
        """What chunk ``i`` leaves for later chunks (e.g. its clean K/V: a DiT pass at ``context_noise``)."""
        st = self._require_state()
        if i < st.finalized:
            return  # already done
        if i >= st.generated:
            raise ValueError(f"chunk {i} has not been generated")
        self.scheme.finalize(i)
        st.finalized = i + 1

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

    # -- kept between videos -------------------------------------------------------------------------
    def rebind(self, *, vae=None, decoder=None, clip_vision=None, progress=None, interrupt=None) -> None:
        """Give a kept pipeline the next video's collaborators (as in the constructor; ``None`` = none).
        Call it before ``start_video``. The prepared DiT, the KV cache and the captured graphs are kept,
        so a video of the same geometry replays the previous video's graphs from its first pass."""
        self.vae, self.decoder, self.clip_vision = vae, as_rollout_decoder(decoder), clip_vision
        self.progress, self.interrupt = progress, interrupt

    def end_video(self) -> None:
        """The video is done and the pipeline is kept: let go of what only this video used (decoder
        stream, image, kept frames, pending switches, the collaborators given to ``rebind``), keep what
        the next video of the same geometry reuses (KV cache, the prompt's cross K/V, the graphs)."""
        st = self.state
        if st is not None:
            st.decoder_stream = st.image = st.vae = None
            st.switches.clear()
            self.scheme.end_video()
        self.rebind()

    def release(self) -> None:
        """Free this video's state now: KV cache, kept frames, prompt caches, captured graphs."""
        self.scheme.release()
        self.state = None
        self.forward_runner.reset()
