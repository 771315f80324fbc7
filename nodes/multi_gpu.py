"""The sampler's multi-GPU path: the rollout runs on N local worker processes (context parallelism).

``rollout_on_workers`` hands the video to a ``wan_core.parallel.ContextParallelWorkerPool`` of
``gpus`` processes (one GPU each, NCCL; gloo on CPU) and yields rank 0's chunks as they finish. The
pool is kept between jobs (its workers keep the models loaded: a new DiT file, precision, LoRA,
preset window or image VAE reloads them); it is closed and dropped on any error or interrupt (a rank
stopped mid-collective cannot be reused). The workers load the models from the files the ComfyUI
loaders used (``PipelineFromFiles``), take the UMT5 embeddings and CLIP features from this process,
and return normalized latents only (no decoding in the workers).
"""

from __future__ import annotations

import dataclasses
import logging
import threading

import torch

from .payloads import LoadedDiT, StreamConditioning

log = logging.getLogger("wan_stream")

_POOLS: dict = {}  # (gpus, device type) -> ContextParallelWorkerPool
_POOLS_LOCK = threading.Lock()


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _dit_file(dit: LoadedDiT):
    from wan_core.parallel.model_loader import DiTFile

    return DiTFile(
        path=dit.path,
        dtype=_dtype_name(dit.options.dtype),
        attention=dit.options.attention,
        lora_path=dit.lora_path,
        lora_strength=dit.lora_strength,
        fp8_linear=dit.options.fp8_linear,
    )


def build_spec(dit: LoadedDiT, cond: StreamConditioning, valid, *, dit_low_noise: LoadedDiT | None = None):
    """The ``RolloutSpec`` of one validated sampler request (``ValidatedRequest``): the request with
    its prompts as embeddings and its image on the CPU (the workers validate it again)."""
    from wan_core.parallel.model_loader import PipelineFromFiles
    from wan_core.parallel.worker_pool import RolloutSpec

    image = cond.image
    load = PipelineFromFiles(
        dit=_dit_file(dit),
        low_noise=_dit_file(dit_low_noise) if dit_low_noise is not None else None,
        vae_path=image.vae.path if image is not None else None,
        vae_dtype=_dtype_name(image.vae.dtype) if image is not None else "float32",
        preset_overrides=valid.overrides,
        cuda_graphs=dit.options.cuda_graphs,
        compile=dit.options.compile,
    )
    first = cond.segments[0]
    negative = first.negative_context
    request = dataclasses.replace(
        valid.request,
        prompt=first.context.float().cpu(),
        prompt_switches={s.start_chunk: s.context.float().cpu() for s in cond.segments[1:]},
        # the embeddings of the preset's default negative prompt when none was typed (CFG presets only)
        negative_prompt=None
        if negative is None or valid.preset.is_autoregressive
        else negative.float().cpu(),
        image=image.image.float().cpu() if image is not None else None,
    )
    return RolloutSpec(
        valid.preset.name,
        context_parallel=valid.context_parallel,
        dtype=_dtype_name(dit.options.dtype),
        attention=dit.options.attention,
        decoder="none",
        load=load,
        clip_features=image.clip_features.float().cpu()
        if image is not None and image.clip_features is not None
        else None,
        request=request,
    )


def pool_device(gpus: int, device: torch.device) -> str:
    """``"cuda"`` when ComfyUI runs on a GPU (then ``gpus`` GPUs must exist), else ``"cpu"`` (gloo)."""
    if device.type != "cuda":
        return "cpu"
    have = torch.cuda.device_count()
    if gpus > have:
        raise ValueError(
            f"Streaming AR Sampler: gpus is {gpus}, but this machine has {have} CUDA GPU(s). Set gpus to "
            f"{have} or less (1 = in-process, the default)."
        )
    return "cuda"


def _get_pool(gpus: int, device: str):
    from wan_core.parallel.worker_pool import ContextParallelWorkerPool

    key = (gpus, device)
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is not None and pool.closed:
            pool = None
        if pool is None:
            log.info("Streaming AR Sampler: starting %d context-parallel workers on %s", gpus, device)
            pool = ContextParallelWorkerPool(gpus, device=device, import_main=False)
            _POOLS[key] = pool
        return pool


def drop_pool(gpus: int, device: str) -> None:
    """Stop the cached pool of this size (its workers and their loaded models go away)."""
    with _POOLS_LOCK:
        pool = _POOLS.pop((gpus, device), None)
    if pool is not None:
        pool.terminate()


def close_all_pools() -> None:
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for pool in pools:
        pool.close()


def rollout_on_workers(spec, gpus: int, device: str):
    """Yields rank 0's chunk dicts (``wan_core.parallel.worker_pool.rollout_job``). An error, or the
    caller closing the generator early (interrupt), terminates and drops the pool."""
    from wan_core.parallel.worker_pool import rollout_job

    pool = _get_pool(gpus, device)
    chunks = pool.run(rollout_job, spec)
    try:
        yield from chunks
    except BaseException:
        chunks.close()
        drop_pool(gpus, device)
        raise
