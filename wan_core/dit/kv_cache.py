"""Explicit caches for streaming (autoregressive) Wan DiT inference.

``CrossAttnCache``: text (and CLIP image) cross-attention K/V of every layer, computed once per prompt
by ``WanDiT.prepare_context``.

``RollingKVCache``: self-attention K/V of every layer for ``sink_frames`` (S) + ``window_frames`` (W)
latent frames, preallocated once; memory never grows with video length.

Window semantics (same as Self-Forcing's ``local_attn_size`` / ``sink_size`` with
``local_attn_size = S + W``, ``sink_size = S``): a chunk of latent frames ``[s, s+n)`` attends to

- the sink frames ``[0, S)`` (kept forever), and
- the last W frames ending with the chunk itself, ``[max(S, s+n-W), s+n)`` -- W **counts the current
  chunk** and does **not** count the sink.

So before the video reaches S+W frames a chunk sees every earlier frame (a full block-causal pass).
(Checked numerically against Self-Forcing's ``CausalWanModel`` KV-cache inference @33593df, fp32, with
re-runs and rolling: max relative error 3e-7 for local_attn_size/sink_size = -1/0, 6/1, 5/2, 4/0.)
Layout: sink frame f lives in slot f; frame f >= S in slot ``S + (f - S) % W`` (a ring). Writing a
chunk overwrites exactly the frames that just left the window, and re-running the same ``frame_start``
(the next denoising step, the clean context pass) overwrites the same slots. Slots are filled in frame
order, so the visible keys are always the slot prefix ``[0, min(s+n, S+W))`` -- no attention mask.

RoPE modes:

- ``"absolute"`` (Self-Forcing): keys are stored roped with their absolute latent frame index;
  limited to the 1024-position RoPE table (an error names the limit past it);
- ``"relative"`` (unbounded length): attention sees sink frame i at position i and window frame f at
  ``S + f - first_window_frame``, so the differences it sees stay below S+W however long the video.
  Since attention depends only on position differences, the whole pass is placed ``delta =
  first_window_frame - S`` further on: queries and window keys then sit at their absolute frame f, and
  only the sinks move (sink i at ``i + delta``). So window keys are stored roped once, when written,
  at their absolute frame (angles computed in float64 from the position: no 1024-row table), and only
  the S sinks are roped per pass: each layer keeps an un-roped copy of its sink keys in a spare area
  after the window and ropes it into the sink slots at ``sink_positions()`` before attending
  (``LayerKV.rope_sinks``). Per layer and pass that is S + n frames roped (sinks + the pass's own
  keys) instead of all S + W visible ones. Until the window is full (and always when S=0) delta is 0
  and it equals absolute mode; a pass that writes sink frames always has delta 0.

Host-side bookkeeping lives in ``plan_chunk(frame_start, n)`` (the next chunk, or a re-run of the
last one) and ``plan_span(frame_start, n)`` (any span of frames in one pass: a re-encode of the frames
held, or a rebuild from frame 0 of up to S+W frames), which upload a few ints (pinned, non-blocking on
CUDA: no host sync) and fill preallocated device index buffers from them; ``WanDiT.forward_planned``
then only reads device tensors and the Python ints ``kv_frames`` / ``kv_tokens`` (one value per fill
level, constant once the cache is full), so it can be captured in a CUDA graph per fill level and
replayed after each plan.

The cache interface ``WanDiT.forward_planned`` reads (after a plan; implemented by ``RollingKVCache``
and, without subclassing it, by Rolling Forcing's ``wan_core.rollout.schemes.rolling_forcing.RollingWindowCache``;
the context-parallel DiT reads the same plus ``num_heads`` and ``kv_frames``):

- ``frame_tokens`` (int): tokens per latent frame; ``chunk_frames`` (int): frames of the planned pass
  (the input must have ``chunk_frames`` x ``frame_tokens`` tokens);
- ``rope`` (str): ``"absolute"`` or ``"relative"`` (above);
- ``chunk_positions(n)`` -> ``[n]`` long: temporal RoPE positions of the pass's frames (queries, and
  the keys as written); relative mode: absolute frame coordinates, unbounded (``WanRope.for_positions``);
- relative mode only: ``chunk_unroped(n)`` -> ``[n]`` bool: the pass's frames whose keys are written
  un-roped (sink frames: identity rotation), and ``sink_positions()`` -> ``[S]`` long: where the sinks
  sit in this pass;
- ``layer(i, n)`` -> a per-layer K/V object (``LayerKV`` or a subclass) with ``write(k, v)`` (the pass's
  K/V ``[B, n*frame_tokens, heads, head_dim]`` into its slots, through the device tensors
  ``k_write_index`` / ``write_index``), ``rope_sinks(cos, sin)`` (relative mode) and ``visible()`` ->
  the keys / values ``[B, kv_tokens, heads, head_dim]`` the pass attends to (its own included). The
  blocks get this object, never the layer index: a compiled block specialised on the index recompiles
  per layer (see ``LayerKV``).

``write_index(n)`` / ``write(i, k, v, n)`` / ``visible(i)`` are conveniences over ``layer(i, n)`` for
callers outside the forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..memory import tensor_nbytes
from .rope import apply_rope

__all__ = ["CrossAttnCache", "RollingKVCache", "LayerKV", "planned_kv_nbytes", "upload_to_device"]


def upload_to_device(values: list, device: torch.device, dtype: torch.dtype = torch.long) -> torch.Tensor:
    """Host numbers -> a new ``[len(values)]`` tensor on ``device`` without a host sync: on CUDA the copy
    goes from pinned memory with ``non_blocking=True`` (a copy from pageable memory blocks the host until
    the GPU has caught up); PyTorch's pinned-memory cache keeps the staging block alive until the copy
    has run."""
    host = torch.tensor(values, dtype=dtype)
    if torch.device(device).type != "cuda":
        return host.to(device)
    return host.pin_memory().to(device, non_blocking=True)


@dataclass
class CrossAttnCache:
    """Per-layer cross-attention K/V: ``text_k[i]`` ``[B, Lt, heads, head_dim]`` (Lt >= 512),
    ``image_k[i]`` ``[B, 257 | 514, heads, head_dim]`` (Wan2.1 I2V / FLF2V only, else None)."""

    text_k: list[torch.Tensor]
    text_v: list[torch.Tensor]
    image_k: list[torch.Tensor] | None = None
    image_v: list[torch.Tensor] | None = None

    @property
    def batch(self) -> int:
        return self.text_k[0].shape[0]

    def layer(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        if self.image_k is None:
            return self.text_k[i], self.text_v[i], None, None
        return self.text_k[i], self.text_v[i], self.image_k[i], self.image_v[i]


class LayerKV:
    """One layer's K/V for one planned pass, as read by ``WanDiT.forward_planned``: the layer's buffers,
    the write indices and the visible length -- tensors and ints that are the same for every layer, no
    layer index. A compiled block is then specialised only on shapes (not on the layer: with
    ``cache.write(i, ...)`` torch.compile recompiled once per layer, hit its recompile limit after 8
    layers and ran the rest eagerly).

    Relative RoPE with sinks: the keys' buffer has a spare area at token ``unroped_sinks_at`` holding
    the sink keys un-roped (``k_write_index`` sends the pass's sink frames there); ``rope_sinks`` ropes
    them into the sink slots ``sink_index`` (= ``[0, sink_tokens)``) for this pass."""

    def __init__(
        self,
        k: torch.Tensor,
        v: torch.Tensor,
        write_index: torch.Tensor,
        kv_tokens: int,
        k_write_index: torch.Tensor | None = None,
        sink_index: torch.Tensor | None = None,
        unroped_sinks_at: int = 0,
    ):
        self.k, self.v = k, v  # [B, capacity_tokens (+ sink_tokens for k), heads, head_dim]
        self.write_index = write_index  # [n * frame_tokens] token slots of the pass (values)
        self.k_write_index = write_index if k_write_index is None else k_write_index  # (keys)
        self.kv_tokens = kv_tokens
        self.sink_index = sink_index  # [sink_tokens] = arange: the sink slots, or None (no sinks)
        self.unroped_sinks_at = unroped_sinks_at

    def write(self, k: torch.Tensor, v: torch.Tensor) -> None:  # [B, n*frame_tokens, heads, head_dim]
        self.k.index_copy_(1, self.k_write_index, k.to(self.k.dtype))
        self.v.index_copy_(1, self.write_index, v.to(self.v.dtype))

    def rope_sinks(self, cos: torch.Tensor, sin: torch.Tensor) -> None:  # each [1, sink_tokens, 1, hd/2]
        """Relative RoPE: this pass's sink keys, roped from their un-roped copy at the sink positions."""
        if self.sink_index is not None:
            a, st = self.unroped_sinks_at, self.sink_index.shape[0]
            # index_copy_, not a slice copy_: inductor then keeps the attention reading the cache buffer
            # in place (a slice copy_ made it materialise all visible keys into a new buffer per layer)
            self.k.index_copy_(1, self.sink_index, apply_rope(self.k[:, a : a + st], cos, sin))

    def visible(self) -> tuple[torch.Tensor, torch.Tensor]:  # each [B, kv_tokens, heads, head_dim]
        return self.k[:, : self.kv_tokens], self.v[:, : self.kv_tokens]


class RollingKVCache:
    """Self-attention K/V ring buffer of S sink + W window latent frames (see module docstring)."""

    ROPE_MODES = ("absolute", "relative")

    def __init__(
        self,
        num_layers: int,
        batch: int,
        frame_tokens: int,
        num_heads: int,
        head_dim: int,
        window_frames: int,
        sink_frames: int = 0,
        dtype: torch.dtype = torch.bfloat16,
        device: str | torch.device = "cpu",
        rope: str = "absolute",
        max_positions: int = 1024,
    ):
        if rope not in self.ROPE_MODES:
            raise ValueError(f"rope must be one of {self.ROPE_MODES}, got '{rope}'")
        if window_frames < 1 or sink_frames < 0:
            raise ValueError(
                f"need window_frames >= 1 and sink_frames >= 0, got {window_frames}, {sink_frames}"
            )
        if rope == "relative" and sink_frames + window_frames > max_positions:
            raise ValueError(  # not a limit of the RoPE math any more (angles are exact in float64)
                f"sink_frames + window_frames = {sink_frames + window_frames} exceeds the "
                f"{max_positions}-position RoPE table"
            )
        self.num_layers, self.batch, self.frame_tokens = num_layers, batch, frame_tokens
        self.num_heads, self.head_dim = num_heads, head_dim
        self.window_frames, self.sink_frames = window_frames, sink_frames
        self.rope, self.max_positions = rope, max_positions
        self.dtype, self.device = dtype, torch.device(device)
        self.capacity_frames = sink_frames + window_frames
        self.capacity_tokens = self.capacity_frames * frame_tokens
        # relative RoPE: the keys' buffer ends with an un-roped copy of the sink frames (LayerKV)
        self.unroped_sink_frames = sink_frames if rope == "relative" else 0
        shape = (batch, self.capacity_tokens, num_heads, head_dim)
        k_shape = (
            batch,
            (self.capacity_frames + self.unroped_sink_frames) * frame_tokens,
            num_heads,
            head_dim,
        )
        self.k = [torch.zeros(k_shape, dtype=dtype, device=self.device) for _ in range(num_layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=self.device) for _ in range(num_layers)]
        # device-side plan buffers (per chunk length n: write slots, temporal positions, un-roped frames)
        self._write_index: dict[int, torch.Tensor] = {}
        self._k_write_index: dict[int, torch.Tensor] = {}
        self._chunk_positions: dict[int, torch.Tensor] = {}
        self._chunk_unroped: dict[int, torch.Tensor] = {}
        self.slot_positions = torch.zeros(self.capacity_frames, dtype=torch.long, device=self.device)
        self._sink_index = (
            torch.arange(self.unroped_sink_frames * frame_tokens, device=self.device)
            if self.unroped_sink_frames
            else None
        )
        self._token_offsets: torch.Tensor | None = None  # arange(frame_tokens) on the device
        self.reset()

    # -- host-side bookkeeping -----------------------------------------------------------------
    def reset(self) -> None:
        """Forget every frame (memory is kept; stale slots are never attended)."""
        self.slot_frame = [-1] * self.capacity_frames
        self.chunk_start = -1
        self.chunk_end = 0
        self.kv_frames = 0
        self.kv_tokens = 0
        self.chunk_frames = 0

    def slot_of(self, frame: int) -> int:
        s = self.sink_frames
        return frame if frame < s else s + (frame - s) % self.window_frames

    def _position(self, frame: int, end: int) -> int:
        """RoPE position of ``frame`` in the pass ending at ``end``: absolute mode its index; relative mode
        its index too, except a sink frame, which sits right before the window (``delta`` after its index,
        see the module docstring)."""
        if self.rope == "absolute" or frame >= self.sink_frames:
            return frame
        return frame + max(0, end - self.window_frames - self.sink_frames)

    def plan_chunk(self, frame_start: int, n: int) -> None:
        """Book-keep the chunk of latent frames ``[frame_start, frame_start+n)`` and update the device
        buffers read by the forward pass. ``frame_start`` must be 0 (new video), the previous chunk's
        start (re-run: next denoising step / clean pass) or the previous chunk's end (next chunk)."""
        frame_start, n = int(frame_start), int(n)
        if n < 1 or n > self.window_frames:
            raise ValueError(
                f"a chunk of {n} latent frames does not fit the attention window of {self.window_frames} "
                "frames (window_frames counts the current chunk); raise window_frames"
            )
        if frame_start not in (0, self.chunk_start, self.chunk_end):
            raise ValueError(
                f"chunk at frame {frame_start}: the cache holds frames up to {self.chunk_end}; the next "
                f"chunk must start at {self.chunk_end}, re-run {self.chunk_start}, or start over at 0"
            )
        self._plan(frame_start, n)

    def plan_span(self, frame_start: int, n: int) -> None:
        """Plan frames ``[frame_start, frame_start + n)`` as one pass, whatever the previous chunk was:
        re-encoding the frames already held (LongLive's re-cache after a prompt switch: ``frame_start +
        n`` = the current end) or rebuilding the cache from frame 0 (Krea's KV recompute). A span longer
        than the window is allowed only from frame 0 and up to ``sink + window`` frames, where every frame
        sits in slot ``f`` at position ``f`` and attends to all frames before it."""
        frame_start, n = int(frame_start), int(n)
        if n < 1 or frame_start < 0:
            raise ValueError(f"a span needs n >= 1 frames from frame >= 0, got {n} from {frame_start}")
        if n > self.window_frames and (frame_start != 0 or n > self.capacity_frames):
            raise ValueError(
                f"a span of {n} frames from frame {frame_start} does not fit the cache "
                f"({self.sink_frames} sink + {self.window_frames} window frames)"
            )
        self._plan(frame_start, n)

    def _plan(self, frame_start: int, n: int) -> None:
        end = frame_start + n
        last = self._position(end - 1, end)
        if self.rope == "absolute" and last >= self.max_positions:
            raise ValueError(
                f"latent frame {last} is past the {self.max_positions}-position RoPE table of Wan "
                "(absolute RoPE, as Self-Forcing); use rope='relative' for longer videos"
            )
        if frame_start == 0:
            self.slot_frame = [-1] * self.capacity_frames
        for f in range(frame_start, end):
            self.slot_frame[self.slot_of(f)] = f
        self.chunk_start, self.chunk_end, self.chunk_frames = frame_start, end, n
        self.kv_frames = min(end, self.capacity_frames)
        self.kv_tokens = self.kv_frames * self.frame_tokens

        # one small host->device upload per plan: [n slots, n chunk positions (, capacity slot positions)];
        # the token write indices are expanded on the device (n * frame_tokens longs never cross the bus)
        plan = [self.slot_of(f) for f in range(frame_start, end)]
        plan += [self._position(f, end) for f in range(frame_start, end)]
        if self.rope == "relative":
            plan += [self._position(f, end) if f >= 0 else 0 for f in self.slot_frame]
        staged = self._upload(plan)
        ft, dev = self.frame_tokens, self.device
        if n not in self._write_index:
            self._write_index[n] = torch.empty(n * ft, dtype=torch.long, device=dev)
            self._chunk_positions[n] = torch.empty(n, dtype=torch.long, device=dev)
            if self.unroped_sink_frames:
                self._k_write_index[n] = torch.empty(n * ft, dtype=torch.long, device=dev)
            if self.rope == "relative":
                self._chunk_unroped[n] = torch.empty(n, dtype=torch.bool, device=dev)
        if self._token_offsets is None:
            self._token_offsets = torch.arange(ft, dtype=torch.long, device=dev)
        slots = staged[:n]
        torch.add(
            self._token_offsets[None, :], slots[:, None], alpha=ft, out=self._write_index[n].view(n, ft)
        )
        self._chunk_positions[n].copy_(staged[n : 2 * n])
        if self.rope == "relative":
            unroped = self._chunk_unroped[n]
            torch.lt(slots, self.sink_frames, out=unroped)  # sink frames: written un-roped
            self.slot_positions.copy_(staged[2 * n :])
            if self.unroped_sink_frames:  # keys of sink frames go to the un-roped copy after the window
                k_slots = torch.where(unroped, slots + self.capacity_frames, slots)
                torch.add(
                    self._token_offsets[None, :],
                    k_slots[:, None],
                    alpha=ft,
                    out=self._k_write_index[n].view(n, ft),
                )

    def _upload(self, values: list[int]) -> torch.Tensor:  # -> [len(values)] long on self.device
        return upload_to_device(values, self.device)

    # -- EMA sink (Reward Forcing) ---------------------------------------------------------------
    def frames_to_evict(self, frame_start: int, n: int) -> list[int]:
        """The window frames the chunk ``[frame_start, frame_start + n)`` will overwrite (oldest first);
        host bookkeeping, read before ``plan_chunk`` of a new chunk. Empty for a re-run or frame 0."""
        if frame_start == 0 or frame_start != self.chunk_end:
            return []
        out = []
        for f in range(frame_start, frame_start + n):
            old = self.slot_frame[self.slot_of(f)]
            if old >= self.sink_frames and old != f:
                out.append(old)
        return sorted(out)

    def blend_into_sinks(self, frames: list[int], alpha: float, cos: torch.Tensor, sin: torch.Tensor) -> None:
        """Reward Forcing's EMA sink: every layer's sink K/V take in the K/V of the window ``frames``
        (about to be evicted). As many frames as the sink: ``sink = alpha * sink + (1 - alpha) * evicted``;
        fewer: they replace the sink's first frames. Keys blend un-roped: the window keys (stored roped at
        their absolute frame) are rotated back with ``cos`` / ``sin`` of those frames
        (``[1, len(frames) * frame_tokens, 1, head_dim / 2]``) into the sinks' un-roped copy. Relative
        RoPE with sinks only."""
        if not frames:
            return
        if self.rope != "relative" or not self.sink_frames:
            raise ValueError("an EMA sink needs a relative-RoPE cache with sink frames")
        ft, s = self.frame_tokens, self.sink_frames
        slots = [self.slot_of(f) for f in frames]
        index = upload_to_device([sl * ft + j for sl in slots for j in range(ft)], self.device)
        a = self.capacity_tokens  # the sinks' un-roped keys
        m = min(len(frames), s) * ft
        for k, v in zip(self.k, self.v):
            k_raw = apply_rope(k.index_select(1, index), cos, -sin)  # [B, e * ft, heads, hd]
            v_old = v.index_select(1, index)
            if len(frames) == s:
                k[:, a : a + m] = alpha * k[:, a : a + m] + (1 - alpha) * k_raw
                v[:, :m] = alpha * v[:, :m] + (1 - alpha) * v_old
            else:
                k[:, a : a + m] = k_raw[:, :m]
                v[:, :m] = v_old[:, :m]

    # -- device-side views used by the forward ----------------------------------------------------
    def write_index(self, n: int) -> torch.Tensor:  # [n * frame_tokens] token slots of the chunk
        return self._write_index[n]

    def chunk_positions(self, n: int) -> torch.Tensor:  # [n] temporal RoPE positions of the chunk
        return self._chunk_positions[n]

    def chunk_unroped(self, n: int) -> torch.Tensor:  # [n] bool, relative mode: frames written un-roped
        return self._chunk_unroped[n]

    def sink_positions(self) -> torch.Tensor:  # [S] relative mode: where the sinks sit in this pass
        return self.slot_positions[: self.sink_frames]

    def visible_slot_positions(self) -> torch.Tensor:  # [kv_frames] relative mode: position per slot
        """The position every visible key is attended at (introspection; the forward does not read it)."""
        return self.slot_positions[: self.kv_frames]

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor, n: int) -> None:
        """Write a chunk's K/V ``[B, n*frame_tokens, heads, head_dim]`` into its slots (keys roped at
        ``chunk_positions``; relative mode: un-roped for the ``chunk_unroped`` frames)."""
        self.layer(layer, n).write(k, v)

    def layer(self, layer: int, n: int) -> LayerKV:
        """Layer ``layer``'s K/V for the planned chunk of ``n`` frames (what ``forward_planned`` uses)."""
        return LayerKV(
            self.k[layer],
            self.v[layer],
            self._write_index[n],
            self.kv_tokens,
            k_write_index=self._k_write_index.get(n),
            sink_index=self._sink_index,
            unroped_sinks_at=self.capacity_tokens,
        )

    def visible(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:  # each [B, kv_tokens, heads, hd]
        return self.k[layer][:, : self.kv_tokens], self.v[layer][:, : self.kv_tokens]

    # -- introspection ----------------------------------------------------------------------------
    def tensors(self) -> list[torch.Tensor]:
        return [
            *self.k,
            *self.v,
            self.slot_positions,
            *([] if self._sink_index is None else [self._sink_index]),
            *self._write_index.values(),
            *self._k_write_index.values(),
            *self._chunk_positions.values(),
            *self._chunk_unroped.values(),
            *([] if self._token_offsets is None else [self._token_offsets]),
        ]

    def nbytes(self) -> int:
        return tensor_nbytes(self.tensors())

    def kv_nbytes(self) -> int:
        """Bytes of the K/V buffers alone (what ``planned_kv_nbytes`` predicts)."""
        return tensor_nbytes([*self.k, *self.v])

    def __repr__(self) -> str:
        return (
            f"RollingKVCache(layers={self.num_layers}, batch={self.batch}, sink={self.sink_frames}, "
            f"window={self.window_frames} frames x {self.frame_tokens} tokens, rope={self.rope}, "
            f"{self.dtype}, {self.nbytes() / 2**20:.1f} MiB, frames [{self.chunk_start}, {self.chunk_end}))"
        )


def planned_kv_nbytes(cache_cls: type, spec: dict) -> int:
    """Bytes of the K/V buffers ``cache_cls(**spec)`` would allocate, without allocating them: the cache
    is built on the meta device (any cache class with ``kv_nbytes``)."""
    return cache_cls(**{**spec, "device": "meta"}).kv_nbytes()
