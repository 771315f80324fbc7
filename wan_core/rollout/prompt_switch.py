"""Which frames a prompt switch re-encodes: LongLive's KV re-cache ("recache after switch").

LongLive (NVlabs/LongLive @2462895, ``pipeline/interactive_causal_inference.py``
``_recache_after_switch`` and ``wan/modules/causal_model.py`` ``CausalWanSelfAttention``, with the
published ``configs/longlive_interactive_inference.yaml``: ``local_attn_size 12``, ``sink_size 3``,
``num_frame_per_block 3``, ``global_sink: true``, ``context_noise 0``) does, before the first block of
a new prompt starting at latent frame ``s``:

- the new prompt's cross-attention cache replaces the old one;
- with ``L = local_attn_size = S + W``: the last ``min(L, s)`` frames ``[s - min(L, s), s)`` (their
  clean latents) go through **one** DiT pass at ``t = context_noise`` with the new prompt, at their
  absolute RoPE positions. In that pass the self-attention is *not* block-causal (the block mask is
  ignored on the KV-cache path): every re-cached frame attends to the sink slots and to all re-cached
  window frames;
- if ``s > L`` (``recompute`` with ``current_start > 0``), the sink slots are protected
  (``global_sink``): the sink keeps the K/V written with the *old* prompt, and only the window slots
  ``[s - W, s)`` are overwritten. The first ``S`` frames of the span (``[s - L, s - W)``) are queries
  only -- their K/V are never stored nor attended -- so they cannot change anything and are skipped here;
- if ``s <= L`` (nothing evicted yet) every frame ``[0, s)``, sink included, is re-encoded in that one
  pass.

So the span re-encoded here is ``[s - W, s)`` (window frames only, attending to the kept sink) when
``s > S + W``, else ``[0, s)``.
"""

from __future__ import annotations

__all__ = ["recache_span"]


def recache_span(start: int, sink_frames: int, window_frames: int) -> tuple[int, int]:
    """(first frame, number of frames) re-encoded in one pass before a new prompt's chunk at ``start``."""
    if start <= 0:
        return 0, 0
    if start <= sink_frames + window_frames:
        return 0, start
    return start - window_frames, window_frames
