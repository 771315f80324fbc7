"""Stopping a video on a signal without losing what it made.

Inside ``stop_on_signals()`` the first SIGINT (Ctrl-C), SIGTERM or SIGHUP does not raise: it sets
``StopRequest.requested`` and prints one line; the generation loop checks it after each chunk, stops,
and the video is closed normally, so the frames written so far become a complete, playable file at the
destination. A second signal raises ``Aborted`` (a ``KeyboardInterrupt``) at once: the writers abort,
no new file appears and an older file at the destination stays as it was. A third one exits the
process immediately (``os._exit``); its partial file is removed by the next run (``atomic_file``).

Command-line exit codes (``python -m wan_core generate``):

- 0: the whole video was written;
- 2: a clear error (bad input, missing or broken file, device, out of memory); no new file;
- 3: aborted (a second signal, or a signal before the first frame was written); no new file, an
  older file at ``--out`` is untouched;
- 130: stopped by a signal after some frames: they are a complete, playable file at ``--out``.

Signal handlers can only be installed from the main thread; elsewhere (and when ``enabled`` is
False, e.g. under torchrun, where every rank must stop at the same chunk) the context changes
nothing and a Ctrl-C is a plain ``KeyboardInterrupt``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = [
    "Aborted",
    "StopRequest",
    "stop_on_signals",
    "interrupted_message",
    "report_stop",
    "EXIT_ABORTED",
    "EXIT_INTERRUPTED_KEPT",
]

EXIT_ABORTED = 3
EXIT_INTERRUPTED_KEPT = 130
STOP_SIGNALS = tuple(
    s for s in (getattr(signal, n, None) for n in ("SIGINT", "SIGTERM", "SIGHUP")) if s is not None
)


class Aborted(KeyboardInterrupt):
    """A second stop signal: stop now and keep no new file."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass
class StopRequest:
    """Set by the first stop signal inside ``stop_on_signals``."""

    signum: int | None = None
    count: int = 0

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""


def _say(line: str) -> None:
    # os.write, not print: the handler may run while the main thread is inside a print (a reentrant
    # write on the same buffered stream raises RuntimeError)
    with contextlib.suppress(OSError):
        os.write(2, (line + "\n").encode())


@contextlib.contextmanager
def stop_on_signals(enabled: bool = True, what: str = "the video") -> Iterator[StopRequest]:
    """Within the block: first stop signal -> ``StopRequest.requested`` (+ one line on stderr), second
    -> ``Aborted`` raised, third -> immediate exit (``EXIT_ABORTED``). Handlers restored at the end."""
    stop = StopRequest()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame):
        stop.count += 1
        if stop.count == 1:
            stop.signum = signum
            again = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
            _say(
                f"{signal.Signals(signum).name}: stopping after the current chunk and keeping the frames "
                f"written so far in {what} ({again} again aborts without a file)"
            )
            return
        if stop.count == 2:
            raise Aborted(signum)
        _say(f"{signal.Signals(signum).name} again: exiting now")
        os._exit(EXIT_ABORTED)

    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def interrupted_message(exc: BaseException, out: str | os.PathLike | None = None) -> str:
    """One line for a ``KeyboardInterrupt`` / ``Aborted`` that ended a run without a new file."""
    name = signal.Signals(exc.signum).name if isinstance(exc, Aborted) else "SIGINT"
    kept = f"; {out} is as it was" if out is not None and os.path.exists(out) else ""
    return f"interrupted ({name}): aborted, no video written{kept}"


def report_stop(stop: StopRequest, frames: int, path, committed: bool, say=print) -> int:
    """After a loop that ``stop`` ended early: one line saying what was kept; the exit code. (A closed
    terminal after SIGHUP cannot take the line: the exit code still says it.)"""
    if committed:
        line, rc = (
            f"stopped by {stop.name}: kept {frames} frames in {path} (a complete video)",
            EXIT_INTERRUPTED_KEPT,
        )
    else:
        line, rc = (
            f"stopped by {stop.name} before the first frame was written: no video written",
            EXIT_ABORTED,
        )
    with contextlib.suppress(OSError):
        say(line, flush=True)
    return rc
