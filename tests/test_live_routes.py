"""The steering HTTP routes on a real aiohttp server (no ComfyUI): every route needs the job's token
(a client_id is no credential), a body is read to its end however it is split (413 over the limit,
with or without a Content-Length), and malformed input is a 4xx JSON refusal, never a 500."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from nodes.live_jobs import LiveJobs
from nodes.live_routes import MAX_BODY_BYTES, register_routes
from wan_core.live import LiveControl

PID, OWNER = "prompt-1", "owner-client"


class _Server:
    def __init__(self):
        self.routes = web.RouteTableDef()


def _run(scenario):
    """``scenario(client, job)`` against a fresh server with one running job."""

    async def main():
        jobs, server = LiveJobs(), _Server()
        assert register_routes(server, jobs)
        app = web.Application()
        app.add_routes(server.routes)
        job = jobs.start(PID, OWNER, "6", LiveControl())
        async with TestClient(TestServer(app)) as client:
            return await scenario(client, job)

    return asyncio.run(main())


async def _call(client, method, path, *, data=None, headers=None):
    r = await client.request(method, path, data=data, headers=headers or {})
    return r.status, await r.json()


def test_client_id_is_no_credential_only_the_token_is():
    async def scenario(client, job):
        out = {}
        base = f"/wanstream/live/{PID}"
        owner = json.dumps({"client_id": OWNER})
        out["status_by_client_id"] = await _call(client, "GET", f"{base}?client_id={OWNER}")
        out["status_by_clientId"] = await _call(client, "GET", f"{base}?clientId={OWNER}")
        out["status_bare"] = await _call(client, "GET", base)
        out["stop_by_client_id"] = await _call(client, "POST", f"{base}/stop", data=owner)
        out["pause_by_client_id"] = await _call(client, "POST", f"{base}/pause", data=owner)
        out["prompt_by_client_id"] = await _call(
            client, "POST", f"{base}/prompt", data=json.dumps({"client_id": OWNER, "prompt": "a cat"})
        )
        out["wrong_token"] = await _call(client, "GET", base, headers={"X-WanStream-Token": "x" * 32})
        out["token_in_query"] = await _call(client, "GET", f"{base}?token={job.token}")
        tok = {"X-WanStream-Token": job.token}
        out["status"] = await _call(client, "GET", base, headers=tok)
        out["pause"] = await _call(client, "POST", f"{base}/pause", headers=tok)
        out["resume"] = await _call(client, "POST", f"{base}/resume", data=json.dumps({"token": job.token}))
        out["prompt"] = await _call(
            client, "POST", f"{base}/prompt", data=json.dumps({"prompt": "a cat"}), headers=tok
        )
        out["stop"] = await _call(client, "POST", f"{base}/stop", headers=tok)
        return out

    out = _run(scenario)
    for case in ("status_by_client_id", "status_by_clientId", "status_bare", "stop_by_client_id",
                 "pause_by_client_id", "wrong_token", "token_in_query"):  # fmt: skip
        status, body = out[case]
        assert status == 403 and body["code"] == "forbidden", (case, out[case])
        assert "X-WanStream-Token" in body["error"], case
    assert out["prompt_by_client_id"][0] == 403
    assert out["status"] == (200, {"prompt_id": PID, "state": "running", "next_chunk": 0, "chunks_shown": 0})
    assert out["pause"][1]["state"] == "paused" and out["resume"][1]["state"] == "running"
    assert out["prompt"][0] == 200 and out["prompt"][1]["applies_from_chunk"] == 0
    assert out["stop"][0] == 200 and out["stop"][1]["state"] == "stopping"


def test_a_job_needs_the_client_it_reports_to():
    with pytest.raises(ValueError, match="client_id"):
        LiveJobs().start(PID, None, "6", LiveControl())


async def _raw(client, head: str, parts: list[bytes]) -> tuple[int, dict]:
    """A request written by hand, its body in ``parts`` sent with a pause between them (separate
    TCP segments)."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(head.encode())
    for part in parts:
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.write(part)
    await writer.drain()
    data = await reader.read()
    writer.close()
    head_bytes, _, body = data.partition(b"\r\n\r\n")
    status = int(head_bytes.split(b" ", 2)[1])
    if b"chunked" in head_bytes.lower():
        body = body.split(b"\r\n", 1)[1].rsplit(b"\r\n0\r\n", 1)[0]
    return status, json.loads(body)


def _head(token: str, extra: str) -> str:
    return (
        f"POST /wanstream/live/{PID}/prompt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nX-WanStream-Token: {token}\r\n{extra}\r\n"
    )


def _chunked(*parts: bytes) -> list[bytes]:
    return [b"%x\r\n%s\r\n" % (len(p), p) for p in parts] + [b"0\r\n\r\n"]


def test_a_body_in_several_segments_is_read_whole():
    body = json.dumps({"prompt": "a lighthouse at night", "transition_chunks": 2}).encode()
    a, b = body[:10], body[10:]

    async def scenario(client, job):
        sized = await _raw(client, _head(job.token, f"Content-Length: {len(body)}\r\n"), [a, b])
        chunked = await _raw(client, _head(job.token, "Transfer-Encoding: chunked\r\n"), _chunked(a, b))
        return sized, chunked

    for status, reply in _run(scenario):
        assert status == 200, reply
        assert reply["prompt"] == "a lighthouse at night" and reply["transition_chunks"] == 2


def test_a_chunked_body_over_the_limit_is_413():
    half = b"a" * (MAX_BODY_BYTES // 2 + 10)

    async def scenario(client, job):
        parts = _chunked(b'{"prompt": "', half, half, b'"}')
        return await _raw(client, _head(job.token, "Transfer-Encoding: chunked\r\n"), parts)

    status, reply = _run(scenario)
    assert status == 413 and reply["code"] == "body.too_large"


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 5000,
        b'{"prompt": "a cat", "transition_chunks": ' + b"9" * 5000 + b"}",
        b"\xff\xfe{",
        b"{not json",
    ],
    ids=["deep_nesting", "huge_int", "bad_utf8", "bad_json"],
)
def test_malformed_bodies_are_400_not_500(body):
    async def scenario(client, job):
        return await _call(
            client,
            "POST",
            f"/wanstream/live/{PID}/prompt",
            data=body,
            headers={"X-WanStream-Token": job.token},
        )

    status, reply = _run(scenario)
    assert status == 400 and reply["code"] == "body.json" and "not JSON" in reply["error"], reply


def test_non_ascii_credentials_are_refused_not_500():
    async def scenario(client, job):
        base = f"/wanstream/live/{PID}"
        return [
            await _call(client, "POST", f"{base}/stop", data=json.dumps({"token": "é" * 20})),
            await _call(client, "POST", f"{base}/stop", data=json.dumps({"token": "\ud800x"})),
            await _call(client, "GET", base, headers={"X-WanStream-Token": "é" * 20}),
            await _call(client, "POST", f"{base}/stop", data=json.dumps({"client_id": "é", "token": 5})),
        ]

    replies = _run(scenario)
    assert [s for s, _ in replies] == [403, 403, 403, 400], replies
    assert all("error" in r and "code" in r for _, r in replies)
