"""Naive references for the rollout schemes: one DiT pass over explicit frames with explicit RoPE
positions, explicit extra K/V and an explicit frame-level attention mask -- no KV cache, no plan.

``naive_pass`` runs the WanDiT blocks (checked against the official WanModel in test_dit_model.py)
with its own self-attention: q/k roped at the given positions, keys = [prefix K/V] + the pass's own
K/V, ``scaled_dot_product_attention`` with the mask. It returns the flow prediction and every
layer's (roped K, V) of the pass's frames, so K/V of one pass can be fed as the prefix of another.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from wan_core.dit.rope import apply_rope


def naive_pass(dit, x, t, cross, positions, prefix=None, mask=None, raw_kv=False):
    """x ``[B, C, F, h, w]``; t ``[B, F]``; positions: F ints; prefix: per layer ``(k_roped, v)`` each
    ``[B, P * ft, heads, hd]`` (P frames); mask: ``[F, P + F]`` bool (True = visible), None = all.
    Returns (v ``[B, C, F, h, w]``, per-layer list of (k_roped, v) -- or (k un-roped, v) with
    ``raw_kv`` -- of the F frames)."""
    with torch.no_grad():
        tokens, grid = dit.embed_video(x, None)
        f, h, w = grid
        ft = h * w
        cos, sin = dit.rope.for_frames(torch.tensor(positions, dtype=torch.long), h, w)
        kv_out = []
        tok_mask = None
        if mask is not None:
            tok_mask = mask.repeat_interleave(ft, 0).repeat_interleave(ft, 1)

        def attend(i):
            def fn(q, k, v):
                k_raw = k
                q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
                kv_out.append((k_raw if raw_kv else k, v))
                kk, vv = k, v
                if prefix is not None:
                    kk = torch.cat([prefix[i][0].to(k.dtype), k], dim=1)
                    vv = torch.cat([prefix[i][1].to(v.dtype), v], dim=1)
                out = F.scaled_dot_product_attention(
                    q.transpose(1, 2), kk.transpose(1, 2), vv.transpose(1, 2), attn_mask=tok_mask
                )
                return out.transpose(1, 2)

            return fn

        t_groups = dit.time_groups(t, x.shape[0], f, tokens.shape[1])
        v = dit._run(tokens, t_groups, cross, attend, grid)
    return v, kv_out


def frames_kv(kv, frames, ft):
    """Select frames (indices into the pass) from a per-layer (k, v) list."""
    idx = torch.cat([torch.arange(j * ft, (j + 1) * ft) for j in frames])
    return [(k[:, idx], v[:, idx]) for k, v in kv]


def cat_kv(*kvs):
    """Concatenate per-layer (k, v) lists along the token axis."""
    return [
        (torch.cat([kv[i][0] for kv in kvs], 1), torch.cat([kv[i][1] for kv in kvs], 1))
        for i in range(len(kvs[0]))
    ]


def rope_kv(dit, kv_raw, positions, h, w):
    """Rope per-layer un-roped (k, v) of len(positions) frames at those temporal positions."""
    cos, sin = dit.rope.for_frames(torch.tensor(positions, dtype=torch.long), h, w)
    return [(apply_rope(k, cos, sin), v) for k, v in kv_raw]


class NaiveRelativeRope:
    """Relative-RoPE streaming the way the DiT did it before window keys were stored roped: each frame's
    K/V kept un-roped (per layer, in a dict: no ring buffer, no plan); a pass over frames ``[s, e)``
    attends to the sinks ``[0, min(S, e))`` and the window ``[max(S, e - W), e)``, queries and *every*
    key roped at attention time with positions relative to the window (sink i at i, window frame f at
    ``S + f - first_window``) from the model's 1024-row table."""

    def __init__(self, dit, sink_frames: int, window_frames: int):
        self.dit, self.S, self.W = dit, sink_frames, window_frames
        self.kv = {}  # frame -> per-layer [(k un-roped, v)]

    def position(self, f: int, end: int) -> int:
        first_window = max(self.S, end - self.W)
        return f if f < self.S else self.S + f - first_window

    def run(self, x, t, cross, frame_start: int):
        """One pass over the latent frames ``x`` ``[B, C, n, H, W]`` starting at ``frame_start`` (a chunk,
        a re-run or a span); returns the flow prediction ``[B, C, n, H, W]``."""
        dit, S, W = self.dit, self.S, self.W
        with torch.no_grad():
            tokens, grid = dit.embed_video(x, None)
            n, h, w = grid
            ft, end = h * w, frame_start + n
            keys = list(range(min(S, end))) + list(range(max(S, end - W), end))
            pos = lambda frames: torch.tensor([self.position(f, end) for f in frames])  # noqa: E731
            cos_q, sin_q = dit.rope.for_frames(pos(range(frame_start, end)), h, w)
            cos_k, sin_k = dit.rope.for_frames(pos(keys), h, w)
            for j in range(n):
                self.kv[frame_start + j] = [None] * len(dit.blocks)

            def attend(i):
                def fn(q, k, v):
                    for j in range(n):
                        self.kv[frame_start + j][i] = (
                            k[:, j * ft : (j + 1) * ft],
                            v[:, j * ft : (j + 1) * ft],
                        )
                    kk = torch.cat([self.kv[f][i][0] for f in keys], dim=1)
                    vv = torch.cat([self.kv[f][i][1] for f in keys], dim=1)
                    q, kk = apply_rope(q, cos_q, sin_q), apply_rope(kk, cos_k, sin_k)
                    out = F.scaled_dot_product_attention(
                        q.transpose(1, 2), kk.transpose(1, 2), vv.transpose(1, 2)
                    )
                    return out.transpose(1, 2)

                return fn

            t_groups = dit.time_groups(t, x.shape[0], n, tokens.shape[1])
            return dit._run(tokens, t_groups, cross, attend, grid)
