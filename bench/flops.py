"""FLOP and byte model of the Wan DiT in autoregressive (chunk-by-chunk) use.

Counting rules (the usual MFU convention, elementwise work not counted):
- a linear layer on ``n`` tokens costs ``2 * n * in * out`` FLOPs;
- attention of ``q_len`` queries against ``kv_len`` keys costs ``4 * q_len * kv_len * dim`` FLOPs
  (``Q @ K^T`` and ``P @ V``, each ``2 * q_len * kv_len * head_dim`` per head, ``heads * head_dim = dim``);
- per block: self-attention q, k, v, o (4 linears dim->dim), the attention over the cache window,
  cross-attention q and o (2 linears) + attention against ``text_len`` (512) text tokens, the FFN
  (dim->ffn->dim). The cross-attention k/v of the text are computed once per prompt when cached
  (``cross_kv_cached=True``), else on every pass (``2 * 2 * text_len * dim^2`` per block);
- patch embedding (a Conv3d with stride = kernel, i.e. a linear on patches), time embedding per
  latent frame and the head are included; they are < 0.1 % of the total.

Bytes are the fewest bytes a pass must move through device memory ("fused minimum"): every weight
read once, the K/V window read once, the chunk's new K/V written once, and the input and output of
every matrix product and attention call read/written once, plus three residual updates. Eager code
moves several times more (unfused norms, modulation, RoPE in fp32), but at these sizes the pass is
compute-bound by a wide margin (see ``arithmetic_intensity``), which is why the floor is a FLOP floor.
"""

from __future__ import annotations

from dataclasses import dataclass, field

BYTES_BF16 = 2
FREQ_DIM = 256


