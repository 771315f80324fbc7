"""In the real server: the Streaming AR Sampler keeps its rollout (KV cache, CUDA graphs on a GPU) with
the loaded DiT between jobs, and ComfyUI's own "free models" (``POST /free``) unloads it through
ComfyUI's model management; the next job builds it again and succeeds."""

import time

from workflow_files import tiny_api_prompt, with_start_image

KEPT = "starting on the kept rollout"
UNLOADED = "ComfyUI unloaded the kept rollout"


def _run(comfy, seed):
    prompt = tiny_api_prompt("t2v_self_forcing_1.3b", **{"6": {"seed": seed, "width": 96, "height": 64}})
    entry = comfy.wait(comfy.queue(prompt), timeout=240)
    assert entry["status"]["status_str"] == "success", entry["status"]


def _log(server) -> str:
    return server.log_path.read_text(errors="replace")


def _free_models(comfy, server) -> None:
    """``POST /free`` (unload models) and wait until the server has unloaded the kept rollout."""
    before = len(_log(server))
    comfy.request("POST", "/free", {"unload_models": True})
    deadline = time.monotonic() + 60
    while UNLOADED not in _log(server)[before:]:
        assert time.monotonic() < deadline, f"the kept rollout was not unloaded:\n{server.log_tail()}"
        time.sleep(0.25)


def test_rollout_kept_between_jobs_and_unloaded_by_comfyui(comfy, comfy_server):
    start = len(_log(comfy_server))
    _run(comfy, 7001)  # another size than the other tests' jobs: a cold pipeline or a resized cache
    _run(comfy, 7002)  # same size, another seed (the sampler runs again)
    assert KEPT in _log(comfy_server)[start:], comfy_server.log_tail()

    _free_models(comfy, comfy_server)
    after_free = len(_log(comfy_server))
    _run(comfy, 7003)
    assert KEPT not in _log(comfy_server)[after_free:]  # built again
    _run(comfy, 7004)
    assert KEPT in _log(comfy_server)[after_free:]
    assert comfy_server.is_up()


def test_a_kept_job_makes_the_same_video_as_a_cold_one(comfy, comfy_server):
    """T2V and T2V from a start image: seed A cold (after POST /free), seed B, seed A again on the kept
    rollout -- the preview frames of the two seed-A jobs are the same. (Seed B between them: the same
    inputs twice in a row would be served from ComfyUI's cache without running the sampler.)"""
    for make in (lambda seed: tiny_api_prompt("t2v_self_forcing_1.3b", **{"6": {"seed": seed}}),
                 lambda seed: with_start_image(tiny_api_prompt("t2v_self_forcing_1.3b", **{"6": {"seed": seed}}))):  # fmt: skip
        comfy.run_for_previews(make(8102))  # a kept rollout, for the /free below to unload (and log)
        _free_models(comfy, comfy_server)
        cold = comfy.run_for_previews(make(8101))
        comfy.run_for_previews(make(8102))
        start = len(_log(comfy_server))
        kept = comfy.run_for_previews(make(8101))
        assert KEPT in _log(comfy_server)[start:]
        assert len(kept) == len(cold) == 2 and kept == cold
