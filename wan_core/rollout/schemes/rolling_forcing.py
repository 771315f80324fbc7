"""Rolling Forcing: a window of R chunks denoised jointly at staggered noise levels.

Source: TencentARC/RollingForcing @a1477d0, ``pipeline/rolling_forcing_inference.py``
(``inference_rolling_forcing``) and ``wan/modules/causal_model.py`` (``CausalWanSelfAttention`` KV path),
config ``configs/rolling_forcing_dmd.yaml`` (steps 1000 800 600 400 200 warped, shift 5, 3 latent frames
per block, ``context_noise 0``). With ``d_0 > ... > d_{R-1}`` the R (= number of steps) timesteps and
n frames per chunk:

- window ``w = 0, 1, ...`` holds chunks ``[max(0, w-R+1), min(last, w)]``; chunk ``b`` in it is at step
  ``w - b`` (timestep ``d_{w-b}``): the newest chunk enters as pure noise, the oldest is at the last step.
- one DiT pass over the window's frames with per-frame timesteps; the window attends to itself
  bidirectionally and, once its first chunk is not chunk 0, to the *anchor* (chunk 0's clean K/V) and the
  ``wc = min(s - n, 21 - q - n)`` clean frames just before it (``s`` its first frame, ``q`` its frames;
  21 = RF's ``max_attention_size``). Window frames and cached frames keep their absolute RoPE positions;
  the anchor is placed right before the cached frames (positions ``s - wc - n ...``).
- every chunk's x0 is re-noised to its next timestep with fresh noise, except the oldest, which is done:
  it is emitted, and one more pass over its x0 at t = 0 writes its clean K/V into the cache. That pass
  attends to itself and the previous clean frames: the anchor (at position 0) and every frame before it
  while the video is at most 21 frames long, else the 21 frames ending with the chunk (no anchor).

The cache holds only clean K/V: the window's noisy K/V go to a scratch area that is never kept. RoPE
follows the ``rope = "relative"`` interface of ``WanDiT.forward_planned``: every frame but the anchor
is attended at its absolute frame, so its keys are stored roped once, when written (float64 angles:
the video length is unbounded); the anchor moves from pass to pass, so its keys are kept un-roped in a
spare area and roped per pass into the anchor slots at that pass's anchor positions. Memory: anchor n +
21 history + R*n scratch frames (+ n un-roped anchor frames of keys).

Difference from RF's code: for videos shorter than R chunks, RF restarts the last chunk from noise in
every ramp-up window; here every chunk follows the same staggered schedule.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from wan_core.dit.kv_cache import LayerKV, upload_to_device
from wan_core.memory import tensor_nbytes

from ..schedulers import flow_to_x0, renoise
from .base import RolloutScheme, register_scheme
from .causal import single_expert

__all__ = [
    "RollingForcingScheme",
    "RollingWindowCache",
    "GatheredLayerKV",
    "RollingForcingSampler",
    "ATTENTION_FRAMES",
]

ATTENTION_FRAMES = 21  # RF CausalWanSelfAttention.max_attention_size (frames)


class GatheredLayerKV(LayerKV):
    """One layer's K/V for one pass of a ``RollingWindowCache``: the visible keys are gathered with a
    device index (anchor, history and scratch slots in attention order), not a slot prefix."""

    def __init__(
        self,
        k: torch.Tensor,
        v: torch.Tensor,
        write_index: torch.Tensor,
        visible_index: torch.Tensor,
        **sinks,  # k_write_index, sink_index, unroped_sinks_at (see LayerKV)
    ):
        super().__init__(k, v, write_index, visible_index.shape[0], **sinks)
        self.visible_index = visible_index  # [kv_tokens] token slots, in key order

    def visible(self) -> tuple[torch.Tensor, torch.Tensor]:  # each [B, kv_tokens, heads, head_dim]
        return self.k.index_select(1, self.visible_index), self.v.index_select(1, self.visible_index)


class RollingWindowCache:
    """Anchor + clean history ring + scratch for the current pass, with an explicit key list per pass.

    Implements the cache interface ``WanDiT.forward_planned`` reads (``rope == "relative"``; see
    ``wan_core/dit/kv_cache.py``) without subclassing ``RollingKVCache``: write slots and query
    positions of the pass (``write_index`` / ``chunk_positions``), the anchor as the sinks
    (``chunk_unroped``, ``sink_positions``) and the per-layer K/V objects (``layer(i, n)``: a
    ``GatheredLayerKV``, the visible keys gathered in order with a device index)."""

    rope = "relative"

    def __init__(
        self,
        num_layers: int,
        batch: int,
        frame_tokens: int,
        num_heads: int,
        head_dim: int,
        block_frames: int,
        window_blocks: int,
        dtype: torch.dtype = torch.bfloat16,
        device: str | torch.device = "cpu",
        attention_frames: int = ATTENTION_FRAMES,
    ):
        if window_blocks * block_frames + block_frames > attention_frames:
            raise ValueError(
                f"a window of {window_blocks} x {block_frames} frames plus the anchor exceeds the "
                f"{attention_frames}-frame attention of Rolling Forcing"
            )
        self.num_layers, self.batch, self.frame_tokens = num_layers, batch, frame_tokens
        self.num_heads, self.head_dim = num_heads, head_dim
        self.block_frames, self.window_blocks = block_frames, window_blocks
        self.attention_frames = attention_frames
        self.anchor_frames = block_frames
        self.history_frames = attention_frames  # the clean pass needs 21 - n earlier frames + its own
        self.scratch_start = self.anchor_frames + self.history_frames
        self.capacity_frames = self.scratch_start + window_blocks * block_frames
        self.capacity_tokens = self.capacity_frames * frame_tokens
        self.dtype, self.device = dtype, torch.device(device)
        shape = (batch, self.capacity_tokens, num_heads, head_dim)
        k_shape = (batch, self.capacity_tokens + self.anchor_frames * frame_tokens, num_heads, head_dim)
        self.k = [torch.zeros(k_shape, dtype=dtype, device=self.device) for _ in range(num_layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=self.device) for _ in range(num_layers)]
        self._buffers: dict[tuple[str, int], torch.Tensor] = {}
        self._anchor_index = torch.arange(self.anchor_frames * frame_tokens, device=self.device)
        self._token_offsets = torch.arange(frame_tokens, device=self.device)
        self.reset()

    def reset(self) -> None:
        """A new video (memory is kept: every pass plans the slots it writes and reads)."""
        self.chunk_frames = 0
        self.kv_frames = 0
        self.kv_tokens = 0
        self.slot_position: dict[int, int] = {}  # slot -> the position its keys were roped at (host)

    def slot_of(self, frame: int) -> int:
        a = self.anchor_frames
        return frame if frame < a else a + (frame - a) % self.history_frames

    def _buffer(self, name: str, size: int, dtype: torch.dtype = torch.long) -> torch.Tensor:
        """A persistent device buffer per (name, size): the plan's tensors keep their addresses."""
        key = (name, size)
        if key not in self._buffers:
            self._buffers[key] = torch.empty(size, dtype=dtype, device=self.device)
        return self._buffers[key]

    def _tokens(self, name: str, slots: torch.Tensor) -> torch.Tensor:  # [len(slots) * frame_tokens]
        """The token indices of frame ``slots`` (a device tensor), expanded on the device."""
        ft = self.frame_tokens
        out = self._buffer(name, slots.shape[0] * ft)
        torch.add(self._token_offsets[None, :], slots[:, None], alpha=ft, out=out.view(-1, ft))
        return out

    def plan(
        self,
        query_slots: list[int],
        query_positions: list[int],
        key_slots: list[int],
        key_positions: list[int],
    ) -> None:
        """One pass: its frames go to ``query_slots`` and are roped at ``query_positions``; they attend to
        the frames in ``key_slots`` (at ``key_positions``) and to themselves. Keys are stored roped at the
        position they are written with; only the anchor (slots ``[0, anchor_frames)``) may be attended
        elsewhere (a cached frame at another position raises)."""
        a = self.anchor_frames
        for slot, p in zip(key_slots, key_positions):
            if slot >= a and self.slot_position.get(slot) != p:
                raise ValueError(
                    f"slot {slot} holds keys roped at position {self.slot_position.get(slot)}, "
                    f"the pass attends to it at {p}: only the anchor moves"
                )
        anchor_pos = [0] * a  # positions of the anchor in this pass (0 where it is not attended)
        for slot, p in zip(key_slots + query_slots, key_positions + query_positions):
            if slot < a:
                anchor_pos[slot] = p
        self.slot_position.update(zip(query_slots, query_positions))
        self.chunk_frames = len(query_slots)
        self.kv_frames = len(key_slots) + len(query_slots)
        self.kv_tokens = self.kv_frames * self.frame_tokens
        k_slots = [s + self.capacity_frames if s < a else s for s in query_slots]  # anchor keys un-roped
        # one small upload per pass (no host sync on CUDA); token indices are expanded on the device
        q, kv = len(query_slots), len(key_slots) + len(query_slots)
        plan = [*query_slots, *k_slots, *key_slots, *query_slots, *query_positions]
        plan += [int(s < a) for s in query_slots] + anchor_pos
        staged = upload_to_device(plan, self.device)
        self._write = self._tokens("write", staged[:q])
        self._k_write = self._tokens("kwrite", staged[q : 2 * q])
        self._visible = self._tokens("visible", staged[2 * q : 2 * q + kv])
        rest = staged[2 * q + kv :]
        self._chunk_pos = self._buffer("qpos", q)
        self._chunk_pos.copy_(rest[:q])
        self._unroped = self._buffer("unroped", q, torch.bool)
        self._unroped.copy_(rest[q : 2 * q] != 0)
        self._anchor_pos = self._buffer("anchor", a)
        self._anchor_pos.copy_(rest[2 * q :])

    # -- read by WanDiT.forward_planned ---------------------------------------------------------------
    def write_index(self, n: int) -> torch.Tensor:
        return self._write

    def chunk_positions(self, n: int) -> torch.Tensor:  # [n] absolute frames
        return self._chunk_pos

    def chunk_unroped(self, n: int) -> torch.Tensor:  # [n] bool: anchor frames (written un-roped)
        return self._unroped

    def sink_positions(self) -> torch.Tensor:  # [anchor_frames] the anchor's positions in this pass
        return self._anchor_pos

    def layer(self, layer: int, n: int) -> GatheredLayerKV:
        """Layer ``layer``'s K/V for the planned pass: tensors only, no layer index (torch.compile would
        specialise a compiled block on the index and recompile per layer, see ``LayerKV``)."""
        return GatheredLayerKV(
            self.k[layer],
            self.v[layer],
            self._write,
            self._visible,
            k_write_index=self._k_write,
            sink_index=self._anchor_index,
            unroped_sinks_at=self.capacity_tokens,
        )

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor, n: int) -> None:
        self.layer(layer, n).write(k, v)

    def visible(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:  # [B, kv_tokens, heads, hd]
        return self.layer(layer, self.chunk_frames).visible()

    def tensors(self) -> list[torch.Tensor]:
        return [*self.k, *self.v, self._anchor_index, self._token_offsets, *self._buffers.values()]

    def nbytes(self) -> int:
        return tensor_nbytes(self.tensors())

    def kv_nbytes(self) -> int:
        """Bytes of the K/V buffers alone (what ``planned_kv_nbytes`` predicts)."""
        return tensor_nbytes([*self.k, *self.v])


class RollingForcingSampler:
    """Drives the windows; ``generate(i)`` returns chunk i's final x0, ``finalize(i)`` caches it clean.

    run: ``(x [B, C, q, h, w], t [B, q]) -> v`` -- one ``forward_planned`` on ``cache`` after its plan.
    noise: ``chunk -> [R, B, C, n, h, w]`` (initial noise, then one fresh draw per re-noise step).
    """

    def __init__(
        self,
        cache: RollingWindowCache,
        timesteps: list[float],
        sigmas: list[float],
        frames_per_chunk: int,
        num_chunks: int | None,
        run: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        noise: Callable[[int], torch.Tensor],
        context_noise: float = 0.0,
        on_window: Callable[[], None] | None = None,
    ):
        self.cache, self.timesteps, self.sigmas = cache, list(timesteps), list(sigmas)
        self.R, self.n, self.num_chunks = len(timesteps), frames_per_chunk, num_chunks
        self.run, self.noise, self.context_noise = run, noise, context_noise
        self.on_window = on_window
        self.next_window = 0
        # the window's chunks (noisy, not history): chunk -> (x_t, its noise draws); done: chunk -> final
        # x0 until finalized (one at a time: each window completes its oldest chunk)
        self.in_flight: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.done: dict[int, torch.Tensor] = {}

    def window_chunks(self, w: int) -> list[int]:
        last = w if self.num_chunks is None else min(self.num_chunks - 1, w)
        return list(range(max(0, w - self.R + 1), last + 1))

    def generate(self, i: int) -> torch.Tensor:
        """Run windows until chunk ``i`` is done (R windows for chunk 0, then one per chunk)."""
        while i not in self.done:
            self._window(self.next_window)
            self.next_window += 1
        return self.done[i]

    def _window(self, w: int) -> None:
        if self.on_window is not None:
            self.on_window()
        chunks = self.window_chunks(w)
        n, R = self.n, self.R
        xs, ts = [], []
        for b in chunks:
            if b not in self.in_flight:  # enters the window as pure noise
                draws = self.noise(b)
                self.in_flight[b] = (draws[0], draws)
            xs.append(self.in_flight[b][0])
            ts.append(self.timesteps[w - b])
        x = torch.cat(xs, dim=2)  # [B, C, q, h, w]
        t = upload_to_device(ts, x.device, torch.float32).repeat_interleave(n)[None].expand(x.shape[0], -1)
        s, q = chunks[0] * n, len(chunks) * n
        c = self.cache
        query_slots = list(range(c.scratch_start, c.scratch_start + q))
        query_pos = list(range(s, s + q))
        if chunks[0] == 0:
            key_slots, key_pos = [], []
        else:
            wc = min(s - n, ATTENTION_FRAMES - q - n)
            cached = list(range(s - wc, s))
            anchor_pos = s - wc - n
            key_slots = list(range(n)) + [c.slot_of(f) for f in cached]
            key_pos = list(range(anchor_pos, anchor_pos + n)) + cached
        c.plan(query_slots, query_pos, key_slots, key_pos)
        v = self.run(x, t)
        for j, b in enumerate(chunks):
            k = w - b
            xb = x[:, :, j * n : (j + 1) * n]
            x0 = flow_to_x0(xb, v[:, :, j * n : (j + 1) * n], self.sigmas[k])
            if k == R - 1:
                del self.in_flight[b]
                self.done[b] = x0
            else:
                draws = self.in_flight[b][1]
                self.in_flight[b] = (renoise(x0, draws[k + 1], self.sigmas[k + 1]), draws)

    def finalize(self, i: int) -> None:
        """Clean pass of chunk ``i``'s x0 at ``context_noise``: its K/V become cache history."""
        x0 = self.done.pop(i)
        n, c = self.n, self.cache
        s = i * n
        slots = [c.slot_of(f) for f in range(s, s + n)]
        if s == 0:
            key_frames, key_pos = [], []
        elif s + n <= ATTENTION_FRAMES:
            key_frames = list(range(s))
            key_pos = key_frames
        else:
            key_frames = list(range(s + n - ATTENTION_FRAMES, s))
            key_pos = key_frames
        c.plan(slots, list(range(s, s + n)), [c.slot_of(f) for f in key_frames], key_pos)
        t = torch.full((x0.shape[0], n), float(self.context_noise), device=x0.device)
        self.run(x0, t)


@register_scheme("rolling_forcing")
class RollingForcingScheme(RolloutScheme):
    """The pipeline's side of Rolling Forcing: ``generate(i)`` runs windows until chunk i is done (R
    windows for chunk 0, then one per chunk), ``finalize(i)`` writes its clean K/V."""

    title = "Rolling Forcing"

    def __init__(self, preset, dit, runner, options):
        super().__init__(preset, dit, runner, options)
        single_expert(preset, self.experts)
        self.rolling: RollingForcingSampler | None = None

    @property
    def noise_draws(self) -> int:
        return len(self.preset.schedule)

    def total_steps(self, num_chunks):  # a window pass per chunk + R - 1 filling the window
        return None if num_chunks is None else num_chunks + len(self.preset.schedule) - 1

    def check_start(self, video, state) -> None:
        p, n, t = self.preset, self.preset.frames_per_chunk, video.num_latent_frames
        if state.image is not None or state.switches:
            raise ValueError(
                f"preset {p.name!r} (Rolling Forcing) supports neither image conditioning nor prompt switches"
            )
        if t is not None and t % n:
            raise ValueError(
                f"Rolling Forcing denoises whole chunks of {n} latent frames; {t} latent frames "
                f"is not a multiple of {n}: pass num_chunks, or num_frames = 1 + 4 (T - 1) with T a multiple of {n}"
            )

    def cache_spec(self, video):
        """``RollingWindowCache`` arguments (no memory)."""
        p, model = self.preset, self.experts[0]
        cfg = model.config
        frame_tokens = (video.latent_h // cfg.patch[1]) * (video.latent_w // cfg.patch[2])
        if model.kv_cache_geometry(frame_tokens) != (frame_tokens, cfg.num_heads):
            raise ValueError(
                f"preset {p.name!r} (Rolling Forcing) does not run context-parallel yet (its window cache is "
                "not sharded); run it on one GPU"
            )
        return RollingWindowCache, dict(
            num_layers=cfg.num_layers,
            batch=video.batch,
            frame_tokens=frame_tokens,
            num_heads=cfg.num_heads,
            head_dim=cfg.head_dim,
            block_frames=p.frames_per_chunk,
            window_blocks=len(p.schedule.timesteps),
            dtype=self.options.cache_dtype or model.compute_dtype,
            device=self.runner.device,
        )

    def start(self, video, state, cache) -> None:
        super().start(video, state, cache)
        model, sched, runner, n = self.experts[0], self.preset.schedule, self.runner, video.frames_per_chunk

        def run(x, t):
            return runner.call(model.forward_planned, x, t, state.prompt.cross[0], cache, None)

        t = video.num_latent_frames
        self.rolling = RollingForcingSampler(
            cache,
            sched.timesteps,
            sched.sigmas,
            n,
            None if t is None else t // n,
            run,
            runner.noise,
            sched.context_noise,
            on_window=runner.check_interrupt,
        )

    def generate(self, i: int) -> torch.Tensor:
        windows = self.rolling.next_window
        x0 = self.rolling.generate(i)
        for _ in range(self.rolling.next_window - windows):
            self.runner.step_done(i)
        return x0

    def finalize(self, i: int) -> None:
        self.rolling.finalize(i)

    def release(self) -> None:
        super().release()
        self.rolling = None

    def oom_fixes(self) -> list[str]:
        return ["a shorter attention window (sampler window_frames / sink_frames; CLI --window / --sink)"]
