"""Make the template thumbnails ``workflows/<name>.jpg`` and the pack icon ``icon.png``.

ComfyUI's template browser shows ``/api/workflow_templates/<pack>/<name>.jpg`` for each custom-node
template (front end 1.32.9: ``mediaType: "image", mediaSubtype: "jpg"``; ComfyUI 0.3.75 serves the
pack's ``workflows/`` under that URL). This boots the integration tests' ComfyUI server (tiny
models, ``tests/integration/conftest.py``; ``WANSTREAM_COMFYUI_DIR`` as for the tests), opens the
real front end in headless Debian chromium (``.ci/setup.d/browser.sh``), screenshots each template
graph as it loads (``tools/template_thumbnails.mjs``, 1600x1200) and writes it as a 1024x768 JPEG.
Re-run it after changing a workflow's layout:

    python tools/make_template_thumbnails.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # wan_core, for the tiny models
sys.path.insert(0, str(ROOT / "tests"))  # tiny_models
sys.path.insert(0, str(ROOT / "tests" / "integration"))  # first: its conftest (the server)

from conftest import COMFY_DIR, _prepare_base, _wait_ready, free_port, server_command  # noqa: E402
from tiny_models import install_tiny_models  # noqa: E402

TEMPLATES = ROOT / "workflows"
ICON = ROOT / "icon.png"
ICON_FROM = "t2v_self_forcing_1.3b"
THUMB_SIZE = (1024, 768)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="wanstream_thumbs_") as tmp:
        base = Path(tmp) / "base"
        _prepare_base(base)
        install_tiny_models(base / "models", base / "input")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log_path = Path(tmp) / "server.log"
        with open(log_path, "w") as log:
            proc = subprocess.Popen(
                server_command(port, base), cwd=COMFY_DIR, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            _wait_ready(proc, url, log_path)
            # a fresh user gets the template browser on first load: mark the tutorial as seen
            req = urllib.request.Request(
                url + "/settings/Comfy.TutorialCompleted", data=b"true", method="POST"
            )
            urllib.request.urlopen(req, timeout=30).close()
            subprocess.run(
                ["node", str(ROOT / "tools" / "template_thumbnails.mjs"), url, str(TEMPLATES),
                 str(Path(tmp) / "profile"), tmp, ICON_FROM],
                check=True,
            )  # fmt: skip
        finally:
            proc.terminate()
            proc.wait(timeout=15)
        for shot in sorted(Path(tmp).glob("*.png")):
            if shot.name == "icon.png":
                Image.open(shot).convert("RGB").save(ICON, optimize=True)
                print("wrote", ICON.relative_to(ROOT))
                continue
            jpg = TEMPLATES / f"{shot.stem}.jpg"
            Image.open(shot).convert("RGB").resize(THUMB_SIZE, Image.LANCZOS).save(jpg, quality=85)
            print("wrote", jpg.relative_to(ROOT))


if __name__ == "__main__":
    main()
