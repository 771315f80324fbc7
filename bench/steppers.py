"""The benchmarked paths.

``ReferenceStepper``: our ``WanDiT.forward_chunk`` run eagerly with SDPA, every speed feature off, and
a full KV cache that holds every frame of the video (growing, never rolling): each chunk attends to all
earlier frames, the attention work of the official Self-Forcing code. The few-step loop is written out
here (Self-Forcing's, FACTS.md section 3): ``x0 = x_t - sigma_k v``; re-noise
``(1 - sigma_{k+1}) x0 + sigma_{k+1} noise``; then one pass at t = 0 on ``x0`` (the context pass).

``PipelineStepper``: the product path, ``wan_core.rollout.StreamingPipeline`` (``generate(i)`` =
denoising steps, ``finalize(i)`` = context pass) with its CUDA graphs / torch.compile switches, the
attention backend, window and sink. Decoding is left to the benchmark loop so it is timed separately.

Both draw each chunk's noise exactly as the pipeline does (``chunk_seed``), so their latents compare.
"""

from __future__ import annotations

import torch

from wan_core.rollout.noise import seeded_noise
from wan_core.rollout.pipeline import StreamingPipeline, chunk_seed
from wan_core.rollout.presets import get_preset
from wan_core.rollout.schedulers import FewStepSchedule


def chunk_noise(seed: int, i: int, steps: int, shape: tuple[int, ...], device) -> torch.Tensor:
    """``[steps, B, C, n, h, w]`` float32, the numbers ``StreamingPipeline.chunk_noise`` draws (on ``device``)."""
    return seeded_noise(chunk_seed(seed, i), (steps, *shape), device)


