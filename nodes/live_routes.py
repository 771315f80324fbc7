"""The HTTP API that steers a running live stream (docs/live.md), added to ComfyUI's server routes.

    POST /wanstream/live/{prompt_id}/prompt   {"prompt": "...", "transition_chunks": 0, "client_id"|"token"}
    POST /wanstream/live/{prompt_id}/pause    {"client_id"|"token"}
    POST /wanstream/live/{prompt_id}/resume   {"client_id"|"token"}
    POST /wanstream/live/{prompt_id}/stop     {"client_id"|"token"}
    GET  /wanstream/live/{prompt_id}?client_id=...   (or header X-WanStream-Token)

Answers are JSON; a refusal is a 4xx with ``{"error": message, "code": word}`` and the stream goes on.
Bodies are at most ``MAX_BODY_BYTES``.
"""

from __future__ import annotations

import json
import logging

from wan_core.live import SteeringError

from .live_jobs import JOBS, LiveJobs

__all__ = ["register_routes", "MAX_BODY_BYTES", "ROUTE_PREFIX"]

log = logging.getLogger("wan_stream")
MAX_BODY_BYTES = 16 * 1024
ROUTE_PREFIX = "/wanstream/live"
TOKEN_HEADER = "X-WanStream-Token"
_registered: set[int] = set()


async def _body(request) -> dict:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise SteeringError(413, "body.too_large", f"request body over {MAX_BODY_BYTES} bytes")
    raw = await request.content.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise SteeringError(413, "body.too_large", f"request body over {MAX_BODY_BYTES} bytes")
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SteeringError(400, "body.json", f"request body is not JSON: {e}") from None
    if not isinstance(body, dict):
        raise SteeringError(400, "body.json", "request body must be a JSON object")
    return body


def _job(request, body: dict, jobs: LiveJobs):
    token = request.headers.get(TOKEN_HEADER) or body.get("token") or request.query.get("token")
    client_id = body.get("client_id") or request.query.get("client_id") or request.query.get("clientId")
    return jobs.authorize(request.match_info["prompt_id"], client_id=client_id, token=token)


def make_handlers(jobs: LiveJobs = JOBS):
    from aiohttp import web

    def refused(e: SteeringError):
        return web.json_response({"error": str(e), "code": e.code}, status=e.status)

    def handler(action):
        async def handle(request):
            try:
                body = await _body(request) if request.method == "POST" else {}
                job = _job(request, body, jobs)
                return web.json_response({"prompt_id": job.prompt_id, **action(job, body)})
            except SteeringError as e:
                return refused(e)

        return handle

    def prompt(job, body):
        unknown = sorted(set(body) - {"prompt", "transition_chunks", "client_id", "token"})
        if unknown:
            raise SteeringError(400, "body.unknown", f"unknown fields: {', '.join(unknown)}")
        req = job.control.set_prompt(body.get("prompt"), body.get("transition_chunks", 0))
        return {
            "accepted": True,
            "prompt": req.text,
            "transition_chunks": req.transition_chunks,
            "applies_from_chunk": req.applies_from_chunk,
        }

    return {
        "prompt": handler(prompt),
        "pause": handler(lambda job, body: job.control.pause()),
        "resume": handler(lambda job, body: job.control.resume()),
        "stop": handler(lambda job, body: job.control.stop()),
        "status": handler(lambda job, body: job.control.status()),
    }


def register_routes(server=None, jobs: LiveJobs = JOBS) -> bool:
    """Add the routes to ComfyUI's ``PromptServer.instance.routes`` (once); False without a server."""
    if server is None:
        try:
            from server import PromptServer
        except ImportError:
            return False
        server = getattr(PromptServer, "instance", None)
    if server is None or id(server) in _registered:
        return server is not None
    h = make_handlers(jobs)
    routes = server.routes
    for action in ("prompt", "pause", "resume", "stop"):
        routes.post(f"{ROUTE_PREFIX}/{{prompt_id}}/{action}")(h[action])
    routes.get(f"{ROUTE_PREFIX}/{{prompt_id}}")(h["status"])
    _registered.add(id(server))
    return True
