"""A small client for a running ComfyUI server: HTTP (urllib) and the websocket (websocket-client).

Used by the integration tests only. Everything talks to 127.0.0.1.
"""

from __future__ import annotations

import json
import struct
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field


class ComfyError(RuntimeError):
    pass


@dataclass
class WsMessage:
    """One websocket message: a JSON event (``type``, ``data``) or a binary frame (``type`` = ``"binary"``)."""

    type: str
    data: dict | bytes
    at: float = field(default_factory=time.monotonic)


class ComfyClient:
    def __init__(self, url: str, client_id: str | None = None):
        self.url = url.rstrip("/")
        self.client_id = client_id or uuid.uuid4().hex

    # -- HTTP ---------------------------------------------------------------------------------
    def request(self, method: str, path: str, body: dict | None = None, timeout: float = 30.0):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
                ctype = resp.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            raise ComfyError(f"{method} {path} -> HTTP {e.code}: {e.read()[:2000]!r}") from e
        return json.loads(raw) if "json" in ctype else raw

    def get(self, path: str, timeout: float = 30.0):
        return self.request("GET", path, timeout=timeout)

    def object_info(self) -> dict:
        return self.get("/object_info", timeout=60)

    def queue(self, prompt: dict) -> str:
        """POST /prompt; returns the prompt id. A validation failure raises ComfyError with the server's reply."""
        reply = self.request("POST", "/prompt", {"prompt": prompt, "client_id": self.client_id})
        if reply.get("node_errors"):
            raise ComfyError(f"prompt rejected: {json.dumps(reply)[:3000]}")
        return reply["prompt_id"]

    def interrupt(self) -> None:
        self.request("POST", "/interrupt", {})

    def history(self, prompt_id: str) -> dict | None:
        return self.get(f"/history/{prompt_id}").get(prompt_id)

    def wait(self, prompt_id: str, timeout: float = 180.0) -> dict:
        """Poll /history until the prompt finished (success or error); returns its history entry."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.history(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None:
                if entry["status"].get("status_str") in ("success", "error"):
                    return entry
            time.sleep(0.25)
        raise ComfyError(f"prompt {prompt_id} did not finish within {timeout} s")

    def view(self, filename: str, subfolder: str = "", type_: str = "output") -> bytes:
        q = urllib.parse.urlencode({"filename": filename, "subfolder": subfolder, "type": type_})
        return self.get(f"/view?{q}", timeout=60)

    # -- websocket ------------------------------------------------------------------------------
    def listen(self) -> WsListener:
        return WsListener(self.url.replace("http://", "ws://") + f"/ws?clientId={self.client_id}")

    def run_for_previews(self, prompt: dict) -> list[list[str]]:
        """Queue ``prompt``, wait for its success; the pack's preview frames (base64 JPEGs) of each chunk,
        in chunk order."""
        with self.listen() as ws:
            prompt_id = self.queue(prompt)
            entry = self.wait(prompt_id, timeout=240)
            assert entry["status"]["status_str"] == "success", entry["status"]
            ws.wait_for(
                lambda m: m.type == "execution_success" and m.data.get("prompt_id") == prompt_id, timeout=30
            )
            return [m.data["frames"] for m in ws.of("wanstream.preview", prompt_id)]


class WsListener:
    """Collects every websocket message in a background thread (use as a context manager)."""

    def __init__(self, ws_url: str):
        import websocket  # websocket-client, installed with ComfyUI's requirements by .ci/setup.d

        self.messages: list[WsMessage] = []
        self._cond = threading.Condition()
        self._ws = websocket.create_connection(ws_url, timeout=30)
        self._ws.settimeout(0.5)
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import websocket

        while not self._stop:
            try:
                opcode, payload = self._ws.recv_data()
            except websocket.WebSocketTimeoutException:
                continue
            except Exception:
                break
            if opcode == websocket.ABNF.OPCODE_TEXT:
                obj = json.loads(payload.decode())
                msg = WsMessage(obj.get("type", "?"), obj.get("data", {}))
            elif opcode == websocket.ABNF.OPCODE_BINARY:
                msg = WsMessage("binary", bytes(payload))
            else:
                continue
            with self._cond:
                self.messages.append(msg)
                self._cond.notify_all()

    def wait_for(self, predicate, timeout: float = 120.0) -> WsMessage:
        """Block until a message satisfying ``predicate(msg)`` arrived (already-received ones count)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for m in self.messages:
                    if predicate(m):
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    kinds = [m.type for m in self.messages][-40:]
                    raise ComfyError(f"no matching websocket message within {timeout} s; last: {kinds}")
                self._cond.wait(left)

    def of(self, type_: str, prompt_id: str | None = None) -> list[WsMessage]:
        with self._cond:
            msgs = list(self.messages)
        out = [m for m in msgs if m.type == type_]
        if prompt_id is not None:
            out = [m for m in out if isinstance(m.data, dict) and m.data.get("prompt_id") == prompt_id]
        return out

    def close(self) -> None:
        self._stop = True
        try:
            self._ws.close()
        finally:
            self._thread.join(timeout=5)

    def __enter__(self) -> WsListener:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def binary_event_type(payload: bytes) -> int:
    """ComfyUI binary websocket frames start with a big-endian uint32 event type (1 = preview image)."""
    return struct.unpack(">I", payload[:4])[0]
