"""Multi-GPU from one process (ComfyUI): N local workers in a ``torch.distributed`` group.

``ContextParallelWorkerPool(world_size)`` starts ``world_size`` processes with ``torch.multiprocessing``
(spawn). They join one process group (NCCL on GPUs, one GPU per rank; gloo on CPU) over a free port on
127.0.0.1 and wait for jobs. ``pool.run(job, *args)`` runs ``job(ctx, state, *args)`` -- a generator --
on every rank and streams back what rank 0 yields, through a queue, as it is produced. ``state`` is a
dict kept per worker between jobs (loaded models stay loaded).

``rollout_job`` + ``RolloutSpec`` is the streaming rollout: each rank loads the models (from the file
paths in the spec; cached between runs), wraps the pipeline for context parallelism
(``parallelize_pipeline``), and rank 0 hands back every chunk (normalized latents, and decoded frames
when a decoder is set) as soon as it is done::

    with ContextParallelWorkerPool(2) as pool:            # default device: cuda:0..N-1, else CPU
        for chunk in pool.run(rollout_job, spec):
            show(chunk["frames"])                         # [B, 3, f, H, W] in [-1, 1]

A failure on any rank ends the job with a ``RuntimeError`` carrying that rank's traceback, and stops
the workers (a rank that failed mid-collective would leave the others waiting). Leaving the loop
early also stops them; make a new pool for the next run. The launching script must keep its entry
point under ``if __name__ == "__main__":`` (spawned workers re-import it, as Python's spawn does).
"""

from __future__ import annotations

import dataclasses
import queue
import sys
import traceback
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import torch
import torch.multiprocessing as mp

from ..rollout.presets import get_preset
from ..rollout.request import VideoRequest
from .group import free_port, init_local, shutdown

__all__ = ["ContextParallelWorkerPool", "RolloutSpec", "rollout_job"]


def _to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


@contextmanager
def _main_not_reimported():
    """Spawned children import no ``__main__`` script while this is active.

    Python's spawn re-runs the parent's main script in each child (as ``__mp_main__``). Inside an
    application such as ComfyUI that script starts the whole app (argument parsing, custom-node
    start-up scripts, CUDA initialisation), so the pool hides it while it starts its workers; the
    worker code is imported by module name (``wan_core.parallel.worker_pool``) instead.
    """
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved = {k: getattr(main, k) for k in ("__spec__", "__file__") if hasattr(main, k)}
    try:
        main.__spec__ = None
        if "__file__" in saved:
            del main.__file__
        yield
    finally:
        for k, v in saved.items():
            setattr(main, k, v)


def _next_task(tasks):
    """The next job, or None when told to stop or when the process that started the pool is gone
    (a killed ComfyUI must not leave its workers waiting forever)."""
    import multiprocessing

    parent = multiprocessing.parent_process()
    while True:
        try:
            return tasks.get(timeout=1.0)
        except queue.Empty:
            if parent is not None and not parent.is_alive():
                return None