class ReferenceStepper:
    def __init__(self, model, context, latent_shape, num_chunks: int, timesteps: list[float], seed: int):
        b, _, n, h, w = latent_shape  # one chunk [B, C, n, h, w]
        cfg = model.config
        self.model, self.n, self.timesteps = model, n, list(timesteps)
        self.sigmas = [
            t / 1000.0 for t in timesteps
        ]  # the warped timesteps are table entries: sigma = t / 1000
        self.cross = model.prepare_context(context)  # text K/V once per prompt
        frame_tokens = (h // cfg.patch[1]) * (w // cfg.patch[2])
        self.cache = model.new_kv_cache(b, frame_tokens, num_chunks * n, 0)  # every frame: growing, full
        self.t = torch.empty(b, n, device=model.device, dtype=torch.float32)
        # drawn up front so the timed loop does no host-to-device copies
        self.noise = [
            chunk_noise(seed, i, len(timesteps), latent_shape, model.device) for i in range(num_chunks)
        ]
        self.description = (
            "reference: eager forward_chunk, SDPA, full growing KV cache, every speed feature off, "
            + str(model.compute_dtype).replace("torch.", "")
        )

    def start_video(self) -> None:
        self.model.attn_backend = "sdpa"
        self.cache.reset()

    def denoise_chunk(self, i: int) -> torch.Tensor:
        noise, start = self.noise[i], i * self.n
        x = noise[0]
        for k, t in enumerate(self.timesteps):
            self.t.fill_(t)
            v = self.model.forward_chunk(x, self.t, self.cross, self.cache, start)
            x0 = x - self.sigmas[k] * v
            if k + 1 < len(self.timesteps):
                x = (1 - self.sigmas[k + 1]) * x0 + self.sigmas[k + 1] * noise[k + 1]
        return x0

    def context(self, i: int, x0: torch.Tensor) -> None:
        self.t.fill_(0.0)
        self.model.forward_chunk(x0, self.t, self.cross, self.cache, i * self.n)

    def release(self) -> None:
        self.cache = self.cross = self.noise = self.model = None


def bench_preset(cfg, args, num_latent_frames: int):
    """The Self-Forcing preset with the benchmark's geometry, steps, window and latent channels."""
    base = get_preset("self-forcing-1.3b")
    default = [1000.0, 937.5, 833.3333, 625.0]
    if all(abs(a - b) < 1e-3 for a, b in zip(args.timesteps, default)) and len(args.timesteps) == 4:
        schedule = base.schedule  # (1000, 750, 500, 250) warped with shift 5 = these timesteps
    else:
        schedule = FewStepSchedule(steps=tuple(args.timesteps), shift=base.schedule.shift, warp=False)
    wide = cfg.out_dim == 48  # Wan2.2 TI2V 5B: 16x spatial VAE
    return base.with_overrides(
        name=f"bench-{args.model}",
        schedule=schedule,
        frames_per_chunk=args.frames_per_chunk,
        window_frames=args.window or num_latent_frames,
        sink_frames=args.sink if args.window else 0,
        height=args.height,
        width=args.width,
        latent_channels=cfg.out_dim,
        vae_stride=(4, 16, 16) if wide else (4, 8, 8),
    )


class PipelineStepper:
    def __init__(self, model, context, num_chunks: int, args):
        from wan_core.attention import resolve_backend

        self.model = model
        self.backend = resolve_backend(args.attn_backend, model.device)
        self.num_chunks = num_chunks
        self.skip_last_context = args.no_context_pass_last
        t = num_chunks * args.frames_per_chunk
        preset = bench_preset(model.config, args, t)
        model.attn_backend = self.backend
        self.pipe = StreamingPipeline(
            model,
            preset,
            cuda_graphs=args.cuda_graphs,
            compile=args.compile,
            fuse_qkv=getattr(args, "fuse_qkv", None),
            fp8_linear=getattr(args, "fp8_linear", False),
            context_pass_last=not self.skip_last_context,  # the reference runs it: like for like by default
            rope=getattr(args, "rope", "auto"),
        )
        self.context_emb = context
        self.seed = args.seed
        self.init_kw = dict(height=args.height, width=args.width, num_chunks=num_chunks)
        feats = [f"attention {self.backend}"]
        feats.append("CUDA graphs" if self.pipe.cuda_graphs else "no CUDA graphs")
        feats.append("torch.compile" if self.pipe.compiled else "no compile")
        feats.append("fused QKV" if self.pipe.fused_qkv else "separate q/k/v")
        if self.pipe.fp8_report is not None:
            r = self.pipe.fp8_report
            feats.append(
                f"FP8 linears ({r.mode} e4m3 _scaled_mm, {r.fp8_layers} block linears, {len(r.kept)} kept 16-bit)"
            )
        feats.append(f"window {preset.window_frames}+{preset.sink_frames} sink frames")
        feats.append(f"RoPE {getattr(args, 'rope', 'auto')}")
        if self.skip_last_context:
            feats.append("no context pass after the last chunk")
        self.features = feats

    @property
    def description(self) -> str:
        fr = self.pipe.forward_runner
        return "ours (StreamingPipeline): " + ", ".join(
            [*self.features, f"graph captures {fr.captures}, replays {fr.replays}"]
        )

    def start_video(self) -> None:
        self.model.attn_backend = self.backend
        # keep the previous video's state: initialize_cache reuses its KV cache (same geometry, never two
        # caches) and the prompt's cross-attention buffers, so the CUDA graphs captured in the warm-up
        # rollout are replayed by the timed ones. Dropping the state (pipe.state = None) made every timed
        # video run each fill level's first pass eagerly and capture again inside the timed DiT segments
        # (each capture: device sync + allocator cache flush), i.e. cold-start work counted as DiT time.
        self.pipe.initialize_cache(self.context_emb, seed=self.seed, **self.init_kw)

    def denoise_chunk(self, i: int) -> torch.Tensor:
        return self.pipe.generate(i).latents

    def context(self, i: int, x0: torch.Tensor) -> None:
        self.pipe.finalize(i)  # a no-op DiT-wise for the last chunk with --no-context-pass-last

    def release(self) -> None:
        self.model.attn_backend = "sdpa"
        if self.pipe.compiled:  # undo nn.Module.compile() on the shared blocks (private torch attribute)
            for blk in self.model.blocks:
                blk._compiled_call_impl = None
        self.pipe = None
