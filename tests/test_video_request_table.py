"""One table of bad video requests through every interface: the command line (``python -m wan_core
generate`` as a subprocess), the Streaming AR Sampler node's ``execute`` and the Python API
(``wan_core.api.generate_video``). Each gives the same message (after mapping the interface's words
back to the request's field names), before any model file is opened or any output file or folder is
made. Valid requests normalize as expected, and every suggested nearest value is valid itself."""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from cpu_stand_ins import QuietProgress, comfy_runtime_outside
from tiny_models import TEXT_DIM, make_tiny_models

from nodes import core_bridge
from nodes.payloads import ImageCondition, PromptSegment, StreamConditioning
from nodes.video_request import SAMPLER_WORDS
from wan_core.rollout.request import CLI_WORDS, PYTHON_WORDS, RequestError, VideoRequest

ROOT = Path(__file__).resolve().parents[1]
COMFY_DIR = Path(os.environ.get("WANSTREAM_COMFYUI_DIR", ROOT / ".cache" / "comfyui"))
BASE = dict(preset="self-forcing-1.3b", prompt="a red fox", width=48, height=32, frames=21, seed=0)
RF, KREA, WAN21, I2V, TI2V = (
    "rolling-forcing-1.3b",
    "krea-realtime-14b",
    "wan2.1-t2v-1.3b",
    "wan2.1-i2v-14b-480p",
    "wan2.2-ti2v-5b",
)
A, C, N = "api", "cli", "node"
ALL = (A, C, N)
IMAGE = object()  # a start image of the video's size (a PNG for the CLI, a tensor elsewhere)

