"""``LiveLoop``: an endless rollout steered through a ``LiveControl``, chunk after chunk until a stop,
an interrupt or the optional maximum.

    pipe.start_video(context, height=h, width=w, seed=s)          # no length: an endless video
    result = LiveLoop(pipe, control, encode, on_chunk=show).run(context)

Per chunk ``i``: take the mailbox (a new prompt: encoded by ``encode(text) -> [1, L, 4096]``), wait
while paused, set the chunk's prompt through ``pipe.switch_prompt`` (the scheme's switch method, e.g.
LongLive's KV re-cache), generate, hand the chunk to ``on_chunk`` (which shows it), finalize. A stop
during a chunk abandons that chunk at its next denoising step, so the chunks handed to ``on_chunk``
are exactly the ones the stream showed. A transition over N chunks sets chunk ``i + k`` (k = 0 ..
N - 1) to ``blend(old, new, (k + 1) / N)`` (``blend.py``); a new prompt during a transition starts
from the blend in effect.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from wan_core.rollout.runner import RolloutInterrupted

from .blend import blend_embeddings
from .control import LiveControl

__all__ = ["LiveLoop", "LiveResult", "AppliedPrompt"]

log = logging.getLogger("wan_core.live")


@dataclass(frozen=True)
class AppliedPrompt:
    chunk: int
    text: str
    weight: float  # 1.0 = the prompt itself; below 1 = a step of a transition towards it


@dataclass
class LiveResult:
    chunks: int = 0  # chunks shown (handed to on_chunk)
    ended_by: str = ""  # "stop" | "max_chunks"
    applied: list[AppliedPrompt] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # prompts that could not be encoded (stream went on)


@dataclass
class _Transition:
    start: int
    old: torch.Tensor  # [1, L, 4096]
    new: torch.Tensor
    chunks: int
    text: str

    def weight(self, i: int) -> float:
        return min(1.0, (i - self.start + 1) / self.chunks)


class LiveLoop:
    """``encode(text) -> [1, L, 4096]``; ``on_chunk(result)`` shows a chunk (a ``ChunkResult``);
    ``on_prompt(applied)`` / ``on_error(message)`` report; ``poll()`` is called between chunks and
    while paused (raise to abort: e.g. ComfyUI's interrupt); ``max_chunks``: None = until stopped."""

    def __init__(
        self,
        pipe,
        control: LiveControl,
        encode: Callable[[str], torch.Tensor],
        *,
        on_chunk: Callable,
        interpolation: str = "linear",
        max_chunks: int | None = None,
        on_prompt: Callable[[AppliedPrompt], None] | None = None,
        on_error: Callable[[str], None] | None = None,
        poll: Callable[[], None] | None = None,
    ):
        if max_chunks is not None and max_chunks < 1:
            raise ValueError(f"max_chunks must be at least 1 (or None: until stopped), got {max_chunks}")
        blend_embeddings(torch.zeros(1, 1, 1), torch.zeros(1, 1, 1), 0.5, interpolation)  # checks the name
        self.pipe, self.control, self.encode = pipe, control, encode
        self.on_chunk, self.on_prompt, self.on_error, self.poll = on_chunk, on_prompt, on_error, poll
        self.interpolation, self.max_chunks = interpolation, max_chunks

    def run(self, context: torch.Tensor) -> LiveResult:
        """``context``: the prompt the video was started with, ``[1, L, 4096]``."""
        pipe, control = self.pipe, self.control
        result = LiveResult()
        current, transition = context, None
        outer_interrupt = pipe.interrupt
        pipe.interrupt = lambda: control.stop_requested or (outer_interrupt is not None and outer_interrupt())
        try:
            while True:
                self._poll()
                control.wait_while_paused(self._poll)
                if control.stop_requested:
                    result.ended_by = "stop"
                    break
                if self.max_chunks is not None and result.chunks >= self.max_chunks:
                    result.ended_by = "max_chunks"
                    break
                i, request = control.begin_chunk()
                if request is not None:
                    transition = self._start_transition(i, request, current, result) or transition
                if transition is not None:
                    current = self._switch(i, transition, result)
                    if transition.weight(i) >= 1.0:
                        transition = None
                try:
                    chunk = pipe.generate(i)
                except RolloutInterrupted:
                    if control.stop_requested:  # a stop during the chunk: it is dropped, never shown
                        result.ended_by = "stop"
                        break
                    raise
                self.on_chunk(chunk)
                control.chunk_shown()
                result.chunks += 1
                del chunk
                pipe.finalize(i)
        finally:
            pipe.interrupt = outer_interrupt
            control.end()
        return result

    def _poll(self) -> None:
        if self.poll is not None:
            self.poll()

    def _start_transition(self, i, request, current, result) -> _Transition | None:
        try:
            new = self.encode(request.text)  # [1, L, 4096]
        except Exception as e:  # a prompt that cannot be encoded is reported; the stream goes on
            message = f"prompt {request.text[:80]!r} not applied: {type(e).__name__}: {e}"
            log.warning("%s", message)
            result.errors.append(message)
            if self.on_error is not None:
                self.on_error(message)
            return None
        return _Transition(i, current, new, max(1, request.transition_chunks), request.text)

    def _switch(self, i: int, transition: _Transition, result: LiveResult) -> torch.Tensor:
        w = transition.weight(i)
        ctx = (
            transition.new
            if w >= 1.0
            else blend_embeddings(transition.old, transition.new, w, self.interpolation)
        )
        self.pipe.switch_prompt(ctx, i)
        applied = AppliedPrompt(i, transition.text, w)
        result.applied.append(applied)
        if self.on_prompt is not None:
            self.on_prompt(applied)
        return ctx
