"""A real browser (Debian chromium, headless, driven by playwright-core) on ComfyUI's front end:
every bundled UI workflow loads with no missing node types and converts to exactly its API twin
(``app.graphToPrompt()`` == ``workflows/api/<name>.json``: same node ids, class types, inputs,
links and titles); queueing the T2V workflow from the UI streams preview frames into the sampler
node's player. The screenshot is kept in ``artifacts/browser_t2v_player.png``."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ARTIFACTS, ROOT
from workflow_files import NAMES, TINY_OVERRIDES, api_prompt, ui_graph

BROWSER_DIR = Path(__file__).resolve().parent / "browser"
CHROMIUM = Path("/usr/bin/chromium")
RUN = "t2v_self_forcing_1.3b"


@pytest.fixture(scope="module")
def browser_results(comfy_server, tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium missing: run `bash .ci/setup.sh` as root (.ci/setup.d/browser.sh)")
    if shutil.which("node") is None or not (ROOT / ".cache/node/node_modules/playwright-core").is_dir():
        pytest.skip("node / playwright-core missing: run `bash .ci/setup.sh` (.ci/setup.d/browser.sh)")
    tmp = tmp_path_factory.mktemp("browser")
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "browser_t2v_player.png"
    screenshot.unlink(missing_ok=True)
    config = {
        "workflows": {name: ui_graph(name) for name in NAMES},
        "run": {"name": RUN, "overrides": TINY_OVERRIDES[RUN], "timeout_ms": 240000},
        "screenshot": str(screenshot),
        "user_data_dir": str(tmp / "profile"),  # fresh profile
    }
    (tmp / "config.json").write_text(json.dumps(config))
    # a fresh ComfyUI user gets the template browser on first load: mark the tutorial as seen
    comfy_server.client().request("POST", "/settings/Comfy.TutorialCompleted", True)
    proc = subprocess.run(
        [
            "node",
            str(BROWSER_DIR / "ui_check.mjs"),
            comfy_server.url,
            str(tmp / "config.json"),
            str(tmp / "results.json"),
        ],
        capture_output=True,
        text=True,
        timeout=420,
    )
    assert proc.returncode == 0, f"browser script failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    results = json.loads((tmp / "results.json").read_text())
    (ARTIFACTS / "browser_results.json").write_text(json.dumps(results, indent=2))
    return results


@pytest.mark.parametrize("name", NAMES)
def test_ui_workflow_loads_and_converts_to_api_twin(browser_results, name):
    got = browser_results["workflows"][name]
    assert got["missing"] == [], f"missing node types: {got['missing']}"
    assert not [n for n in got["loaded"] if n["errors"]]
    assert sorted(n["type"] for n in got["loaded"]) == sorted(n["type"] for n in ui_graph(name)["nodes"])
    assert got["api"] == api_prompt(name)
    # the pack's front-end code raised nothing in the page
    assert not [
        line for line in browser_results["logs"] if "wan_stream_player" in line or "WanStream" in line
    ]


def test_t2v_from_the_ui_streams_preview_frames(browser_results, comfy_server):
    run = browser_results["run"]
    assert run is not None
    assert run["outcome"] == "execution_success", run
    player = run["player"]
    # 2 chunks of 3 latent frames -> TAEHV frames of both chunks arrived and the player is done
    assert player["chunks"] == "2" and player["done"] == "true", player
    assert int(player["frames"]) >= 2 * 9, player  # >= 9 pixel frames per chunk of 3 latent frames
    assert run["canvas"] == [64, 64]
    assert run["drawn"] == 1.0, "the player canvas does not show a frame"
    assert "shown" in player
    assert (ARTIFACTS / "browser_t2v_player.png").stat().st_size > 10000
    assert comfy_server.is_up()
