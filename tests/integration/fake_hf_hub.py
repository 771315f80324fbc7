"""A local stand-in for the Hugging Face Hub's file endpoint (``HF_ENDPOINT``), on 127.0.0.1 only:
``HEAD/GET /<repo_id>/resolve/<revision>/<path>`` for the files registered in it. Used to test the
loaders' download option end to end without the internet.

Like the Hub for LFS files, a HEAD answers ``X-Repo-Commit``, ``X-Linked-Etag`` (the sha256) and
``X-Linked-Size``; ``<revision>`` is ``main`` or the commit a file was added at. Tests can make a file
fail (``fail``: an HTTP status) or serve other bytes than it advertises (``tamper``)."""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    def __init__(self):
        self.files: dict[tuple[str, str], bytes] = {}
        self.commits: dict[tuple[str, str], str] = {}
        self.fail: dict[tuple[str, str], int] = {}  # (repo, path) -> HTTP status answered instead
        self.tamper: dict[tuple[str, str], bytes] = {}  # (repo, path) -> bytes a GET sends instead
        self.requests: list[tuple[str, str]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def _lookup(self):
                hub.requests.append((self.command, self.path))
                parts = self.path.split("?")[0].lstrip("/").split("/")
                if len(parts) < 5 or parts[2] != "resolve":
                    return None, None
                key = ("/".join(parts[:2]), "/".join(parts[4:]))
                if key not in hub.files or parts[3] not in ("main", hub.commits[key]):
                    return key, None
                return key, hub.files[key]

            def _headers(self, key, data: bytes, sent: bytes) -> None:
                self.send_response(200)
                self.send_header("X-Repo-Commit", hub.commits[key])
                self.send_header("X-Linked-Etag", '"' + hashlib.sha256(data).hexdigest() + '"')
                self.send_header("X-Linked-Size", str(len(data)))
                self.send_header("ETag", '"' + hashlib.sha256(data).hexdigest() + '"')
                self.send_header("Content-Length", str(len(sent)))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()

            def _answer(self, body: bool) -> None:
                key, data = self._lookup()
                if key in hub.fail:
                    self.send_error(hub.fail[key])
                    return
                if data is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                sent = hub.tamper.get(key, data) if body else data
                self._headers(key, data, sent)
                if body:
                    self.wfile.write(sent)

            def do_HEAD(self):  # noqa: N802
                self._answer(body=False)

            def do_GET(self):  # noqa: N802
                self._answer(body=True)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add(self, repo_id: str, path: str, data: bytes, commit: str = COMMIT) -> None:
        self.files[(repo_id, path)] = data
        self.commits[(repo_id, path)] = commit

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
