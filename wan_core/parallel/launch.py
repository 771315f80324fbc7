"""Command-line glue: ``torchrun --nproc_per_node=N -m wan_core generate ... --context-parallel ring``.

Every rank runs the same command (same seed, same prompt, same chunk loop); the DiT is wrapped so each
rank works on 1/N of the tokens, and only rank 0 decodes and writes the video::

    parser_group.add_argument(...)  ->  add_context_parallel_argument(g)
    cp = init_context_parallel(args.context_parallel)            # joins the torchrun group (or not)
    device = cp.device if cp.distributed else device             # cuda:LOCAL_RANK under torchrun
    pipe = build_pipeline(..., dit_wrapper=cp_wrapper(args.context_parallel, cp),
                          decoder=args.decoder if cp.is_main else "none")
    ... write frames only if cp.is_main ...; shutdown() at the end
"""

from __future__ import annotations

import os

from .context_parallel import MODES, wrap_for_context_parallel
from .group import ParallelContext, init_from_env

__all__ = ["CHOICES", "add_context_parallel_argument", "init_context_parallel", "cp_wrapper"]

CHOICES = ("none", *MODES)


def add_context_parallel_argument(parser) -> None:
    """``--context-parallel none|ulysses|ring`` on an ``argparse`` (sub)parser."""
    parser.add_argument(
        "--context-parallel",
        choices=CHOICES,
        default="none",
        help="split the DiT's tokens over the processes started by torchrun --nproc_per_node=N: "
        "ulysses (all-to-all over heads; heads divisible by N) or ring (K/V passed around)",
    )


def init_context_parallel(mode: str | None, backend: str | None = None) -> ParallelContext:
    """Join the ``torchrun`` group when ``WORLD_SIZE`` > 1 (NCCL + ``cuda:LOCAL_RANK`` when CUDA is
    available, else gloo on CPU); a single-process context otherwise."""
    mode = mode or "none"
    if mode not in CHOICES:
        raise ValueError(f"--context-parallel must be one of {CHOICES}, got {mode!r}")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and mode == "none":
        raise ValueError(
            f"{world} processes were started (torchrun), but --context-parallel is none: every process "
            "would render the whole video; pass --context-parallel ulysses or ring, or start 1 process"
        )
    return init_from_env(backend=backend)


def cp_wrapper(mode: str | None, ctx: ParallelContext):
    """``model -> model`` wrapping a loaded DiT (or A14B pair) for ``ctx`` (identity on one process)."""

    def wrap(model):
        return wrap_for_context_parallel(model, mode, ctx)

    return wrap
