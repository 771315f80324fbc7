"""``LiveControl``: the steering mailbox of one live stream, shared by the steering side (HTTP
handlers, a stdin reader: any thread) and the loop (the thread that generates).

Every request is checked here, before it is queued: a bad one is a ``SteeringError`` with an HTTP
status and a message, and the stream goes on. A prompt request applies from the next chunk that has
not started (``applies_from_chunk``, exact: the loop takes the mailbox and claims its chunk under one
lock); a newer request replaces one that no chunk has taken yet.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["LiveControl", "LiveLimits", "PromptRequest", "SteeringError"]


@dataclass(frozen=True)
class LiveLimits:
    max_prompt_chars: int = 2000  # UMT5 reads at most 512 tokens; 2000 characters is well past that
    max_transition_chunks: int = 64


class SteeringError(ValueError):
    """A refused steering request: ``status`` is the HTTP status it maps to, ``code`` a stable word."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code = status, code


@dataclass(frozen=True)
class PromptRequest:
    text: str
    transition_chunks: int  # 0 or 1: the new prompt at once; N > 1: blended over N chunks
    applies_from_chunk: int


RUNNING, PAUSED, STOPPING, ENDED = "running", "paused", "stopping", "ended"


class LiveControl:
    """``switch_refusal``: None when the preset can switch prompts, else the reason it cannot (then
    prompt requests are refused with it; pause / resume / stop still work)."""

    def __init__(self, limits: LiveLimits = LiveLimits(), switch_refusal: str | None = None):
        self.limits, self.switch_refusal = limits, switch_refusal
        self._cond = threading.Condition()
        self._state = RUNNING
        self._next_chunk = 0  # the first chunk that has not started
        self._pending: PromptRequest | None = None
        self.chunks_shown = 0

    # -- steering side ------------------------------------------------------------------------------
    def set_prompt(self, text, transition_chunks=0) -> PromptRequest:
        lim = self.limits
        if not isinstance(text, str):
            raise SteeringError(400, "prompt.type", f"prompt must be a string, got {type(text).__name__}")
        if len(text) > lim.max_prompt_chars:
            raise SteeringError(
                413, "prompt.too_long", f"prompt has {len(text)} characters; at most {lim.max_prompt_chars}"
            )
        text = text.strip()
        if not text or "\x00" in text:
            raise SteeringError(400, "prompt.empty", "prompt must be non-empty text (no NUL characters)")
        if isinstance(transition_chunks, bool) or not isinstance(transition_chunks, int):
            raise SteeringError(400, "transition.type", "transition_chunks must be an integer")
        if not 0 <= transition_chunks <= lim.max_transition_chunks:
            raise SteeringError(
                400,
                "transition.range",
                f"transition_chunks must be 0 .. {lim.max_transition_chunks}, got {transition_chunks}",
            )
        if self.switch_refusal is not None:
            raise SteeringError(409, "prompt.unsupported", self.switch_refusal)
        with self._cond:
            self._check_open()
            self._pending = PromptRequest(text, transition_chunks, self._next_chunk)
            self._cond.notify_all()
            return self._pending

    def pause(self) -> dict:
        return self._set_state(PAUSED, from_states=(RUNNING, PAUSED))

    def resume(self) -> dict:
        return self._set_state(RUNNING, from_states=(RUNNING, PAUSED))

    def stop(self) -> dict:
        return self._set_state(STOPPING, from_states=(RUNNING, PAUSED, STOPPING))

    def status(self) -> dict:
        with self._cond:
            return {"state": self._state, "next_chunk": self._next_chunk, "chunks_shown": self.chunks_shown}

    def _set_state(self, state: str, from_states: tuple) -> dict:
        with self._cond:
            self._check_open()
            if self._state not in from_states:
                raise SteeringError(409, "state", f"the stream is {self._state}")
            self._state = state
            self._cond.notify_all()
        return self.status()

    def _check_open(self) -> None:
        if self._state == ENDED:
            raise SteeringError(409, "ended", "the live stream has ended")
        if self._state == STOPPING:
            raise SteeringError(409, "stopping", "the live stream is stopping")

    # -- loop side ----------------------------------------------------------------------------------
    @property
    def stop_requested(self) -> bool:
        return self._state in (STOPPING, ENDED)

    @property
    def state(self) -> str:
        return self._state

    def begin_chunk(self) -> tuple[int, PromptRequest | None]:
        """Claim the next chunk and take the prompt request it applies (if any)."""
        with self._cond:
            i, request = self._next_chunk, self._pending
            self._pending = None
            self._next_chunk = i + 1
            return i, request

    def chunk_shown(self) -> None:
        with self._cond:
            self.chunks_shown += 1

    def wait_while_paused(self, poll: Callable[[], None] | None = None, interval_s: float = 0.1) -> None:
        """Return once the stream runs (or stops); ``poll`` is called every ``interval_s`` meanwhile
        (it raises to abort, e.g. ComfyUI's interrupt)."""
        while True:
            with self._cond:
                if self._state != PAUSED:
                    return
                self._cond.wait(interval_s)
            if poll is not None:
                poll()
            time.sleep(0)

    def end(self) -> None:
        with self._cond:
            self._state = ENDED
            self._pending = None
            self._cond.notify_all()
