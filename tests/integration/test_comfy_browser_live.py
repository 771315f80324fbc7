"""The live stream in a real browser (Debian chromium, headless, playwright-core) on the real server
with tiny models: the live UI workflow loads and converts to its API twin, is queued from the UI,
frames arrive in the player, a prompt typed in the player applies from the chunk the server named
(the latents equal a no-steering run before it and differ after), a blended transition is applied
over 2 chunks, Stop ends the job and SaveVideo's mp4 has exactly the frames the player received.
The latency from the server sending a chunk to its first frame on the canvas is kept in
``artifacts/browser_live_results.json`` (with the screenshot ``browser_live_player.png``).
The UI workflow itself is rebuilt from its API twin by ``browser/export_ui_workflows.mjs`` (a dev tool)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import av
import pytest
import torch
from conftest import ARTIFACTS, ROOT
from live_client import SAVE_LATENT, live_prompt, saved_latent, seconds_for_chunks
from workflow_files import LIVE, TINY_OVERRIDES, WORKFLOWS, api_prompt

BROWSER_DIR = Path(__file__).resolve().parent / "browser"
CHROMIUM = Path("/usr/bin/chromium")
PROMPTS = ["a paper boat on a rainy street", "a lighthouse at night in a storm"]


def _run_script(comfy_server, tmp: Path, config: dict) -> dict:
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium missing: run `bash .ci/setup.sh` as root (.ci/setup.d/browser.sh)")
    if shutil.which("node") is None or not (ROOT / ".cache/node/node_modules/playwright-core").is_dir():
        pytest.skip("node / playwright-core missing: run `bash .ci/setup.sh` (.ci/setup.d/browser.sh)")
    config = {**config, "user_data_dir": str(tmp / "profile")}
    (tmp / "config.json").write_text(json.dumps(config))
    comfy_server.client().request("POST", "/settings/Comfy.TutorialCompleted", True)
    script = BROWSER_DIR / "live_check.mjs"
    args = ["node", str(script), comfy_server.url, str(tmp / "config.json"), str(tmp / "results.json")]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=420)
    assert proc.returncode == 0, f"browser script failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads((tmp / "results.json").read_text())


@pytest.fixture(scope="module")
def live_results(comfy_server, tmp_path_factory):
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "browser_live_player.png"
    workflow = json.loads((WORKFLOWS / f"{LIVE}.json").read_text())
    sampler = next(n["id"] for n in workflow["nodes"] if n["type"] == "WanStreamLiveSampler")
    config = {
        "workflow": workflow,
        "sampler": sampler,
        "overrides": {str(sampler): TINY_OVERRIDES[LIVE]["6"]},
        "latent_prefix": "latents/live_browser",
        "prompts": PROMPTS,
        "screenshot": str(screenshot),
    }
    results = _run_script(comfy_server, tmp_path_factory.mktemp("browser_live"), config)
    (ARTIFACTS / "browser_live_results.json").write_text(json.dumps(results, indent=2))
    return results


def test_live_ui_workflow_loads_and_converts_to_its_api_twin(live_results):
    assert live_results["loaded"]["missing"] == []
    assert live_results["loaded"]["api"] == api_prompt(LIVE)
    assert not [line for line in live_results["logs"] if "wan_stream_live" in line or "pageerror" in line]


def test_live_in_the_browser(live_results, comfy_server):
    from comfy_client import ComfyClient

    final = live_results["final"]
    assert live_results["events"][0] == "execution_success", live_results["events"]
    assert final["ended"] == "true" and final["endedBy"] == "stop"
    chunks, received = int(final["chunks"]), int(final["received"])
    assert chunks >= live_results["second_applies"] + 3 and received == int(final["endFrames"])
    # the jitter buffer played every frame it got, except what it dropped unseen when more than its
    # 600-frame queue waited (a tiny CPU model outruns real time; a GPU stream plays in real time)
    assert int(final["shown"]) > 0 and int(final["shown"]) + int(final["dropped"]) == received
    assert live_results["drawn"] == 1.0
    # the prompts were applied where the server said: the first at once, the second blended over 2 chunks
    k, j = live_results["first_applies"], live_results["second_applies"]
    assert k >= 2 and j > k
    client = ComfyClient(comfy_server.url)
    entry = client.history(final["promptId"])
    assert entry["status"]["status_str"] == "success"
    # SaveVideo's mp4: exactly the frames the player received
    video = next(o["images"][0] for o in entry["outputs"].values() if "images" in o)
    data = (comfy_server.output / video["subfolder"] / video["filename"]).read_bytes()
    with av.open(io.BytesIO(data)) as container:
        assert sum(1 for _ in container.decode(container.streams.video[0])) == received
    # the latents: equal to a plain run of the same length before chunk k, different from k on
    node = next(n for n, o in entry["outputs"].items() if "latents" in o)
    steered = saved_latent(comfy_server.output, {"outputs": {SAVE_LATENT: entry["outputs"][node]}})
    assert steered.shape[2] == 3 * chunks
    pid = client.queue(live_prompt("live_browser_plain", max_seconds=seconds_for_chunks(chunks)))
    plain = saved_latent(comfy_server.output, client.wait(pid, timeout=240))
    assert torch.equal(plain[:, :, : 3 * k], steered[:, :, : 3 * k])
    for c in range(k, chunks):
        assert not torch.allclose(plain[:, :, 3 * c : 3 * c + 3], steered[:, :, 3 * c : 3 * c + 3], atol=1e-4)
    # the blend: chunk j is half-way (differs from a direct switch's end state is covered in the unit tests)
    latencies = json.loads(final["latencies"])
    # one per chunk whose first frame was shown (all of them unless the player had to drop frames)
    dropped = int(final["dropped"])
    assert 0 < len(latencies) <= chunks and (dropped > 0 or len(latencies) == chunks)
    assert all(0 <= x < 60000 for x in latencies)
