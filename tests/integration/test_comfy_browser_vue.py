"""The sampler in ComfyUI's Vue node renderer ("Nodes 2.0", setting ``Comfy.VueNodes.Enabled``), in a
real browser (Debian chromium, headless, playwright-core): the sampler renders as a Vue node showing
the few settings people change -- its widgets kept for saved workflows are not rendered -- with the
player inside it, and queueing the T2V workflow from the UI fills the player. Screenshot in
``artifacts/browser_vue_player.png``."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ARTIFACTS, ROOT
from workflow_files import TINY_OVERRIDES, ui_graph

BROWSER_DIR = Path(__file__).resolve().parent / "browser"
NAME = "t2v_self_forcing_1.3b"


@pytest.fixture(scope="module")
def vue_results(comfy_server, tmp_path_factory):
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("Debian chromium missing: run `bash .ci/setup.sh` as root (.ci/setup.d/browser.sh)")
    if shutil.which("node") is None or not (ROOT / ".cache/node/node_modules/playwright-core").is_dir():
        pytest.skip("node / playwright-core missing: run `bash .ci/setup.sh` (.ci/setup.d/browser.sh)")
    tmp = tmp_path_factory.mktemp("browser_vue")
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "browser_vue_player.png"
    client = comfy_server.client()
    client.request("POST", "/settings/Comfy.TutorialCompleted", True)
    client.request("POST", "/settings/Comfy.VueNodes.Enabled", True)
    config = {
        "workflow": ui_graph(NAME),
        "overrides": TINY_OVERRIDES[NAME],
        "timeout_ms": 240000,
        "screenshot": str(screenshot),
        "user_data_dir": str(tmp / "profile"),
    }
    (tmp / "config.json").write_text(json.dumps(config))
    try:
        proc = subprocess.run(
            ["node", str(BROWSER_DIR / "vue_check.mjs"), comfy_server.url, str(tmp / "config.json"),
             str(tmp / "results.json")],
            capture_output=True, text=True, timeout=420,
        )  # fmt: skip
    finally:
        client.request("POST", "/settings/Comfy.VueNodes.Enabled", False)  # the other browser tests: canvas
    assert proc.returncode == 0, f"browser script failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    results = json.loads((tmp / "results.json").read_text())
    (ARTIFACTS / "browser_vue_results.json").write_text(json.dumps(results, indent=2))
    return results


def test_sampler_in_the_vue_renderer_shows_few_widgets_and_its_player_fills(vue_results):
    r = vue_results
    assert r["vue"] is True
    before = r["before"]
    assert before["vue_node"] and before["player_in_node"], before
    text = before["text"]
    for shown in ("width", "height", "frames", "preset", "seed"):
        assert shown in text, text
    for hidden in ("window_frames", "sink_frames", "chunks", "gpus", "context_parallel"):
        assert hidden not in text, text
    assert r["outcome"] == "execution_success", r
    player = r["player"]
    assert player["chunks"] == "2" and player["done"] == "true" and int(player["frames"]) >= 18, player
    assert player["drawn"] == 1.0, "the player canvas shows no frame"
    w, h = r["after"]["player_box"]
    assert w > 100 and h > 100, r["after"]
    assert not [
        line for line in r["logs"] if "pageerror" in line and ("wan_stream" in line or "WanStream" in line)
    ]