@dataclass(frozen=True)
class DiTShape:
    """The parts of a Wan DiT config that set its cost."""

    dim: int
    ffn_dim: int
    num_heads: int
    num_layers: int
    in_dim: int = 16
    out_dim: int = 16
    patch_size: tuple[int, int, int] = (1, 2, 2)
    text_len: int = 512
    vae_stride: tuple[int, int, int] = (4, 8, 8)

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    def tokens_per_frame(self, height: int, width: int) -> int:
        """Tokens of one latent frame for a video of ``height x width`` pixels."""
        sh = self.vae_stride[1] * self.patch_size[1]
        sw = self.vae_stride[2] * self.patch_size[2]
        if height % sh or width % sw:
            raise ValueError(
                f"height x width = {height}x{width} must be multiples of {sh}x{sw} "
                f"(VAE stride x patch size) for this model; pick e.g. {height - height % sh}x{width - width % sw}"
            )
        return (height // sh) * (width // sw)

    def params(self) -> int:
        """Parameter count of a text-to-video Wan DiT of this shape (checked against FACTS.md)."""
        d, f = self.dim, self.ffn_dim
        patch = self.in_dim * self.patch_size[0] * self.patch_size[1] * self.patch_size[2]
        block = (
            4 * (d * d + d)  # self q k v o
            + 2 * d  # norm_q, norm_k
            + 4 * (d * d + d)  # cross q k v o
            + 2 * d  # cross norm_q, norm_k
            + 2 * d  # norm3 (affine)
            + (d * f + f)
            + (f * d + d)  # ffn
            + 6 * d  # modulation
        )
        out = self.out_dim * self.patch_size[0] * self.patch_size[1] * self.patch_size[2]
        top = (
            (patch * d + d)  # patch embedding
            + (4096 * d + d)
            + (d * d + d)  # text embedding
            + (FREQ_DIM * d + d)
            + (d * d + d)  # time embedding
            + (d * 6 * d + 6 * d)  # time projection
            + (d * out + out)
            + 2 * d  # head + head modulation
        )
        return self.num_layers * block + top


# Shapes from the official configs (FACTS.md section 1a).
SHAPES: dict[str, DiTShape] = {
    "1.3b": DiTShape(dim=1536, ffn_dim=8960, num_heads=12, num_layers=30),
    "14b": DiTShape(dim=5120, ffn_dim=13824, num_heads=40, num_layers=40),
    "ti2v-5b": DiTShape(
        dim=3072, ffn_dim=14336, num_heads=24, num_layers=30, in_dim=48, out_dim=48, vae_stride=(4, 16, 16)
    ),
}


def shape_of(cfg) -> DiTShape:
    """``DiTShape`` from any config object with the Wan field names (e.g. ``WanDiTConfig``)."""
    get = lambda name, default: getattr(cfg, name, default)  # noqa: E731
    return DiTShape(
        dim=cfg.dim,
        ffn_dim=cfg.ffn_dim,
        num_heads=cfg.num_heads,
        num_layers=cfg.num_layers,
        in_dim=get("in_dim", 16),
        out_dim=get("out_dim", 16),
        patch_size=tuple(get("patch", get("patch_size", (1, 2, 2)))),
        text_len=get("text_len", 512),
        vae_stride=tuple(get("vae_stride", (4, 16, 16) if cfg.out_dim == 48 else (4, 8, 8))),
    )


@dataclass(frozen=True)
class PassCost:
    """FLOPs and bytes of one DiT forward pass over one chunk."""

    linear_flops: float  # every matrix product except attention (incl. patch embed and head)
    self_attn_flops: float
    cross_attn_flops: float
    bytes: float  # fused minimum (see module docstring)

    @property
    def attn_flops(self) -> float:
        return self.self_attn_flops + self.cross_attn_flops

    @property
    def flops(self) -> float:
        return self.linear_flops + self.attn_flops

    @property
    def arithmetic_intensity(self) -> float:
        return self.flops / self.bytes

    def __add__(self, other: PassCost) -> PassCost:
        return PassCost(
            self.linear_flops + other.linear_flops,
            self.self_attn_flops + other.self_attn_flops,
            self.cross_attn_flops + other.cross_attn_flops,
            self.bytes + other.bytes,
        )

    def scaled(self, k: float) -> PassCost:
        return PassCost(
            self.linear_flops * k, self.self_attn_flops * k, self.cross_attn_flops * k, self.bytes * k
        )


ZERO = PassCost(0.0, 0.0, 0.0, 0.0)


def pass_cost(
    shape: DiTShape,
    q_tokens: int,
    kv_tokens: int,
    q_frames: int,
    cross_kv_cached: bool = True,
    bytes_per_el: int = BYTES_BF16,
) -> PassCost:
    """One forward pass: ``q_tokens`` new tokens (``q_frames`` latent frames) attending to ``kv_tokens``
    keys (the cached window plus the chunk itself)."""
    d, f, L, K, T = shape.dim, shape.ffn_dim, q_tokens, kv_tokens, shape.text_len
    patch = shape.patch_size[0] * shape.patch_size[1] * shape.patch_size[2]
    per_block_linear = 2 * L * d * d * 4 + 2 * L * d * d * 2 + 2 * L * d * f * 2
    if not cross_kv_cached:
        per_block_linear += 2 * T * d * d * 2
    per_block_self = 4 * L * K * d
    per_block_cross = 4 * L * T * d
    time_embed = 2 * q_frames * (FREQ_DIM * d + d * d + d * 6 * d)
    top_linear = 2 * L * shape.in_dim * patch * d + 2 * L * d * shape.out_dim * patch + time_embed

    b = bytes_per_el
    # self q k v o + cross q o (+ cross k v when the text K/V are not cached) + ffn
    w_block = (6 * d * d + 2 * d * f) if cross_kv_cached else (8 * d * d + 2 * d * f)
    bytes_block = b * (
        w_block  # weights
        + 2 * K * d  # read K/V window (includes the chunk's own keys)
        + 2 * L * d  # write the chunk's K/V
        + 2 * T * d  # read the cached text K/V
        + L * d
        + 3 * L * d  # fused qkv: read x, write q k v
        + 2 * L * d  # self attention: read q, write out (k/v counted above)
        + 2 * L * d  # o projection
        + 2 * L * d
        + 2 * L * d
        + 2 * L * d  # cross q, cross attention, cross o
        + (L * d + L * f)
        + (L * f + L * d)  # ffn
        + 3 * 2 * L * d  # three residual updates (read x, write x)
    )
    bytes_top = b * (L * shape.in_dim * patch + L * d + L * shape.out_dim * patch)
    n = shape.num_layers
    return PassCost(
        linear_flops=float(n * per_block_linear + top_linear),
        self_attn_flops=float(n * per_block_self),
        cross_attn_flops=float(n * per_block_cross),
        bytes=float(n * bytes_block + bytes_top),
    )


@dataclass(frozen=True)
class RolloutSpec:
    """An AR rollout: ``num_chunks`` chunks of ``frames_per_chunk`` latent frames, each denoised in
    ``denoise_steps`` passes, plus one clean-context pass (t = 0) that rewrites the chunk's K/V."""

    height: int = 480
    width: int = 832
    num_chunks: int = 7
    frames_per_chunk: int = 3
    denoise_steps: int = 4
    context_pass: bool = True
    context_pass_last_chunk: bool = True  # the official Self-Forcing loop runs it after every chunk
    window_frames: int | None = None  # None: full (growing) cache; else attend to at most this many frames
    sink_frames: int = 0
    cross_kv_cached: bool = True

    @property
    def latent_frames(self) -> int:
        return self.num_chunks * self.frames_per_chunk

    @property
    def video_frames(self) -> int:
        """Pixel frames out of the VAE: the first latent frame gives 1, every next one 4."""
        return 1 + 4 * (self.latent_frames - 1)

    def chunk_video_frames(self, chunk: int) -> int:
        return self.frames_per_chunk * 4 - (3 if chunk == 0 else 0)

    def attended_frames(self, chunk: int) -> int:
        """Latent frames a pass of chunk ``chunk`` attends to (its own included)."""
        seen = (chunk + 1) * self.frames_per_chunk
        if self.window_frames is None:
            return seen
        return min(seen, self.window_frames + self.sink_frames)

    def passes(self, chunk: int) -> int:
        last = chunk == self.num_chunks - 1
        ctx = self.context_pass and (self.context_pass_last_chunk or not last)
        return self.denoise_steps + int(ctx)


@dataclass(frozen=True)
class RolloutCost:
    per_chunk: list[PassCost] = field(default_factory=list)  # all passes of each chunk
    per_pass: list[PassCost] = field(default_factory=list)  # one pass of each chunk

    @property
    def total(self) -> PassCost:
        out = ZERO
        for c in self.per_chunk:
            out = out + c
        return out


def rollout_cost(shape: DiTShape, spec: RolloutSpec) -> RolloutCost:
    fpt = shape.tokens_per_frame(spec.height, spec.width)
    q = spec.frames_per_chunk * fpt
    per_pass, per_chunk = [], []
    for i in range(spec.num_chunks):
        one = pass_cost(shape, q, spec.attended_frames(i) * fpt, spec.frames_per_chunk, spec.cross_kv_cached)
        per_pass.append(one)
        per_chunk.append(one.scaled(spec.passes(i)))
    return RolloutCost(per_chunk=per_chunk, per_pass=per_pass)


@dataclass(frozen=True)
class Rates:
    """Measured (or assumed) ceilings of a device."""

    matmul_flops: float  # FLOP/s of a large bf16 GEMM
    attn_flops: float | None = None  # FLOP/s of the best attention kernel at the benchmark's shape
    bandwidth: float | None = None  # bytes/s of a large device-to-device copy


def floor_seconds(cost: PassCost, rates: Rates) -> dict[str, float]:
    """Lower bounds on the time of ``cost``: all FLOPs at the matmul rate, linears at the matmul rate +
    attention at the attention rate, and the bytes at the copy bandwidth."""
    out = {"flops_at_matmul_s": cost.flops / rates.matmul_flops}
    attn_rate = rates.attn_flops or rates.matmul_flops
    out["linear_at_matmul_attn_at_attn_s"] = (
        cost.linear_flops / rates.matmul_flops + cost.attn_flops / attn_rate
    )
    if rates.bandwidth:
        out["bytes_at_bandwidth_s"] = cost.bytes / rates.bandwidth
    return out


def mfu(flops: float, seconds: float, peak_flops: float) -> float:
    """Model FLOPs utilisation: achieved FLOP/s over the measured bf16 matmul rate."""
    if seconds <= 0 or peak_flops <= 0:
        raise ValueError(f"mfu needs positive time and peak rate, got seconds={seconds}, peak={peak_flops}")
    return flops / seconds / peak_flops
