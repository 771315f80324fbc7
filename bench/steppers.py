"""The benchmarked paths.

``EagerStepper`` is the reference: our ``WanDiT.forward_chunk`` run eagerly with SDPA, every speed
feature off, and a full (growing, never rolling) KV cache that holds every frame of the video, the same
attention work as the official Self-Forcing code (each chunk attends to all earlier frames).
"""

from __future__ import annotations

import torch


class EagerStepper:
    def __init__(
        self,
        model,
        context: torch.Tensor,
        latent_shape: tuple[int, ...],
        total_frames: int,
        window_frames: int | None = None,
        sink_frames: int = 0,
    ):
        b, _, n, h, w = latent_shape  # one chunk [B, C, n, h, w]
        cfg = model.config
        self.model = model
        self.n = n
        self.description = "reference: eager forward_chunk, SDPA, full growing KV cache, every feature off"
        self.frame_tokens = (h // cfg.patch[1]) * (w // cfg.patch[2])
        self.cross = model.prepare_context(context)  # text K/V once per prompt
        window = total_frames if window_frames is None else window_frames
        self.cache = model.new_kv_cache(b, self.frame_tokens, window, sink_frames)
        self.t = torch.empty(b, n, device=model.device, dtype=torch.float32)

    def start_video(self) -> None:
        self.model.attn_backend = "sdpa"
        self.cache.reset()

    def denoise(self, x: torch.Tensor, t: float, frame_start: int) -> torch.Tensor:
        self.t.fill_(t)
        return self.model.forward_chunk(x, self.t, self.cross, self.cache, frame_start)

    def context(self, x0: torch.Tensor, frame_start: int) -> None:
        self.t.fill_(0.0)
        self.model.forward_chunk(x0, self.t, self.cross, self.cache, frame_start)

    def release(self) -> None:
        self.cache = None
        self.cross = None


class OursStepper(EagerStepper):
    """Our path with the features that live in ``wan_core`` itself: the attention backend (resolved
    once), a rolling window (``--window`` / ``--sink``) and skipping the last chunk's context pass.
    CUDA graphs and torch.compile come from ``wan_core.rollout.graphs`` (see ``make_ours``)."""

    def __init__(self, model, context, latent_shape, total_frames, args):
        from wan_core.attention import resolve_backend

        self.backend = resolve_backend(args.attn_backend, model.device)
        super().__init__(
            model, context, latent_shape, total_frames, args.window, args.sink if args.window else 0
        )
        self.skip_context_from = (args.chunks - 1) * self.n if args.no_context_pass_last else None
        feats = [f"attention {self.backend}"]
        if args.window:
            feats.append(f"window {args.window}+{args.sink} sink frames")
        if args.no_context_pass_last:
            feats.append("no context pass after the last chunk")
        self.description = "ours (eager): " + ", ".join(feats)

    def start_video(self) -> None:
        self.model.attn_backend = self.backend
        super().start_video()

    def context(self, x0: torch.Tensor, frame_start: int) -> None:
        if self.skip_context_from is not None and frame_start >= self.skip_context_from:
            return
        super().context(x0, frame_start)

    def release(self) -> None:
        self.model.attn_backend = "sdpa"
        super().release()


def make_ours(model, context, latent_shape, total_frames, args):
    if args.compile or args.cuda_graphs:
        try:
            import wan_core.rollout.graphs  # noqa: F401
        except ImportError as e:
            raise ValueError(
                "--compile / --cuda-graphs need wan_core.rollout.graphs, which this checkout does not have "
                f"({e}); merge the rollout branch or run without them"
            ) from e
        raise NotImplementedError("graphs integration pending")
    return OursStepper(model, context, latent_shape, total_frames, args)
