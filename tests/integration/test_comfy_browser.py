"""A real browser (Debian chromium, headless, driven by playwright-core) on ComfyUI's front end:
every bundled UI workflow loads with no missing node types and converts (``app.graphToPrompt()``) to
its API twin ``workflows/api/<name>.json`` where it is the pack's: the pack's own nodes with
the same ids, class types and inputs, ComfyUI's nodes with the same ids, class types and links (newer
front ends add or nest inputs of ComfyUI's own nodes, e.g. ``CreateVideo.bit_depth``); queueing the
T2V workflow from the UI streams preview frames into the sampler node's player (screenshot kept in
``artifacts/browser_t2v_player.png``). Each template opened from the template browser comes with its
thumbnail and without a failed request or console error, and, queued, fills the player."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ARTIFACTS, PACK_NAME, ROOT
from PIL import Image
from workflow_files import NAMES, TINY_OVERRIDES, WORKFLOWS, api_prompt, ui_graph

BROWSER_DIR = Path(__file__).resolve().parent / "browser"
CHROMIUM = Path("/usr/bin/chromium")
RUN = "t2v_self_forcing_1.3b"
SAMPLER = "6"  # the Streaming AR Sampler's node id in every bundled workflow


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
        "templates": {
            "pack": PACK_NAME,
            "names": NAMES,
            # a seed of its own: the same prompt as the run above would be all cached (no preview)
            "overrides": {
                n: {**TINY_OVERRIDES[n], SAMPLER: {**TINY_OVERRIDES[n].get(SAMPLER, {}), "seed": 100 + i}}
                for i, n in enumerate(NAMES)
            },
            "timeout_ms": 240000,
        },
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
        timeout=900,
    )
    assert proc.returncode == 0, f"browser script failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    results = json.loads((tmp / "results.json").read_text())
    (ARTIFACTS / "browser_results.json").write_text(json.dumps(results, indent=2))
    return results


def pack_view(prompt: dict) -> dict:
    """What of an API prompt is the pack's: its own nodes' class types and inputs; for ComfyUI's
    nodes their class types and links (their widgets are ComfyUI's, and differ between versions)."""
    view = {}
    for node_id, node in prompt.items():
        inputs = node["inputs"]
        if not node["class_type"].startswith("WanStream"):
            inputs = {k: v for k, v in inputs.items() if isinstance(v, list)}  # links: [node id, slot]
        view[node_id] = (node["class_type"], inputs)
    return view


@pytest.mark.parametrize("name", NAMES)
def test_ui_workflow_loads_and_converts_to_api_twin(browser_results, name):
    got = browser_results["workflows"][name]
    assert got["missing"] == [], f"missing node types: {got['missing']}"
    assert not [n for n in got["loaded"] if n["errors"]]
    assert sorted(n["type"] for n in got["loaded"]) == sorted(n["type"] for n in ui_graph(name)["nodes"])
    assert pack_view(got["api"]) == pack_view(api_prompt(name))
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


# pixel frames the tiny-model video of each template has (test_comfy_workflows.EXPECTED) and its chunks
PLAYER = {
    "t2v_self_forcing_1.3b": (21, 2),
    "i2v_wan2.1_14b_480p": (9, 1),
    "ti2v_wan2.2_5b": (9, 1),
    "long_video_prompt_switch": (69, 6),
    "ti2v_longlive2_5b_ar": (61, 2),  # 16 latent frames = 2 chunks of 8 (LongLive 2.0)
}


@pytest.mark.parametrize("name", NAMES)
def test_template_from_the_template_browser_fills_the_player(browser_results, name):
    got = browser_results["templates"][name]
    # no request for the pack's files failed (the template list, a template, its thumbnail, the web
    # extension), and nothing logged an error about them; other failures are the front end's with its
    # server (a front end newer than the server asks for routes it lacks, e.g. /api/jobs) and are kept
    # in artifacts/browser_results.json
    ours = re.compile(rf"workflow_templates|{re.escape(PACK_NAME)}|wan_?stream", re.IGNORECASE)
    failed = [f for f in got["failed"] if ours.search(f)]
    assert failed == [], f"failed requests while opening the template: {failed}"
    errors = [line for line in got["console"] if ours.search(line) or "template" in line.lower()]
    assert errors == [], f"console errors while opening the template: {errors}"
    thumbnail = Image.open(WORKFLOWS / f"{name}.jpg").size
    assert got["thumbnail"] == list(thumbnail), "the card does not show the template's own thumbnail"
    assert sorted(n["type"] for n in got["loaded"]) == sorted(n["type"] for n in ui_graph(name)["nodes"])
    assert not [n for n in got["loaded"] if n["errors"]]
    assert got["outcome"] == "execution_success", got
    frames, chunks = PLAYER[name]
    player = got["player"]
    assert player["done"] == "true" and player["chunks"] == str(chunks), player
    assert int(player["frames"]) == frames, player
