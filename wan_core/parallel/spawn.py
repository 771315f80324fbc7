"""Run a function on N local processes joined in a ``torch.distributed`` group (one machine).

``run_local(fn, world_size, *args)`` starts ``world_size`` processes with ``torch.multiprocessing``
(spawn), each calls ``init_local`` (rendezvous on a free 127.0.0.1 port; NCCL on GPUs, gloo on CPU)
and then ``fn(ctx, *args)``; an exception in any process is re-raised here with its traceback.
``fn`` must be importable by name (a module-level function).
"""

from __future__ import annotations

import torch.multiprocessing as mp

from .group import free_port, init_local, shutdown

__all__ = ["run_local"]


def _entry(rank, world_size, port, backend, device, fn, args):
    ctx = init_local(rank, world_size, port, backend=backend, device=device)
    try:
        fn(ctx, *args)
    finally:
        shutdown()


def run_local(fn, world_size: int, *args, backend: str | None = None, device=None) -> None:
    """``fn(ctx, *args)`` on ``world_size`` local ranks; blocks until all return."""
    port = free_port()
    mp.spawn(_entry, args=(world_size, port, backend, device, fn, args), nprocs=world_size, join=True)