# name: (request fields over BASE (None drops a BASE field), interfaces, field, rule code)
CASES = {
    "width_negative": (dict(width=-48), ALL, "width", "size.multiple"),
    "width_zero": (dict(width=0), ALL, "width", "size.multiple"),
    "height_not_multiple": (dict(height=30), ALL, "height", "size.multiple"),
    "size_8x8": (dict(width=8, height=8), ALL, "width", "size.multiple"),
    "ti2v_needs_32": (dict(preset=TI2V, width=48, height=32, frames=9), ALL, "width", "size.multiple"),
    "frames_zero": (dict(frames=0), ALL, "frames", "frames.range"),
    "frames_negative": (dict(frames=-5), ALL, "frames", "frames.range"),
    "frames_not_4k_plus_1": (dict(frames=20), ALL, "frames", "frames.vae"),
    "chunks_zero": (dict(frames=None, chunks=0), (A, C), "chunks", "chunks.range"),
    "chunks_negative": (dict(frames=None, chunks=-2), ALL, "chunks", "chunks.range"),
    "chunks_whole_video": (dict(preset=WAN21, frames=None, chunks=2), ALL, "chunks", "chunks.whole_video"),
    "frames_and_chunks": (dict(chunks=2), (A, C), "chunks", "length.twice"),
    "rolling_forcing_whole_chunks": (dict(preset=RF, frames=25), ALL, "frames", "frames.whole_chunks"),
    "window_below_chunk": (dict(window=2), ALL, "window", "window.chunk"),
    "window_zero": (dict(window=0), ALL, "window", "window.chunk"),
    "sink_negative": (dict(sink=-2), ALL, "sink", "sink.range"),
    "window_whole_video": (dict(preset=WAN21, frames=5, window=9), ALL, "window", "window.whole_video"),
    "sink_whole_video": (dict(preset=WAN21, frames=5, sink=3), ALL, "sink", "sink.whole_video"),
    "window_rolling_forcing": (dict(preset=RF, window=9), ALL, "window", "window.rolling_forcing"),
    "sink_krea": (dict(preset=KREA, sink=2), ALL, "sink", "sink.kv_recompute"),
    "window_krea": (dict(preset=KREA, window=3), ALL, "window", "window.chunk"),
    "window_past_rope_table": (
        dict(frames=None, chunks=400, window=1100),
        ALL,
        "window",
        "window.rope_table",
    ),
    "rope_absolute_long": (
        dict(rope="absolute", frames=None, chunks=367),
        (A, C),
        "rope",
        "rope.absolute_length",
    ),
    "rope_choice": (dict(rope="sideways"), (A,), "rope", "rope.choice"),
    "rope_whole_video": (dict(preset=WAN21, frames=5, rope="relative"), (A, C), "rope", "rope.unused"),
    "switch_past_end": (dict(prompt_switches={9: "a wolf"}), ALL, "prompt_switches", "switches.past_end"),
    "switch_at_chunk_0": (dict(prompt_switches={0: "a wolf"}), (A, C), "prompt_switches", "switches.chunk0"),
    "switch_twice": (
        dict(prompt_switches=[(1, "a wolf"), (1, "a dog")]),
        (A, C),
        "prompt_switches",
        "switches.duplicate",
    ),  # fmt: skip
    "switch_empty_prompt": (dict(prompt_switches={1: " "}), ALL, "prompt_switches", "switches.empty"),
    "switch_whole_video": (
        dict(preset=WAN21, frames=5, prompt_switches={1: "a wolf"}),
        ALL,
        "prompt_switches",
        "switches.whole_video",
    ),  # fmt: skip
    "switch_rolling_forcing": (
        dict(preset=RF, prompt_switches={1: "a wolf"}),
        ALL,
        "prompt_switches",
        "switches.rolling_forcing",
    ),  # fmt: skip
    "prompt_empty": (dict(prompt=" "), ALL, "prompt", "prompt.empty"),
    "image_required": (dict(preset=I2V, frames=5), ALL, "image", "image.required"),
    "image_rolling_forcing": (dict(preset=RF, image=IMAGE), ALL, "image", "image.unsupported"),
    "image_krea": (dict(preset=KREA, image=IMAGE), ALL, "image", "image.unsupported"),
    "image_size": (dict(preset=I2V, frames=5, image=(64, 64)), (A, N), "width", "image.size"),
    "steps_few_step": (dict(steps=8), (A, C), "steps", "steps.few_step"),
    "steps_zero": (dict(preset=WAN21, frames=5, steps=0), (A, C), "steps", "steps.range"),
    "guidance_few_step": (dict(guidance=3.0), (A, C), "guidance", "guidance.few_step"),
    "guidance_negative": (dict(preset=WAN21, frames=5, guidance=-1.0), (A, C), "guidance", "guidance.range"),
    "negative_prompt_few_step": (
        dict(negative_prompt="blurry"),
        (A, C, N),
        "negative_prompt",
        "negative_prompt.unused",
    ),  # fmt: skip  (a warning in the node)
    "seed_negative": (dict(seed=-1), ALL, "seed", "seed.range"),
    "seed_too_big": (dict(seed=2**64), ALL, "seed", "seed.range"),
    "fps_zero": (dict(fps=0), (A, C), "fps", "fps.range"),
    "fps_negative": (dict(fps=-24), (A, C), "fps", "fps.range"),
    "output_extension": (dict(output="video.avi"), (A, C), "output", "output.extension"),
    "output_is_a_folder": (dict(output="."), (A, C), "output", "output.extension"),
    "output_under_a_file": (dict(output="a_file/sub/video.mp4"), (A, C), "output", "output.parent_file"),
    "output_folder_exists_as_dir": (dict(output="a_dir.mp4"), (A, C), "output", "output.folder"),
    "gpus_zero": (dict(gpus=0), (A, N), "gpus", "gpus.range"),
    "context_parallel_choice": (
        dict(gpus=2, context_parallel="tensor"),
        (A, N),
        "context_parallel",
        "context_parallel.choice",
    ),
    "context_parallel_one_process": (
        dict(context_parallel="ring"),
        (A, C),
        "context_parallel",
        "context_parallel.one_process",
    ),  # fmt: skip
    "context_parallel_missing": (dict(gpus=2), (A, C), "context_parallel", "context_parallel.missing"),
    "context_parallel_rolling_forcing": (
        dict(preset=RF, gpus=2, context_parallel="ring"),
        ALL,
        "context_parallel",
        "context_parallel.rolling_forcing",
    ),  # fmt: skip
    "gpus_tokens": (dict(gpus=7, context_parallel="ring"), ALL, "gpus", "gpus.tokens"),
    "ulysses_heads": (dict(gpus=2, context_parallel="ulysses"), (N,), "gpus", "gpus.heads"),
    "endless_whole_video": (
        dict(preset=WAN21, frames=None, endless=True),
        (A,),
        "endless",
        "endless.whole_video",
    ),
    "seed_and_noise": (dict(seed=3, noise=lambda i: None), (A,), "seed", "seed.with_noise"),
    "preset_unknown": (dict(preset="self-forcing-13b"), (A,), "preset", "preset.unknown"),
}
PATH_FIELDS = ("output",)


