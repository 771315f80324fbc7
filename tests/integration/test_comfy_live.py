"""The live stream on the real server, steered over its HTTP API (tiny models, CPU): only the client
that queued it, with its token, may steer, stop or read it (a client_id is no credential: /queue shows
it); a live job queued without a client_id is refused before it runs; bad requests (too long, bad JSON, a wrong job,
after the end) get a 4xx with a JSON error and the stream goes on; a prompt applies from the chunk
the answer names (latents equal a no-steering run before it, differ after); pause holds it; stop
ends the job normally with an mp4 of exactly the frames sent to the player; the next live job starts
on the kept rollout; /interrupt discards."""

from __future__ import annotations

import io
import json
import time
import urllib.error
import urllib.request
import uuid

import av
import pytest
import torch
from live_client import SAVE, live_prompt, saved_latent, seconds_for_chunks, steer


def _frames_in_mp4(data: bytes) -> int:
    with av.open(io.BytesIO(data)) as container:
        return sum(1 for _ in container.decode(container.streams.video[0]))


def _previews(ws, prompt_id):
    return [m.data for m in ws.of("wanstream.live.preview", prompt_id)]


def _status(url, prompt_id, token=None, query=""):
    """GET /wanstream/live/<id> -> (HTTP status, JSON reply)."""
    req = urllib.request.Request(f"{url}/wanstream/live/{prompt_id}{query}")
    if token is not None:
        req.add_header("X-WanStream-Token", token)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def _wait_previews(ws, prompt_id, n, timeout=120.0):
    ws.wait_for(lambda m: len(_previews(ws, prompt_id)) >= n, timeout=timeout)


@pytest.fixture(scope="module")
def steered_run(comfy_server):
    """One live job steered through every case; what happened, for the tests below."""
    from comfy_client import ComfyClient

    owner = ComfyClient(comfy_server.url)
    url = comfy_server.url
    out: dict = {"refusals": {}}
    with owner.listen() as ws:
        pid = owner.queue(live_prompt("live_steered"))
        start = ws.wait_for(
            lambda m: m.type == "wanstream.live.start" and m.data.get("prompt_id") == pid, 120
        )
        token = start.data["token"]
        _wait_previews(ws, pid, 2)
        other = {"client_id": uuid.uuid4().hex}
        r = out["refusals"]
        r["other_prompt"] = steer(url, pid, "prompt", {**other, "prompt": "a cat"})
        r["other_stop"] = steer(url, pid, "stop", other)
        r["other_pause"] = steer(url, pid, "pause", other)
        r["no_id"] = steer(url, pid, "stop", {})
        r["bad_token"] = steer(url, pid, "stop", {"token": "x" * 20})
        # the owner's client_id is public (GET /queue shows it): it steers nothing, reads nothing
        r["owner_client_id_stop"] = steer(url, pid, "stop", {"client_id": owner.client_id})
        r["owner_client_id_status"] = _status(url, pid, query=f"?client_id={owner.client_id}")
        r["no_token_status"] = _status(url, pid)
        mine = {"token": token}
        r["too_long"] = steer(url, pid, "prompt", {**mine, "prompt": "a" * 3000})
        r["huge_body"] = steer(url, pid, "prompt", b'{"prompt": "' + b"a" * 20000 + b'"}')
        r["bad_json"] = steer(url, pid, "prompt", b"{not json", headers={"X-WanStream-Token": token})
        r["bad_transition"] = steer(url, pid, "prompt", {**mine, "prompt": "a cat", "transition_chunks": 99})
        r["unknown_field"] = steer(url, pid, "prompt", {**mine, "prompt": "a cat", "speed": 3})
        r["wrong_job"] = steer(url, "no-such-job", "prompt", {**mine, "prompt": "a cat"})
        before = len(_previews(ws, pid))
        _wait_previews(ws, pid, before + 2)  # the stream went on
        out["after_refusals"] = len(_previews(ws, pid)) - before
        # a prompt with the token as header, then a blended one with it as body field
        out["switch"] = steer(
            url, pid, "prompt", {"prompt": "a balloon over the sea"}, {"X-WanStream-Token": token}
        )
        applies = out["switch"][1]["applies_from_chunk"]
        _wait_previews(ws, pid, applies + 2)
        out["blend"] = steer(
            url, pid, "prompt", {**mine, "prompt": "a red fox in snow", "transition_chunks": 2}
        )
        _wait_previews(ws, pid, out["blend"][1]["applies_from_chunk"] + 3)
        # pause: at most the chunk in flight arrives, then nothing
        out["pause"] = steer(url, pid, "pause", mine)
        time.sleep(1.0)
        held = len(_previews(ws, pid))
        time.sleep(1.5)
        out["paused_growth"] = len(_previews(ws, pid)) - held
        out["status"] = _status(url, pid, token)[1]
        out["resume"] = steer(url, pid, "resume", mine)
        _wait_previews(ws, pid, held + 1)
        out["stop"] = steer(url, pid, "stop", {"token": token})
        entry = owner.wait(pid, timeout=120)
        end = ws.wait_for(lambda m: m.type == "wanstream.live.end" and m.data.get("prompt_id") == pid, 30)
        out["after_end"] = steer(url, pid, "prompt", {**mine, "prompt": "late"})
        out["previews"] = _previews(ws, pid)
        out["applied"] = [m.data for m in ws.of("wanstream.live.prompt", pid)]
        out.update(pid=pid, entry=entry, end=end.data)
    out["latent"] = saved_latent(comfy_server.output, entry)
    return out


