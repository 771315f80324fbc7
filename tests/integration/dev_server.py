"""Dev helper (not a test): the integration tests' ComfyUI server, left running for manual work.

python tests/integration/dev_server.py [port]   # prints the URL; Ctrl-C stops it
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # wan_core, for the tiny models
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: tiny_models
sys.path.insert(0, str(Path(__file__).resolve().parent))  # first: this folder's conftest, not tests/'

from conftest import COMFY_DIR, _prepare_base, _wait_ready, free_port, server_command  # noqa: E402
from tiny_models import install_tiny_models  # noqa: E402


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else free_port()
    base = Path(tempfile.mkdtemp(prefix="wanstream_dev_"))
    _prepare_base(base)
    install_tiny_models(base / "models", base / "input")
    log_path = base / "server.log"
    url = f"http://127.0.0.1:{port}"
    cmd = server_command(port, base)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=COMFY_DIR, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_ready(proc, url, log_path)
        print(f"{url} base={base} pid={proc.pid}", flush=True)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=15)


if __name__ == "__main__":
    main()
