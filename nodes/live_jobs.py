"""The running live streams of this ComfyUI process and who may steer them.

A live job is registered when the Live Sampler starts and unregistered when it ends; the ids of the
last ended jobs are remembered (bounded) so a late request gets "has ended", not "unknown". A request
is accepted only with the job's token (made here, sent only to the websocket of the client that queued
the job). A ``client_id`` is no credential: ComfyUI's ``GET /queue`` and ``/history`` show every
running prompt's ``client_id``, and any websocket may connect with ``?clientId=<any>``. No ComfyUI imports.
"""

from __future__ import annotations

import hmac
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass

from wan_core.live import LiveControl, SteeringError

__all__ = ["LiveJob", "LiveJobs", "JOBS"]

MAX_ID_CHARS = 128


@dataclass(frozen=True, eq=False)
class LiveJob:
    prompt_id: str
    client_id: str  # the websocket the job's events (its token among them) go to; not a credential
    token: str
    node_id: str | None
    control: LiveControl


class LiveJobs:
    def __init__(self, remember_ended: int = 64):
        self._lock = threading.Lock()
        self._running: dict[str, LiveJob] = {}
        self._ended: OrderedDict[str, None] = OrderedDict()
        self._remember_ended = remember_ended

    def start(
        self, prompt_id: str, client_id: str, node_id: str | None, control: LiveControl
    ) -> LiveJob:
        if not isinstance(client_id, str) or not client_id:
            raise ValueError("a live job needs the client_id of the client that queued it (its events go there only)")
        job = LiveJob(str(prompt_id), client_id, secrets.token_urlsafe(24), node_id, control)
        with self._lock:
            self._running[job.prompt_id] = job
            self._ended.pop(job.prompt_id, None)
        return job

    def end(self, job: LiveJob) -> None:
        job.control.end()
        with self._lock:
            if self._running.get(job.prompt_id) is job:
                del self._running[job.prompt_id]
            self._ended[job.prompt_id] = None
            while len(self._ended) > self._remember_ended:
                self._ended.popitem(last=False)

    def running(self) -> list[LiveJob]:
        with self._lock:
            return list(self._running.values())

    def authorize(self, prompt_id, token=None) -> LiveJob:
        """The running job ``prompt_id`` if ``token`` is its token, else a ``SteeringError``
        (400 malformed, 404 unknown, 409 ended, 403 no token / a wrong one)."""
        for name, value in (("prompt_id", prompt_id), ("token", token)):
            if value is not None and (not isinstance(value, str) or len(value) > MAX_ID_CHARS):
                raise SteeringError(
                    400, f"{name}.invalid", f"{name} must be a string of at most {MAX_ID_CHARS} characters"
                )
        with self._lock:
            job = self._running.get(prompt_id)
            ended = prompt_id in self._ended
        if job is None:
            if ended:
                raise SteeringError(409, "ended", f"the live stream {prompt_id} has ended")
            raise SteeringError(404, "unknown", f"no live stream with prompt id {prompt_id} is running")
        # bytes: compare_digest refuses non-ASCII str; surrogatepass: header text aiohttp decoded with
        # surrogateescape still encodes
        if token is not None and hmac.compare_digest(
            token.encode("utf-8", "surrogatepass"), job.token.encode("ascii")
        ):
            return job
        raise SteeringError(
            403,
            "forbidden",
            "only the client that queued this live stream may steer it: send the token of its "
            "wanstream.live.start event (header X-WanStream-Token)",
        )

JOBS = LiveJobs()
