"""3D rotary position embedding of the Wan DiT (FACTS 1, official ``rope_params`` / ``rope_apply``).

head_dim d is split into complex pairs: time gets ``c - 2*(c//3)`` pairs, height and width ``c//3`` each
(c = d/2; 22/21/21 for d=128), each axis with its own frequencies ``theta^(-2i/axis_dims)`` over a table
of 1024 integer positions. Pairs are *adjacent* channels ``(x[2i], x[2i+1])``. Tables are computed in
float64 and kept as float32 cos/sin; the rotation runs in float32 with real arithmetic (no complex
tensors, so it compiles and graph-captures).

``for_positions``: the same cos/sin for temporal positions past the table (relative-RoPE streaming keeps
keys roped at their absolute latent frame, unbounded): angles ``position * inv_freq`` are computed on
the device in float64 from the positions and only then rounded to float32, so a position of 10^6 is as
exact as one of 10 (a float32 angle would be off by ~0.03 rad there). Below the table's 1024 rows the
values equal the table's (the same float64 product and cosine).
"""

from __future__ import annotations

import torch

__all__ = ["rope_axis_pairs", "WanRope", "apply_rope"]


def rope_axis_pairs(head_dim: int) -> tuple[int, int, int]:
    c = head_dim // 2
    return c - 2 * (c // 3), c // 3, c // 3


def _inv_freq(pairs: int, theta: float) -> torch.Tensor:  # [pairs] float64
    return 1.0 / torch.pow(theta, torch.arange(0, 2 * pairs, 2, dtype=torch.float64) / (2 * pairs))


def _axis_angles(positions: int, pairs: int, theta: float) -> torch.Tensor:  # [positions, pairs] float64
    return torch.outer(torch.arange(positions, dtype=torch.float64), _inv_freq(pairs, theta))


class WanRope:
    """cos/sin tables for (frame, row, column) positions; one instance per model, tables per device."""

    def __init__(self, head_dim: int, max_positions: int = 1024, theta: float = 10000.0):
        self.pairs = rope_axis_pairs(head_dim)
        self.max_positions = max_positions
        self.theta = theta
        self._tables: dict[torch.device, tuple[torch.Tensor, ...]] = {}
        self._inv_t: dict[torch.device, torch.Tensor] = {}  # temporal inverse frequencies, float64

    def tables(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        """(cos_t, sin_t, cos_h, sin_h, cos_w, sin_w), each ``[max_positions, pairs_axis]`` float32."""
        device = torch.device(device)
        if device not in self._tables:
            out = []
            for p in self.pairs:
                a = _axis_angles(self.max_positions, p, self.theta)
                out += [a.cos().float().to(device), a.sin().float().to(device)]
            self._tables[device] = tuple(out)
        return self._tables[device]

    def spatial(self, h: int, w: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin of the (row, column) part for one frame: ``[h*w, pairs_h + pairs_w]``."""
        _, _, ch, sh, cw, sw = self.tables(device)
        ph, pw = self.pairs[1], self.pairs[2]
        cos = torch.cat([ch[:h, None, :].expand(h, w, ph), cw[None, :w, :].expand(h, w, pw)], -1)
        sin = torch.cat([sh[:h, None, :].expand(h, w, ph), sw[None, :w, :].expand(h, w, pw)], -1)
        return cos.reshape(h * w, ph + pw), sin.reshape(h * w, ph + pw)

    def for_frames(
        self, frame_pos: torch.Tensor, h: int, w: int
    ) -> tuple[torch.Tensor, torch.Tensor]:  # each [1, n*h*w, 1, head_dim/2]
        """cos, sin for the tokens of frames at temporal positions ``frame_pos`` (device long ``[n]``),
        in (frame, row, column) token order. Device-side gather, no host sync."""
        ct, st = self.tables(frame_pos.device)[:2]
        return self._with_spatial(ct.index_select(0, frame_pos), st.index_select(0, frame_pos), h, w)

    def for_positions(
        self, frame_pos: torch.Tensor, h: int, w: int
    ) -> tuple[torch.Tensor, torch.Tensor]:  # each [1, n*h*w, 1, head_dim/2]
        """``for_frames`` for any temporal positions ``frame_pos`` (device long ``[n]``, >= 0, not limited
        to the table): temporal angles computed on the device in float64, then cos/sin in float32."""
        device = frame_pos.device
        if device not in self._inv_t:
            self._inv_t[device] = _inv_freq(self.pairs[0], self.theta).to(device)
        angles = frame_pos.to(torch.float64)[:, None] * self._inv_t[device][None, :]  # [n, pairs_t]
        return self._with_spatial(angles.cos().float(), angles.sin().float(), h, w)

    def _with_spatial(self, cos_t: torch.Tensor, sin_t: torch.Tensor, h: int, w: int):
        """Temporal cos/sin per frame ``[n, pairs_t]`` + the (row, column) part -> ``[1, n*h*w, 1, hd/2]``."""
        cs, ss = self.spatial(h, w, cos_t.device)
        n, hw, pt = cos_t.shape[0], h * w, self.pairs[0]
        cos = torch.cat([cos_t[:, None, :].expand(n, hw, pt), cs[None].expand(n, hw, cs.shape[-1])], -1)
        sin = torch.cat([sin_t[:, None, :].expand(n, hw, pt), ss[None].expand(n, hw, ss.shape[-1])], -1)
        return cos.reshape(1, n * hw, 1, -1), sin.reshape(1, n * hw, 1, -1)

    def for_grid(self, f: int, h: int, w: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin for a full (f, h, w) token grid starting at frame 0: ``[1, f*h*w, 1, head_dim/2]``."""
        if max(f, h, w) > self.max_positions:
            raise ValueError(
                f"grid {(f, h, w)} exceeds the {self.max_positions}-position RoPE table of Wan; "
                "generate long videos chunk by chunk with a relative-RoPE KV cache"
            )
        return self.for_frames(torch.arange(f, device=device), h, w)


def apply_rope(
    x: torch.Tensor,  # [B, L, heads, head_dim]
    cos: torch.Tensor,  # [1 | B, L, 1, head_dim/2]
    sin: torch.Tensor,
) -> torch.Tensor:  # [B, L, heads, head_dim], dtype of x
    xf = x.float().unflatten(-1, (-1, 2))
    x0, x1 = xf[..., 0], xf[..., 1]
    out = torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1)
    return out.flatten(-2).to(x.dtype)