def test_other_clients_cannot_steer_or_stop(steered_run):
    r = steered_run["refusals"]
    cases = ("other_prompt", "other_stop", "other_pause", "no_id", "bad_token", "owner_client_id_stop",
             "owner_client_id_status", "no_token_status")  # fmt: skip
    for case in cases:
        status, body = r[case]
        assert status == 403, (case, status, body)
        assert body["code"] == "forbidden" and "client that queued" in body["error"]


def test_bad_input_is_refused_clearly_and_the_stream_goes_on(steered_run):
    r = steered_run["refusals"]
    assert r["too_long"][0] == 413 and "3000 characters; at most 2000" in r["too_long"][1]["error"]
    assert r["huge_body"][0] == 413 and r["huge_body"][1]["code"] == "body.too_large"
    assert r["bad_json"][0] == 400 and "not JSON" in r["bad_json"][1]["error"]
    assert r["bad_transition"][0] == 400 and "0 .. 64" in r["bad_transition"][1]["error"]
    assert r["unknown_field"][0] == 400 and "speed" in r["unknown_field"][1]["error"]
    assert r["wrong_job"][0] == 404 and "no live stream" in r["wrong_job"][1]["error"]
    assert steered_run["after_refusals"] >= 2
    status, body = steered_run["after_end"]
    assert status == 409 and "has ended" in body["error"]


def test_prompts_apply_from_the_named_chunk(steered_run):
    s, b = steered_run["switch"], steered_run["blend"]
    assert s[0] == 200 and b[0] == 200 and s[1]["accepted"]
    k, j = s[1]["applies_from_chunk"], b[1]["applies_from_chunk"]
    applied = [(a["chunk"], a["text"], round(a["weight"], 2)) for a in steered_run["applied"]]
    assert applied == [
        (k, "a balloon over the sea", 1.0),
        (j, "a red fox in snow", 0.5),
        (j + 1, "a red fox in snow", 1.0),
    ]


def test_pause_holds_the_stream(steered_run):
    assert steered_run["pause"][1]["state"] == "paused" and steered_run["paused_growth"] == 0
    assert steered_run["status"]["state"] == "paused"
    assert steered_run["resume"][1]["state"] == "running"


def test_stop_gives_an_mp4_of_exactly_the_frames_shown(steered_run, comfy_server):
    entry, end, previews = steered_run["entry"], steered_run["end"], steered_run["previews"]
    assert steered_run["stop"][0] == 200
    assert entry["status"]["status_str"] == "success" and end["ended_by"] == "stop"
    shown = sum(len(p["frames"]) for p in previews)
    assert [p["chunk"] for p in previews] == list(range(end["chunks"])) and end["frames"] == shown
    video = entry["outputs"][SAVE]["images"][0]
    data = (comfy_server.output / video["subfolder"] / video["filename"]).read_bytes()
    assert _frames_in_mp4(data) == shown
    assert steered_run["latent"].shape[2] == 3 * end["chunks"]  # the latents of the chunks shown


def test_latents_equal_a_plain_run_before_the_switch_and_differ_after(steered_run, comfy_server):
    from comfy_client import ComfyClient

    chunks = steered_run["end"]["chunks"]
    client = ComfyClient(comfy_server.url)
    before_log = comfy_server.log_path.read_text().count("starting on the kept rollout")
    pid = client.queue(live_prompt("live_plain", max_seconds=seconds_for_chunks(chunks)))
    entry = client.wait(pid, timeout=240)
    assert entry["status"]["status_str"] == "success"
    plain, steered = saved_latent(comfy_server.output, entry), steered_run["latent"]
    assert plain.shape == steered.shape
    k = steered_run["switch"][1]["applies_from_chunk"]
    assert torch.equal(plain[:, :, : 3 * k], steered[:, :, : 3 * k])
    for c in range(k, chunks):
        assert not torch.allclose(
            plain[:, :, 3 * c : 3 * c + 3], steered[:, :, 3 * c : 3 * c + 3], atol=1e-4
        ), c
    # the second live job started on the first one's kept rollout
    assert comfy_server.log_path.read_text().count("starting on the kept rollout") > before_log


def test_interrupt_discards_the_live_job(comfy_server):
    from comfy_client import ComfyClient

    client = ComfyClient(comfy_server.url)
    with client.listen() as ws:
        pid = client.queue(live_prompt("live_interrupted"))
        _wait_previews(ws, pid, 1)
        client.interrupt()
        ws.wait_for(lambda m: m.type == "execution_interrupted" and m.data.get("prompt_id") == pid, 60)
        entry = client.wait(pid, timeout=60) if client.history(pid) else None
    assert entry is None or SAVE not in (entry.get("outputs") or {})
    status, body = steer(comfy_server.url, pid, "stop", {"token": "any"})
    assert status == 409 and "has ended" in body["error"]


def test_a_live_job_queued_without_client_id_is_refused(comfy_server):
    from comfy_client import ComfyClient

    client = ComfyClient(comfy_server.url)
    reply = client.request("POST", "/prompt", {"prompt": live_prompt("live_no_client", max_seconds=1.0)})
    entry = client.wait(reply["prompt_id"], timeout=120)
    assert entry["status"]["status_str"] == "error"
    errors = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]
    assert errors and "queued without a client_id" in errors[0]["exception_message"]
    assert "POST /prompt" in errors[0]["exception_message"]
    assert SAVE not in (entry.get("outputs") or {})
