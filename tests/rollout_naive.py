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
