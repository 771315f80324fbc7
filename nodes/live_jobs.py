"""The running live streams of this ComfyUI process and who may steer them.

A live job is registered when the Live Sampler starts and unregistered when it ends; the ids of the
last ended jobs are remembered (bounded) so a late request gets "has ended", not "unknown". A request
is accepted from the client that queued the job (its ``client_id``, which ComfyUI gives the running
prompt) or with the job's token (made here, sent only to that client's websocket). No ComfyUI imports.
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
    client_id: str | None
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
        self, prompt_id: str, client_id: str | None, node_id: str | None, control: LiveControl
    ) -> LiveJob:
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

    def authorize(self, prompt_id, client_id=None, token=None) -> LiveJob:
        """The running job ``prompt_id`` if this caller may steer it, else a ``SteeringError``
        (404 unknown, 409 ended, 403 another client / wrong token)."""
        for name, value in (("prompt_id", prompt_id), ("client_id", client_id), ("token", token)):
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
        if token is not None and hmac.compare_digest(token, job.token):
            return job
        if (
            client_id is not None
            and job.client_id is not None
            and hmac.compare_digest(client_id, job.client_id)
        ):
            return job
        raise SteeringError(
            403,
            "forbidden",
            "only the client that queued this live stream (its client_id) or the holder of its token may steer it",
        )


JOBS = LiveJobs()
