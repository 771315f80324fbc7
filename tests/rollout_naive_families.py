"""Naive re-derivations of the new families' rollouts, written from their official code (no KV-cache
object of ours, no plan): what ``tests/test_rollout_families.py`` compares the pipeline with.

- ``OfficialEMASinkAttention``: Reward Forcing's ``CausalWanSelfAttention`` KV handling token by token
  (JaydenLyh/Reward-Forcing @4317f5a ``wan/modules/causal_model.py``): one raw-key token buffer of
  ``(sink + window)`` frames per layer with ``global_end`` / ``local_end``; a pass past ``global_end`` that
  overflows evicts the oldest window tokens, shifts the rest left, writes its own, and blends the evicted
  tokens into the sink (EMA when as many as the sink, else a copy over its first tokens); attention over
  [sink, window segment] roped from position 0, the queries right after.
- ``official_unipc``: Wan2.2's ``FlowUniPCMultistepScheduler`` (``wan/utils/fm_solvers_unipc.py`` of the
  ``wan22`` package, byte-identical to LongLive 2.0's ``wan_5b/utils/fm_solvers_unipc.py``), loaded from its
  file so that ``wan/utils/__init__.py`` (prompt extension, API clients) is not imported.
"""

from __future__ import annotations

import importlib.util
import sys

import torch
import torch.nn.functional as F
from official_ref import _ensure_bare_wan_package

from wan_core.dit.rope import apply_rope

_UNIPC = {}


def official_unipc():
    if "cls" in _UNIPC:
        return _UNIPC["cls"]
    _ensure_bare_wan_package()  # (find_spec raises on the bare package official_ref registers)
    path = f"{sys.modules['wan'].__path__[0]}/utils/fm_solvers_unipc.py"
    loader = importlib.util.spec_from_file_location("wan22_fm_solvers_unipc", path)
    mod = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(mod)
    _UNIPC["cls"] = mod.FlowUniPCMultistepScheduler
    return _UNIPC["cls"]


class OfficialEMASinkAttention:
    """Reward Forcing's causal self-attention with its own buffers, run through our DiT blocks."""

    def __init__(self, dit, sink_frames: int, window_frames: int, frame_tokens: int, alpha: float):
        self.dit, self.alpha = dit, alpha
        self.ft = frame_tokens
        self.sink_tokens = sink_frames * frame_tokens
        self.cap = (sink_frames + window_frames) * frame_tokens  # local_attn_size * frame_seqlen
        self.max_attention = self.cap
        self.k = self.v = None  # per layer [B, cap, heads, hd] (raw keys)
        self.global_end = self.local_end = 0

    def _layer(self, i, q, k, v, current_start, h, w):
        n_new = q.shape[1]
        current_end = current_start + n_new
        kc, vc, st = self.k[i], self.v[i], self.sink_tokens
        evicted = None
        if current_end > self.global_end and n_new + self.local_end > self.cap:
            n_ev = n_new + self.local_end - self.cap
            n_roll = self.local_end - n_ev - st
            evicted = (kc[:, st : st + n_ev].clone(), vc[:, st : st + n_ev].clone())
            kc[:, st : st + n_roll] = kc[:, st + n_ev : st + n_ev + n_roll].clone()
            vc[:, st : st + n_roll] = vc[:, st + n_ev : st + n_ev + n_roll].clone()
            local_end = self.local_end + current_end - self.global_end - n_ev
        else:
            local_end = self.local_end + current_end - self.global_end
        kc[:, local_end - n_new : local_end] = k
        vc[:, local_end - n_new : local_end] = v
        if evicted is not None and evicted[0].shape[1] > 0:
            ek, ev = evicted
            if ek.shape[1] == st:
                kc[:, :st] = self.alpha * kc[:, :st] + (1 - self.alpha) * ek
                vc[:, :st] = self.alpha * vc[:, :st] + (1 - self.alpha) * ev
            else:
                m = min(ek.shape[1], st)
                kc[:, :m] = ek[:, :m]
                vc[:, :m] = ev[:, :m]
        kv_start = max(st, local_end - self.max_attention + st)
        keys = torch.cat([kc[:, :st], kc[:, kv_start:local_end]], dim=1)
        values = torch.cat([vc[:, :st], vc[:, kv_start:local_end]], dim=1)
        q_start = (st + (local_end - kv_start) - n_new) // self.ft
        rope = self.dit.rope
        cos_q, sin_q = rope.for_frames(torch.arange(q_start, q_start + n_new // self.ft), h, w)
        cos_k, sin_k = rope.for_frames(torch.arange(keys.shape[1] // self.ft), h, w)
        out = F.scaled_dot_product_attention(
            apply_rope(q, cos_q, sin_q).transpose(1, 2),
            apply_rope(keys, cos_k, sin_k).transpose(1, 2),
            values.transpose(1, 2),
        )
        return out.transpose(1, 2), current_end, local_end

    def run(self, x, t, cross, frame_start: int):
        """One pass over ``x [B, C, n, h, w]`` at latent frame ``frame_start``; the flow prediction."""
        dit = self.dit
        with torch.no_grad():
            tokens, grid = dit.embed_video(x, None)
            n, h, w = grid
            assert h * w == self.ft
            if self.k is None:
                b, heads, hd = x.shape[0], dit.config.num_heads, dit.config.head_dim
                self.k = [torch.zeros(b, self.cap, heads, hd) for _ in dit.blocks]
                self.v = [torch.zeros(b, self.cap, heads, hd) for _ in dit.blocks]
            ends = {}

            def attend(i):
                def fn(q, k, v):
                    out, ends["global"], ends["local"] = self._layer(i, q, k, v, frame_start * self.ft, h, w)
                    return out

                return fn

            t_groups = dit.time_groups(t, x.shape[0], n, tokens.shape[1])
            v = dit._run(tokens, t_groups, cross, attend, grid)
            self.global_end, self.local_end = ends["global"], ends["local"]
            return v


def few_step_reference(run, noise, schedule, n: int, num_chunks: int, first_chunk_schedule=None):
    """Self-Forcing's per-chunk loop over a ``run(x, t, frame_start)`` pass: x0 predictions re-noised with
    the given noise (chunk c's ``noise[c][k]``), then the clean context pass at t = 0."""
    out = []
    for c in range(num_chunks):
        sched = first_chunk_schedule if c == 0 and first_chunk_schedule is not None else schedule
        x = noise[c][0]
        for k, (tk, sk) in enumerate(zip(sched.timesteps, sched.sigmas)):
            v = run(x, torch.full((1, n), float(tk)), c * n)
            x0 = x - sk * v
            if k + 1 < len(sched.timesteps):
                x = (1 - sched.sigmas[k + 1]) * x0 + sched.sigmas[k + 1] * noise[c][k + 1]
        run(x0, torch.zeros(1, n), c * n)
        out.append(x0)
    return out