def _worker_main(rank, world_size, port, backend, device, tasks, results):
    try:
        ctx = init_local(rank, world_size, port, backend=backend, device=device)
        torch.set_num_threads(max(1, torch.get_num_threads() // world_size))
    except BaseException:
        results.put(("error", None, f"rank {rank} could not start:\n{traceback.format_exc()}"))
        return
    results.put(("ready", None, rank))
    state: dict = {}
    try:
        while True:
            task = _next_task(tasks)
            if task is None:
                break
            job_id, fn, args, kwargs = task
            try:
                for item in fn(ctx, state, *args, **kwargs):
                    if ctx.is_main:
                        results.put(("item", job_id, _to_cpu(item)))
                results.put(("done", job_id, rank))
            except BaseException:
                results.put(("error", job_id, f"rank {rank}:\n{traceback.format_exc()}"))
    finally:
        state.clear()
        shutdown()


class ContextParallelWorkerPool:
    """``world_size`` local worker processes in one ``torch.distributed`` group (see module docstring).

    ``device``: ``"cuda"`` (rank r on ``cuda:r``, NCCL) or ``"cpu"`` (gloo); default CUDA when it has
    at least ``world_size`` GPUs. ``start_timeout``: seconds to wait for the group to form.
    ``import_main``: False when the host's main script must not run again in the workers (an
    application such as ComfyUI: jobs and their arguments must then be importable by module name).
    """

    def __init__(
        self,
        world_size: int,
        device: str | None = None,
        backend: str | None = None,
        start_timeout: float = 300.0,
        import_main: bool = True,
    ):
        if world_size < 1:
            raise ValueError(f"world_size must be >= 1, got {world_size}")
        if device is None:
            device = (
                "cuda" if torch.cuda.is_available() and torch.cuda.device_count() >= world_size else "cpu"
            )
        if torch.device(device).type == "cuda" and torch.cuda.device_count() < world_size:
            raise ValueError(
                f"{world_size} CUDA workers need {world_size} GPUs, this machine has "
                f"{torch.cuda.device_count()}: use fewer workers (or device='cpu' with gloo)"
            )
        self.world_size = world_size
        self.device = device
        spawn = mp.get_context("spawn")
        self._tasks = [spawn.Queue() for _ in range(world_size)]
        self._results = spawn.Queue()
        port = free_port()
        self._procs = [
            spawn.Process(
                target=_worker_main,
                args=(r, world_size, port, backend, device, self._tasks[r], self._results),
                daemon=True,
                name=f"wan-cp-rank{r}",
            )
            for r in range(world_size)
        ]
        with _main_not_reimported() if not import_main else nullcontext():
            for p in self._procs:
                p.start()
        self._job = 0
        self._closed = False
        ready = 0
        while ready < world_size:
            kind, _, payload = self._get(start_timeout, "to start")
            if kind == "error":
                self.terminate()
                raise RuntimeError(f"a context-parallel worker failed to start: {payload}")
            ready += kind == "ready"

    @property
    def closed(self) -> bool:
        """True once closed or terminated (a new pool is needed then)."""
        return self._closed

    # -- plumbing -------------------------------------------------------------------------------------
    def _get(self, timeout: float | None, what: str):
        """Next message; fails if a worker died or nothing came within ``timeout`` seconds."""
        waited = 0.0
        while True:
            try:
                return self._results.get(timeout=1.0)
            except queue.Empty:
                waited += 1.0
                dead = [p.name for p in self._procs if not p.is_alive()]
                if dead:
                    self.terminate()
                    raise RuntimeError(
                        f"context-parallel worker(s) {dead} exited while waiting {what}"
                    ) from None
                if timeout is not None and waited >= timeout:
                    self.terminate()
                    raise TimeoutError(
                        f"context-parallel workers did not answer {what} in {timeout:.0f} s"
                    ) from None

    def run(self, job, *args, timeout: float | None = None, **kwargs):
        """Run ``job(ctx, state, *args, **kwargs)`` (a generator, importable by name) on every rank;
        yields rank 0's items as they arrive. ``timeout``: max seconds between two messages."""
        if self._closed:
            raise RuntimeError("this worker pool is closed; create a new ContextParallelWorkerPool")
        self._job += 1
        job_id = self._job
        for q in self._tasks:
            q.put((job_id, job, args, kwargs))
        done = 0
        finished = False
        try:
            while done < self.world_size:
                kind, jid, payload = self._get(timeout, f"for job {job_id}")
                if jid != job_id:
                    continue
                if kind == "error":
                    self.terminate()
                    raise RuntimeError(f"context-parallel job failed on {payload}")
                if kind == "done":
                    done += 1
                elif kind == "item":
                    yield payload
            finished = True
        finally:
            if not finished:  # abandoned mid-job (interrupt): the ranks may be inside a collective
                self.terminate()

    def close(self, timeout: float = 30.0) -> None:
        """Let the workers finish and leave the group."""
        if self._closed:
            return
        self._closed = True
        for q in self._tasks:
            q.put(None)
        for p in self._procs:
            p.join(timeout)
        self.terminate()

    def terminate(self) -> None:
        """Stop the workers now (their group and loaded models go away)."""
        self._closed = True
        for p in self._procs:
            if p.is_alive():
                p.terminate()
        for p in self._procs:
            p.join(5.0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# -- the streaming rollout as a job ---------------------------------------------------------------------
@dataclass(frozen=True)
class RolloutSpec:
    """One video for the workers: which models (file paths + load settings) and what to generate.

    ``prompt``: umT5 embeddings ``[B, L, 4096]`` (encode the text in the calling process; the workers
    load no text encoder). ``files``: role -> path as from ``wan_core.rollout.loading.resolve_files``.
    ``load``: optional picklable ``load(ctx, spec) -> StreamingPipeline`` replacing the file loading.
    """

    preset: str
    files: dict = field(default_factory=dict)
    prompt: torch.Tensor | None = None
    context_parallel: str = "ulysses"
    height: int | None = None
    width: int | None = None
    num_frames: int | None = None
    seed: int = 0
    negative_prompt: torch.Tensor | None = None  # embeddings, CFG presets (default: the preset's text)
    image: torch.Tensor | None = None  # [B, 3, H, W] in [-1, 1]
    prompt_switches: dict | None = None  # chunk -> embeddings
    dtype: str | None = None  # "bfloat16" | "float16" | "float32"; default bf16 on CUDA, fp32 on CPU
    attention: str = "auto"
    decoder: str = "vae"  # "vae" | "taehv" | "none" (latents only)
    pipeline_kw: dict = field(default_factory=dict)  # rope, cache_dtype, cuda_graphs, compile, ...
    load: object | None = None
    num_chunks: int | None = None  # AR presets: this many chunks instead of num_frames
    clip_features: torch.Tensor | None = None  # [B, 257, 1280] precomputed CLIP tokens (Wan2.1 I2V)
    # the video as one request (prompts as embeddings); replaces the loose fields prompt .. num_chunks
    request: VideoRequest | None = None

    def video_request(self) -> VideoRequest:
        """The video to render: ``request``, or the loose fields as a request (``None`` = the
        preset's default, as everywhere)."""
        if self.request is not None:
            return self.request
        return VideoRequest(
            self.preset,
            prompt=self.prompt,
            width=self.width,
            height=self.height,
            frames=self.num_frames,
            chunks=self.num_chunks,
            seed=self.seed,
            rope=self.pipeline_kw.get("rope", "auto"),
            prompt_switches=self.prompt_switches,
            image=self.image,
            negative_prompt=self.negative_prompt,
        )

    def model_key(self) -> tuple:
        return (
            self.preset,
            tuple(sorted((k, str(v)) for k, v in self.files.items())),
            self.context_parallel,
            self.dtype,
            self.attention,
            self.decoder,
            tuple(sorted(self.pipeline_kw.items())),
            self.load,
        )


def _load_from_files(ctx, spec: RolloutSpec):
    from ..rollout.loading import build_pipeline
    from ..rollout.presets import get_preset

    dtype = getattr(torch, spec.dtype) if spec.dtype else None
    return build_pipeline(
        get_preset(spec.preset),
        {k: v for k, v in spec.files.items()},
        device=ctx.device,
        dtype=dtype,
        decoder=spec.decoder if ctx.is_main else "none",
        attention=spec.attention,
        **spec.pipeline_kw,
    )


def _dit_config(dit):
    """The config of a DiT (the first expert's for a dual-expert pair)."""
    experts = dit.experts() if hasattr(dit, "experts") else (dit,)
    return getattr(experts[0], "config", None)


def rollout_job(ctx, state: dict, spec: RolloutSpec):
    """Job for ``ContextParallelWorkerPool.run``: yields per chunk (on rank 0) ``{"index",
    "frame_start", "latents" [B, C, n, h, w], "frames" [B, 3, f, H, W] or None, "num_chunks",
    "steps_per_chunk"}``."""
    from .parallelize import parallelize_pipeline

    key = spec.model_key()
    if state.get("key") != key:
        state.clear()  # one set of models per worker at a time
        pipe = (spec.load or _load_from_files)(ctx, spec)
        state["pipe"] = parallelize_pipeline(pipe, spec.context_parallel, ctx)
        state["key"] = key
    pipe = state["pipe"]
    # the same validation as the caller's, against this worker's process group and loaded DiT
    request = dataclasses.replace(
        spec.video_request(),
        gpus=ctx.world_size,
        context_parallel=spec.context_parallel if ctx.world_size > 1 else None,
    )
    valid = request.validate(get_preset(spec.preset), dit_config=_dit_config(pipe.dit), check_output=False)
    dev = ctx.device
    if spec.clip_features is not None:  # per job: the pipeline is kept between jobs
        features = spec.clip_features.to(dev)
        pipe.clip_vision = lambda _image: features
    negative = valid.negative_prompt
    pipe.initialize_cache(
        valid.prompt.to(dev),
        None if valid.image is None else valid.image.to(dev),
        height=valid.height,
        width=valid.width,
        **valid.length,
        seed=valid.seed,
        negative_prompt=None if negative is None else negative.to(dev),
        prompt_switches={c: e.to(dev) for c, e in valid.prompt_switches.items()},
        **({} if valid.noise is None else {"noise": valid.noise}),
    )
    steps_per_chunk = pipe.total_steps // pipe.num_chunks
    for i in range(pipe.num_chunks):
        r = pipe.generate(i)
        if ctx.is_main:
            yield {
                "index": r.index,
                "frame_start": r.frame_start,
                "latents": r.latents,
                "frames": r.frames,
                "num_chunks": pipe.num_chunks,
                "steps_per_chunk": steps_per_chunk,
            }
        pipe.finalize(i)
