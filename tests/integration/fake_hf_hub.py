"""A local stand-in for the Hugging Face Hub's file endpoint (``HF_ENDPOINT``), on 127.0.0.1 only:
``HEAD/GET /<repo_id>/resolve/<revision>/<path>`` for the files registered in it. Used to test the
loaders' download option end to end without the internet."""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeHub:
    def __init__(self):
        self.files: dict[tuple[str, str], bytes] = {}
        self.requests: list[tuple[str, str]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def _lookup(self):
                hub.requests.append((self.command, self.path))
                parts = self.path.split("?")[0].lstrip("/").split("/")
                if len(parts) < 5 or parts[2] != "resolve":
                    return None
                return hub.files.get(("/".join(parts[:2]), "/".join(parts[4:])))

            def _headers(self, data: bytes) -> None:
                self.send_response(200)
                self.send_header("X-Repo-Commit", "0123456789abcdef0123456789abcdef01234567")
                self.send_header("ETag", '"' + hashlib.sha256(data).hexdigest() + '"')
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()

            def do_HEAD(self):  # noqa: N802
                data = self._lookup()
                if data is None:
                    self.send_error(404)
                    return
                self._headers(data)

            def do_GET(self):  # noqa: N802
                data = self._lookup()
                if data is None:
                    self.send_error(404)
                    return
                self._headers(data)
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add(self, repo_id: str, path: str, data: bytes) -> None:
        self.files[(repo_id, path)] = data

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
