"""/object_info lists the eight nodes with the right input and output types, a tooltip on every
input and a description on every node (the V3 ``comfy_api.latest`` route)."""

import json

import pytest
from workflow_files import TEMPLATES, WORKFLOWS, ui_graph

COMBO = "COMBO"

EXPECTED = {
    "WanStreamLoadDiT": {
        "inputs": {
            "model_name": COMBO, "precision": COMBO, "attention": COMBO,
            "compile": "BOOLEAN", "cuda_graphs": "BOOLEAN", "download": "BOOLEAN", "lora_name": COMBO,
            "lora_strength": "FLOAT",
        },
        "optional": {"weights": COMBO, "speed": COMBO},  # appended: the weight set of a training checkpoint; speed
        "outputs": ["WANSTREAM_DIT"],
    },
    "WanStreamLoadVAE": {
        "inputs": {"vae_name": COMBO, "precision": COMBO, "download": "BOOLEAN"},
        "optional": {},
        "outputs": ["WANSTREAM_VAE"],
    },
    "WanStreamLoadTAEHV": {
        "inputs": {"taehv_name": COMBO, "precision": COMBO, "download": "BOOLEAN"},
        "optional": {},
        "outputs": ["WANSTREAM_VAE"],
    },
    "WanStreamEncodePrompt": {
        "inputs": {
            "text_encoder": COMBO, "positive": "STRING", "negative": "STRING",
            "prompt_switches": "STRING", "precision": COMBO, "download": "BOOLEAN",
        },
        "optional": {"device": COMBO},
        "outputs": ["WANSTREAM_CONDITIONING"],
    },
    "WanStreamI2VControlEncode": {
        "inputs": {
            "conditioning": "WANSTREAM_CONDITIONING", "vae": "WANSTREAM_VAE", "image": "IMAGE",
            "clip_vision": COMBO, "download": "BOOLEAN",
        },
        "optional": {},
        "outputs": ["WANSTREAM_CONDITIONING", "INT", "INT"],
    },
    "WanStreamARSampler": {
        "inputs": {
            "dit": "WANSTREAM_DIT", "conditioning": "WANSTREAM_CONDITIONING", "width": "INT", "height": "INT",
            "frames": "INT", "preset": COMBO, "seed": "INT", "window_frames": "INT", "sink_frames": "INT",
            "chunks": "INT",
        },
        "optional": {
            "preview_vae": "WANSTREAM_VAE", "dit_low_noise": "WANSTREAM_DIT", "gpus": "INT",
            "context_parallel": COMBO, "options": "WANSTREAM_ROLLOUT_OPTIONS",  # options: appended
        },
        "outputs": ["LATENT", "FLOAT"],  # fps: appended
    },
    "WanStreamDecodeChunk": {
        "inputs": {"vae": "WANSTREAM_VAE", "samples": "LATENT", "chunk_frames": "INT"},
        "optional": {},
        "outputs": ["IMAGE"],
    },
    "WanStreamRolloutOptions": {
        "inputs": {"window_frames": "INT", "sink_frames": "INT", "gpus": "INT", "context_parallel": COMBO},
        "optional": {},
        "outputs": ["WANSTREAM_ROLLOUT_OPTIONS"],
    },
}  # fmt: skip


@pytest.fixture(scope="module")
def object_info(comfy_server):
    return comfy_server.client().object_info()


def _type_of(spec) -> str:
    kind = spec[0]
    return COMBO if isinstance(kind, list) else kind