def _request_fields(case: str, tmp: Path, image_as: str) -> dict:
    over, _, _, _ = CASES[case]
    fields = {**BASE, **over}
    fields = {k: v for k, v in fields.items() if v is not None}
    if "output" in fields:
        fields["output"] = str(tmp / fields["output"])
    image = fields.get("image")
    if image is IMAGE or isinstance(image, tuple):
        w, h = image if isinstance(image, tuple) else (fields["width"], fields["height"])
        fields["image"] = str(tmp / "start.png") if image_as == "file" else torch.zeros(1, 3, h, w)
    return fields


def _canonical(message: str, words) -> str:
    """``message`` with the interface's prefix dropped and its words mapped back to field names."""
    assert message.startswith(words.prefix), message
    text = message[len(words.prefix) :]
    vocabulary = {k: v for k, v in words.vocabulary().items() if v != k}
    for key, word in sorted(vocabulary.items(), key=lambda kv: -len(kv[1])):
        text = text.replace(word, f"{{{key}}}" if key in words.hints else key)
    return text


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    d = tmp_path_factory.mktemp("requests")
    from PIL import Image

    Image.new("RGB", (48, 32), (90, 120, 200)).save(d / "start.png")
    (d / "a_file").write_text("not a folder")
    (d / "a_dir.mp4").mkdir()
    (d / "empty_models").mkdir()
    return d


def _listing(tmp: Path) -> set:
    return {p.relative_to(tmp) for p in tmp.rglob("*")}


# -- the Python API ------------------------------------------------------------------------------------
class _Touched(Exception):
    """A model file, a loader or the rollout was reached: the request was not refused first."""


@pytest.fixture
def untouchable(monkeypatch):
    """Every way to a model file or a rollout fails the test."""
    import wan_core.checkpoint as checkpoint
    import wan_core.dit.loader as dit_loader
    import wan_core.rollout.loading as loading
    from nodes import multi_gpu
    from wan_core.rollout.pipeline import StreamingPipeline

    def touched(what):
        def fail(*a, **k):
            raise _Touched(what)

        return fail

    for obj, name in [
        (checkpoint, "open_checkpoint"), (loading, "resolve_files"), (loading, "build_pipeline"),
        (loading, "encode_text"), (dit_loader, "load_dit"), (StreamingPipeline, "__init__"),
        (StreamingPipeline, "initialize_cache"), (multi_gpu, "_get_pool"),
    ]:  # fmt: skip
        monkeypatch.setattr(obj, name, touched(f"{name}"))


def _api_error(case: str, tmp: Path) -> RequestError:
    from wan_core.api import generate_video

    fields = _request_fields(case, tmp, image_as="tensor")
    fields.setdefault("output", str(tmp / "out" / "sub" / "video.mp4"))
    with pytest.raises(RequestError) as info:
        generate_video(VideoRequest(**fields), models_dir=tmp / "models", say=lambda *a, **k: None)
    return info.value


@pytest.mark.parametrize("case", sorted(c for c in CASES if A in CASES[c][1]))
def test_python_api_refuses_before_any_work(case, tmp, untouchable, models):
    before = _listing(tmp)
    err = _api_error(case, tmp)
    _, _, field, code = CASES[case]
    assert (err.field, err.code) == (field, code), str(err)
    assert str(err).startswith(PYTHON_WORDS[field]) and ";" in str(err)
    assert _listing(tmp) == before  # no output file or folder


# -- the command line ----------------------------------------------------------------------------------
CLI_FLAGS = {k: v for k, v in CLI_WORDS.names.items() if v.startswith("--")}


