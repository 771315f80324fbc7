"""Device timing without host syncs inside the timed region: CUDA events on a GPU, the host clock on CPU.

``EventTimer.mark()`` records a point on the device stream (or reads the clock on CPU, where every op
is synchronous); ``elapsed_ms(a, b)`` is only read after ``finish()`` synchronized once at the end.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


class EventTimer:
    def __init__(self, device: torch.device | str):
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self._finished = False

    def mark(self):
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            self._finished = False
            return ev
        return time.perf_counter()

    def finish(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)
        self._finished = True

    def elapsed_ms(self, start, end) -> float:
        if self.cuda:
            if not self._finished:
                raise RuntimeError(
                    "EventTimer.elapsed_ms read before finish(): call finish() once after the run"
                )
            return float(start.elapsed_time(end))
        return (end - start) * 1e3


def synchronize(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(
    fn: Callable[[], object], device: torch.device | str, warmup: int = 3, iters: int = 10
) -> float:
    """Median time of ``fn()`` over ``iters`` runs after ``warmup`` runs, each run timed on the device."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    timer = EventTimer(device)
    marks = []
    for _ in range(iters):
        a = timer.mark()
        fn()
        marks.append((a, timer.mark()))
    timer.finish()
    return statistics.median(timer.elapsed_ms(a, b) for a, b in marks)


def reset_peak_memory(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_bytes(device: torch.device | str) -> int | None:
    """``torch.cuda.max_memory_allocated`` since the last reset; None on CPU (not tracked)."""
    if torch.device(device).type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return None
