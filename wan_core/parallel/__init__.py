"""Context parallelism for the Wan DiT over ``torch.distributed`` (Ulysses and ring attention)."""

from .group import ParallelContext, free_port, init_from_env, init_local, shutdown, single_process
from .ring import attention_with_lse, ring_attention
from .shard import FrameShard, check_frame_tokens
from .spawn import run_local
from .ulysses import check_heads, ulysses_attention

__all__ = [
    "ParallelContext",
    "free_port",
    "init_from_env",
    "init_local",
    "shutdown",
    "single_process",
    "attention_with_lse",
    "ring_attention",
    "FrameShard",
    "check_frame_tokens",
    "run_local",
    "check_heads",
    "ulysses_attention",
]