def _cli_command(case: str, tmp: Path) -> tuple[list[str], dict]:
    fields = _request_fields(case, tmp, image_as="file")
    fields.setdefault("output", str(tmp / "out" / "sub" / "video.mp4"))
    args = [sys.executable, "-m", "wan_core", "generate", "--models-dir", str(tmp / "empty_models")]
    for name, value in fields.items():
        if name == "prompt_switches":
            pairs = value.items() if isinstance(value, dict) else value
            for chunk, text in pairs:
                args += ["--prompt-switch", f"{chunk}:{text}"]
        elif name in CLI_FLAGS:
            args += [CLI_FLAGS[name], str(value)]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "WORLD_SIZE": str(fields.get("gpus", 1)),
        "OMP_NUM_THREADS": "1",
    }
    return args, env


@pytest.fixture(scope="module")
def cli_runs(tmp):
    """Every CLI case as a subprocess (three at a time); case -> (returncode, stderr, listing changed)."""
    cases = [c for c in sorted(CASES) if C in CASES[c][1]] + ["valid"]
    before = _listing(tmp)

    def run(case):
        if case == "valid":
            args = [sys.executable, "-m", "wan_core", "generate", "--models-dir", str(tmp / "empty_models"),
                    "--preset", "self-forcing-1.3b", "--prompt", "a fox", "--out", str(tmp / "out" / "v.mp4")]  # fmt: skip
            env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        else:
            args, env = _cli_command(case, tmp)
        r = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
        return case, (r.returncode, r.stderr)

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = dict(pool.map(run, cases))
    return results, _listing(tmp) == before


@pytest.mark.timeout(900)
@pytest.mark.parametrize("case", sorted(c for c in CASES if C in CASES[c][1]))
def test_cli_gives_the_same_message_as_the_api(case, tmp, cli_runs, untouchable, models):
    results, unchanged = cli_runs
    rc, stderr = results[case]
    api = _api_error(case, tmp)
    assert rc == 2, stderr
    assert stderr.strip().splitlines() == [f"error: {api.render(CLI_WORDS)}"]  # one line, no file error
    assert _canonical(stderr.strip().removeprefix("error: "), CLI_WORDS) == _canonical(str(api), PYTHON_WORDS)
    assert unchanged  # no output file or folder, for any case


@pytest.mark.timeout(900)
def test_cli_valid_request_gets_past_the_validation(cli_runs):
    rc, stderr = cli_runs[0]["valid"]
    assert rc == 2 and "is not in" in stderr and "self_forcing_dmd.pt" in stderr  # the files step


# -- the Streaming AR Sampler node ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def models(tmp):
    mp = pytest.MonkeyPatch()
    comfy_runtime_outside(mp, QuietProgress)
    made = make_tiny_models(tmp / "models", families=("t2v",))
    dit = core_bridge.load_dit(
        str(tmp / "models" / made["t2v"]["files"]["dit"]), "auto", "auto", False, False
    )
    yield dit
    mp.undo()


@pytest.fixture(scope="module")
def sampler_execute():
    """``WanStreamARSampler.execute`` (ComfyUI's ``comfy_api`` from the test ComfyUI; its modules are
    dropped again afterwards, so later tests see a process without ComfyUI)."""
    before = set(sys.modules)
    added = str(COMFY_DIR) not in sys.path and COMFY_DIR.is_dir()
    if added:
        sys.path.append(str(COMFY_DIR))
    try:
        from nodes.sampler import WanStreamARSampler

        run = WanStreamARSampler.execute
    except ImportError:
        run = None  # no ComfyUI here: the bridge entry point the node's execute calls
    yield run
    for name in set(sys.modules) - before:
        if name.split(".")[0] in (
            "comfy",
            "comfy_api",
            "comfy_execution",
            "folder_paths",
            "protocol",
        ) or name in (
            "nodes.sampler",
            "nodes.socket_types",
        ):
            del sys.modules[name]
    if added:
        sys.path.remove(str(COMFY_DIR))


