"""The process group that context parallelism runs on: ``torch.distributed`` only, no own transport.

``ParallelContext`` names this process's place in the group (rank, world size, device). It comes from

- ``init_from_env()`` under ``torchrun`` (reads ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` /
  ``MASTER_ADDR`` / ``MASTER_PORT``; NCCL when CUDA is available, else gloo), or
- ``init_local(rank, world_size, port)`` in processes spawned by ``torch.multiprocessing`` (the worker
  pool, the tests), rendezvous over TCP on 127.0.0.1, or
- ``single_process()`` when there is nothing to distribute (world size 1: every wrapper is a no-op).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = [
    "ParallelContext",
    "init_from_env",
    "init_local",
    "single_process",
    "free_port",
    "default_backend",
    "shutdown",
]


@dataclass(frozen=True)
class ParallelContext:
    """This process's place in a context-parallel group (``group=None``: the default group)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    group: dist.ProcessGroup | None = None

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and talks to the user."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def global_rank(self, group_rank: int) -> int:
        """Global rank of ``group_rank`` in this context's group (for point-to-point ops)."""
        if self.group is None:
            return group_rank
        return dist.get_global_rank(self.group, group_rank)


def single_process(device: str | torch.device = "cpu") -> ParallelContext:
    return ParallelContext(device=torch.device(device))


def default_backend(device: str | torch.device | None = None) -> str:
    """``nccl`` for CUDA devices (or when CUDA is available and no device is given), else ``gloo``."""
    if device is None:
        return "nccl" if torch.cuda.is_available() else "gloo"
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (for a local rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _device_for(local_rank: int, backend: str, device: str | torch.device | None) -> torch.device:
    if device is not None:
        dev = torch.device(device)
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cuda", local_rank) if backend == "nccl" else torch.device("cpu")
    if dev.type == "cuda":
        if not torch.cuda.is_available() or dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"rank with local rank {local_rank} wants {dev}, but this machine has "
                f"{torch.cuda.device_count()} CUDA device(s): start at most that many processes per node "
                "(torchrun --nproc_per_node) or run on CPU with the gloo backend"
            )
        torch.cuda.set_device(dev)
    return dev


def _init(rank, world_size, local_rank, backend, device, init_method) -> ParallelContext:
    backend = backend or default_backend(device)
    dev = _device_for(local_rank, backend, device)
    if backend == "nccl" and dev.type != "cuda":
        raise ValueError(f"the nccl backend needs CUDA devices, got {dev}; use backend='gloo' on CPU")
    if not dist.is_initialized():
        kw = {"device_id": dev} if backend == "nccl" else {}
        dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world_size, **kw)
    elif dist.get_world_size() != world_size or dist.get_rank() != rank:
        raise RuntimeError(
            f"torch.distributed is already initialized as rank {dist.get_rank()} of "
            f"{dist.get_world_size()}, not rank {rank} of {world_size}"
        )
    return ParallelContext(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def init_from_env(backend: str | None = None, device: str | torch.device | None = None) -> ParallelContext:
    """Join the group ``torchrun`` set up (``env://``); a single process when ``WORLD_SIZE`` is unset/1.

    Device: ``cuda:LOCAL_RANK`` with NCCL when CUDA is available, else CPU with gloo.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        return single_process(device)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    return _init(rank, world_size, local_rank, backend, device, "env://")


def _loopback_interface() -> str | None:
    try:
        names = {name for _, name in socket.if_nameindex()}
    except (OSError, AttributeError):
        return None
    return next((n for n in ("lo", "lo0") if n in names), None)


def init_local(
    rank: int,
    world_size: int,
    port: int,
    backend: str | None = None,
    device: str | torch.device | None = None,
) -> ParallelContext:
    """Join a group of ``world_size`` processes on this machine (rendezvous on 127.0.0.1:``port``).

    With gloo, traffic stays on the loopback interface (``GLOO_SOCKET_IFNAME``, unless already set)."""
    if (backend or default_backend(device)) == "gloo" and "GLOO_SOCKET_IFNAME" not in os.environ:
        lo = _loopback_interface()
        if lo is not None:
            os.environ["GLOO_SOCKET_IFNAME"] = lo
    return _init(rank, world_size, rank, backend, device, f"tcp://127.0.0.1:{port}")


def shutdown() -> None:
    """Leave the default process group (safe to call when none is initialized).

    Waits for every rank first: a rank that tears its gloo/NCCL group down while a peer still has
    traffic in flight (rank 0 still writing the video, say) can abort the peer.
    """
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