@pytest.mark.parametrize("node_id", sorted(EXPECTED))
def test_node_listed_with_types(object_info, node_id):
    assert node_id in object_info, f"{node_id} missing from /object_info"
    info = object_info[node_id]
    want = EXPECTED[node_id]
    required = info["input"].get("required", {})
    optional = info["input"].get("optional", {})
    assert {k: _type_of(v) for k, v in required.items()} == want["inputs"]
    assert {k: _type_of(v) for k, v in optional.items()} == want["optional"]
    assert info["output"] == want["outputs"]
    # inputs are append-only: the declared order is the order above (saved workflows depend on it)
    assert info["input_order"]["required"] == list(want["inputs"])
    assert info["input_order"].get("optional", []) == list(want["optional"])
    assert info["category"] == "Wan Stream"
    assert len(info["description"]) > 40, "every node needs a description"
    for name, spec in {**required, **optional}.items():
        assert len(spec) > 1 and spec[1].get("tooltip"), f"{node_id}.{name} has no tooltip"
    assert all(info["output_tooltips"]), f"{node_id} outputs need tooltips"


def test_option_lists(object_info):
    dit = object_info["WanStreamLoadDiT"]["input"]["required"]
    # appended only (workflows store the name): fp8_fast = FP8 math, on the DiT loader alone
    assert dit["precision"][1]["options"] == ["auto", "bf16", "fp16", "fp8", "fp8_fast"]
    umt5 = object_info["WanStreamEncodePrompt"]["input"]["required"]["precision"][1]["options"]
    assert umt5 == ["auto", "bf16", "fp16", "fp8"]
    assert dit["attention"][1]["options"] == ["auto", "sdpa", "sage", "flash"]
    # missing known files are offered (downloadable), files come from ComfyUI's own folders
    assert "self_forcing_dmd.pt" in dit["model_name"][1]["options"]
    vae = object_info["WanStreamLoadVAE"]["input"]["required"]["vae_name"][1]["options"]
    assert {"wan_2.1_vae.safetensors", "wan2.2_vae.safetensors"} <= set(vae)
    clip = object_info["WanStreamI2VControlEncode"]["input"]["required"]["clip_vision"][1]
    assert clip["options"][0] == "none" and clip["default"] == "none"
    device = object_info["WanStreamEncodePrompt"]["input"]["optional"]["device"][1]
    assert device["options"] == ["auto", "cpu"] and device["default"] == "auto"  # auto: as before
    sampler_optional = object_info["WanStreamARSampler"]["input"]["optional"]
    gpus = sampler_optional["gpus"][1]
    assert (gpus["default"], gpus["min"], gpus["max"]) == (1, 1, 16)  # 1 = in-process, the default
    cp = sampler_optional["context_parallel"][1]
    assert cp["options"] == ["ulysses", "ring"] and cp["default"] == "ulysses"
    preset = object_info["WanStreamARSampler"]["input"]["required"]["preset"][1]["options"]
    assert preset[0] == "self-forcing-1.3b"
    assert {
        "causvid-1.3b",
        "longlive-1.3b",
        "wan2.2-ti2v-5b",
        "wan2.1-i2v-14b-480p",
        "wan2.2-t2v-a14b",
    } <= set(preset)


def test_nodes_come_from_this_pack(object_info):
    for node_id in EXPECTED:
        assert object_info[node_id]["python_module"] == "custom_nodes.ComfyUI-Wan-Stream"


def test_template_browser_lists_the_ui_workflows(comfy_server):
    client = comfy_server.client()
    templates = client.get("/workflow_templates")
    assert sorted(templates["ComfyUI-Wan-Stream"]) == sorted(
        TEMPLATES
    )  # API twins (workflows/api/) are not listed
    served = client.get("/api/workflow_templates/ComfyUI-Wan-Stream/t2v_self_forcing_1.3b.json")
    served = json.loads(served) if isinstance(served, bytes) else served
    assert served == ui_graph("t2v_self_forcing_1.3b")
    # the thumbnail the template browser asks for beside each template (<name>.jpg)
    for name in TEMPLATES:
        jpg = client.get(f"/api/workflow_templates/ComfyUI-Wan-Stream/{name}.jpg")
        assert isinstance(jpg, bytes) and jpg[:3] == b"\xff\xd8\xff", name  # a JPEG
        assert jpg == (WORKFLOWS / f"{name}.jpg").read_bytes()