def _node_call(case: str, tmp: Path, dit, execute):
    f = _request_fields(case, tmp, image_as="tensor")
    g = torch.Generator().manual_seed(1)
    segments = [PromptSegment(0, f["prompt"], torch.randn(1, 4, TEXT_DIM, generator=g))]
    switches = f.get("prompt_switches") or {}
    for chunk, text in sorted(switches.items() if isinstance(switches, dict) else switches):
        segments.append(PromptSegment(chunk, text, torch.randn(1, 4, TEXT_DIM, generator=g)))
    image = None
    if "image" in f:
        img = f["image"]
        vae = SimpleNamespace(resident=None)
        image = ImageCondition(width=img.shape[-1], height=img.shape[-2], image=img, vae=vae)
    cond = StreamConditioning(
        segments=tuple(segments), image=image, negative_text=f.get("negative_prompt", "")
    )
    inputs = dict(
        width=f["width"], height=f["height"], frames=f.get("frames", 1), preset=f["preset"], seed=f["seed"],
        window_frames=f.get("window", -1), sink_frames=f.get("sink", -1), chunks=f.get("chunks", 0),
        gpus=f.get("gpus", 1), context_parallel=f.get("context_parallel", "ulysses"),
    )  # fmt: skip
    if execute is not None:
        return lambda: execute(dit, cond, preview_vae=None, dit_low_noise=None, **inputs)
    return lambda: core_bridge.sample(dit, cond, **inputs)


@pytest.mark.parametrize("case", sorted(c for c in CASES if N in CASES[c][1]))
def test_sampler_node_gives_the_same_message_as_the_api(
    case, tmp, models, sampler_execute, untouchable, caplog
):
    if A in CASES[case][1]:
        api = _api_error(case, tmp)
    else:  # a rule that needs the loaded DiT (its heads): the request validated against its config
        with pytest.raises(RequestError) as info:
            VideoRequest(**_request_fields(case, tmp, "tensor")).validate(dit_config=models.config)
        api = info.value
    call = _node_call(case, tmp, models, sampler_execute)
    warned = api.code in SAMPLER_WORDS.warn_only
    with caplog.at_level(logging.WARNING, logger="wan_stream"):
        with pytest.raises(_Touched if warned else RequestError) as info:
            call()
    message = caplog.messages[-1] if warned else str(info.value)
    assert message == api.render(SAMPLER_WORDS)
    assert _canonical(message, SAMPLER_WORDS) == _canonical(str(api), PYTHON_WORDS)
    if not warned:
        assert (info.value.field, info.value.code) == (api.field, api.code)
    assert models.warm.pipeline is None  # no rollout was built or kept


# -- valid requests ----------------------------------------------------------------------------------
@pytest.mark.parametrize("case", sorted(c for c in CASES if A in CASES[c][1]))
def test_the_suggested_value_is_valid(case, tmp):
    fields = _request_fields(case, tmp, image_as="tensor")
    with pytest.raises(RequestError) as info:
        VideoRequest(**fields).validate()
    err = info.value
    if err.valid is None:  # what to do, not a value
        return
    if err.field == "prompt_switches":  # the valid chunk of the switch
        switches = dict(fields["prompt_switches"])
        fields["prompt_switches"] = {**{k: v for k, v in switches.items() if k != err.value}, err.valid: "x"}
        fixed = fields
        try:
            VideoRequest(**fixed).validate()
        except RequestError as again:
            assert (again.field, again.code) != (err.field, err.code), (str(err), str(again))
        return
    if not isinstance(err.valid, (int, float, str)) or err.field not in {
        f.name for f in dataclasses.fields(VideoRequest)
    }:
        return
    fixed = {**fields, err.field: err.valid}
    if err.code == "size.multiple":
        fixed = {**fixed, "width": int(str(err).rsplit("size ", 1)[1].split("x")[0])}
        fixed["height"] = int(str(err).rsplit("size ", 1)[1].split("x")[1].rstrip(")"))
    try:
        VideoRequest(**fixed).validate()
    except RequestError as again:
        assert again.field != err.field or again.code != err.code, (str(err), str(again))


