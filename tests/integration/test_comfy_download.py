"""The loaders' download option: a known model file missing from models/ is fetched with
huggingface_hub into the right ComfyUI folder (from a local stand-in of the Hub at HF_ENDPOINT,
127.0.0.1) and then used; here CausVid's checkpoint, run with the causvid-1.3b preset."""

from __future__ import annotations

from tiny_models import causvid_checkpoint_bytes
from workflow_files import tiny_api_prompt

REPO, REPO_PATH, NAME = "tianweiy/CausVid", "autoregressive_checkpoint/model.pt", "causvid_model.pt"


def test_download_missing_known_dit_then_generate(comfy, comfy_server, fake_hub):
    target = comfy_server.models / "diffusion_models" / NAME
    assert not target.exists()
    assert NAME in comfy.object_info()["WanStreamLoadDiT"]["input"]["required"]["model_name"][1]["options"]
    data = causvid_checkpoint_bytes()
    fake_hub.add(REPO, REPO_PATH, data)
    prompt = tiny_api_prompt(
        "t2v_self_forcing_1.3b",
        **{"1": {"model_name": NAME, "download": True}, "6": {"preset": "causvid-1.3b", "seed": 5}},
    )
    with comfy.listen() as ws:
        prompt_id = comfy.queue(prompt)
        entry = comfy.wait(prompt_id, timeout=240)
        end = ws.wait_for(
            lambda m: (
                m.type in ("execution_success", "execution_error") and m.data.get("prompt_id") == prompt_id
            ),
            timeout=30,
        )
    assert end.type == "execution_success", end.data.get("exception_message")
    assert entry["status"]["status_str"] == "success"
    # the file landed in ComfyUI's diffusion_models folder under its known name, byte for byte
    assert target.read_bytes() == data
    assert not (target.parent / ".download").exists()
    # fetched at the commit its checked metadata (HEAD at main) named: a pinned download
    commit = fake_hub.commits[(REPO, REPO_PATH)]
    assert ("GET", f"/{REPO}/resolve/{commit}/{REPO_PATH}") in fake_hub.requests
    # CausVid samples with 3 steps per chunk
    steps = [m.data for m in ws.of("wanstream.progress", prompt_id)]
    assert [s["num_steps"] for s in steps] == [3] * 6