def test_valid_requests_normalize():
    v = VideoRequest("self-forcing-1.3b", prompt="x", width=48, height=32, frames=21).validate()
    assert (v.num_latent_frames, v.num_chunks, v.rope_mode, v.fps, v.seed) == (6, 2, "absolute", 16, 0)
    assert v.length == {"num_frames": 21, "num_chunks": None} and v.warnings == ()
    v = VideoRequest("self-forcing-1.3b", chunks=367).validate()
    assert (v.num_frames, v.num_latent_frames, v.rope_mode) == (4401, 1101, "relative")
    assert v.length == {"num_frames": None, "num_chunks": 367}
    v = VideoRequest("longlive-1.3b", prompt_switches={7: "b", 2: "a"}, window=12, sink=0).validate()
    assert list(v.prompt_switches) == [2, 7] and v.num_frames == 477 and v.num_chunks == 40
    assert (v.preset.window_frames, v.preset.sink_frames) == (12, 0)
    assert v.overrides == (("sink_frames", 0), ("window_frames", 12))
    v = VideoRequest("rolling-forcing-1.3b").validate()
    assert (v.num_chunks, v.rope_mode) == (7, None)
    v = VideoRequest("wan2.1-t2v-1.3b", steps=7, guidance=3.0).validate()
    assert (v.width, v.height, v.num_frames, v.num_chunks) == (832, 480, 81, 1)
    assert v.preset.euler.num_steps == 7 and v.preset.euler.shift == 5.0 and v.preset.guidance_scale == 3.0
    v = VideoRequest("wan2.2-t2v-a14b", guidance=2.0).validate()
    assert v.preset.guidance_scale == v.preset.guidance_scale_high == 2.0
    v = VideoRequest("wan2.2-ti2v-5b", image=torch.zeros(1, 3, 704, 1280)).validate()
    assert (v.width, v.height, v.fps, v.num_latent_frames) == (1280, 704, 24, 31)
    v = VideoRequest("self-forcing-1.3b", endless=True, gpus=4, context_parallel="ulysses").validate()
    assert (v.num_frames, v.num_chunks, v.rope_mode, v.gpus) == (None, None, "relative", 4)
    cfg = SimpleNamespace(num_heads=12, rope_max_positions=1024)
    with pytest.raises(RequestError, match="nearest valid gpus: 4, or context_parallel 'ring'"):
        VideoRequest("self-forcing-1.3b", gpus=5, context_parallel="ulysses").validate(dit_config=cfg)


def test_nearest_sizes_round_to_the_nearest_multiple_never_to_zero():
    def suggestion(**kw):
        with pytest.raises(RequestError) as info:
            VideoRequest("self-forcing-1.3b", **kw).validate()
        return str(info.value).rsplit("size ", 1)[1].rstrip(")")

    assert suggestion(width=48, height=30) == "48x32"
    assert suggestion(width=8, height=8) == "16x16"
    assert suggestion(width=-48, height=480) == "16x480"
    with pytest.raises(RequestError, match=r"nearest valid width: 32 \(size 32x704\)"):
        VideoRequest("wan2.2-ti2v-5b", width=48).validate()


def test_a_request_error_survives_pickling():
    import pickle

    with pytest.raises(RequestError) as info:
        VideoRequest("self-forcing-1.3b", width=30).validate(words=CLI_WORDS)
    again = pickle.loads(pickle.dumps(info.value))
    assert str(again) == str(info.value) and (again.field, again.valid) == ("width", 32)


def test_the_image_size_suggestion_is_a_valid_size_itself():
    """A 500x300 start image with the video at 832x480: the suggestion is rounded to the preset's
    stride x patch (16), never the image's own invalid 500, and never 0."""
    with pytest.raises(RequestError) as info:
        VideoRequest(I2V, frames=5, image=torch.zeros(1, 3, 300, 500), width=832, height=480).validate()
    err = info.value
    assert (err.field, err.code, err.valid) == ("width", "image.size", 496)
    assert "resize the image to 496x304" in str(err) and "use 496" in str(err)
    image = torch.zeros(1, 3, 304, 496)
    VideoRequest(I2V, frames=5, image=image, width=err.valid, height=304).validate()  # a valid size
    with pytest.raises(RequestError) as info:
        VideoRequest(I2V, frames=5, image=torch.zeros(1, 3, 480, 5), width=832, height=480).validate()
    assert info.value.valid == 16
    with pytest.raises(RequestError) as info:  # a valid image size: the suggestion is that size, as before
        VideoRequest(I2V, frames=5, image=torch.zeros(1, 3, 480, 640), width=832, height=480).validate()
    assert info.value.valid == 640 and "no valid size" not in str(info.value)
