"""The one place where the nodes call ``wan_core`` (imported lazily, inside each call).

Every function takes and returns the typed ``payloads`` objects; the nodes stay declarations.
Conventions at this boundary: ComfyUI IMAGE ``[N, H, W, 3]`` in [0, 1]; ComfyUI LATENT ``samples``
are **raw** VAE latents ``[1, C, T, h, w]``; inside ``wan_core`` latents are normalized.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import weakref
from dataclasses import dataclass

import torch

from wan_core.memory import explain_oom
from wan_core.rollout.request import ValidatedRequest, VideoRequest

from . import comfy_runtime as rt
from .payloads import ImageCondition, LoadedDiT, LoadedVAE, PromptSegment, RuntimeOptions, StreamConditioning
from .resident_model import ResidentModel
from .video_request import SAMPLER, SAMPLER_WORDS, sampler_request
from .warm_rollout import WarmRollout

log = logging.getLogger("wan_stream")

# --------------------------------------------------------------------------------------------------
# loaders


def _file_is_fp8(path: str) -> bool:
    from wan_core.checkpoint import open_checkpoint
    from wan_core.quant import is_fp8

    ck = open_checkpoint(path)
    return any(is_fp8(ck.dtype(k)) for k in ck.keys())


def load_dit(
    path: str,
    precision: str,
    attention: str,
    compile: bool,
    cuda_graphs: bool,
    lora_path: str | None = None,
    lora_strength: float = 1.0,
    weights: str = "auto",
    speed: str = "auto",
) -> LoadedDiT:
    """``speed`` with the old ``compile`` / ``cuda_graphs`` booleans: see ``nodes/speed.py``."""
    from wan_core.dit.loader import load_dit as core_load_dit
    from wan_core.rollout.presets import official_weight_set

    prefer = official_weight_set(path) or "generator_ema"  # auto: the family's official set (by file name)

    from .speed import speed_flags, triton_importable

    device = rt.torch_device()
    fp8_math = precision == "fp8_fast"
    dtype = rt.compute_dtype("auto" if precision in ("fp8", "fp8_fast") else precision, device)
    if fp8_math:
        from wan_core.fp8_linear import check_fp8_support

        try:  # before loading: a GPU without FP8 tensor cores fails fast
            check_fp8_support(device)
        except ValueError as e:
            raise ValueError(f"Load Wan DiT: precision fp8_fast: {e}") from None
    if precision == "fp8" and not _file_is_fp8(path):
        raise ValueError(
            f"Load Wan DiT: precision fp8 needs an fp8 weight file, but {path} stores 16/32-bit weights. "
            "Pick an *_fp8_scaled.safetensors file, or precision auto / bf16 / fp16."
        )
    if cuda_graphs and device.type != "cuda":
        raise ValueError(
            f"Load Wan DiT: CUDA graphs need a CUDA GPU (this ComfyUI runs on {device}); turn cuda_graphs off."
        )
    flags = speed_flags(
        speed,
        compile=compile,
        cuda_graphs=cuda_graphs,
        device_type=device.type,
        triton=device.type == "cuda" and triton_importable(),
    )
    rt.free_memory_for(path, device)
    model = core_load_dit(
        path, dtype=dtype, device=device, attention=attention, weights=weights, prefer=prefer
    )
    from wan_core.accel import prepare_dit

    # LoRA merge, then FP8 math; the pipeline fuses q/k/v and compiles later (prepare_dit owns the order)
    prepared = prepare_dit(model, lora=lora_path, lora_strength=lora_strength, fp8_linear=fp8_math)
    if lora_path is not None:
        log.info(
            "Load Wan DiT: merged %d LoRA layers of %s (strength %s)",
            prepared.lora_layers,
            lora_path,
            lora_strength,
        )
    if prepared.fp8 is not None:
        log.info("Load Wan DiT: %s", prepared.fp8.summary())
    cfg = model.config
    family = getattr(cfg, "model_type", "t2v")
    desc = f"Wan DiT {family} dim {cfg.dim} x {cfg.num_layers} layers, in {cfg.in_dim} / out {cfg.out_dim} channels"
    log.info(
        "Load Wan DiT: %s (%s; weights: %s) on %s in %s; speed %s: %s",
        path,
        desc,
        getattr(model, "weight_set", "?"),
        device,
        dtype,
        speed,
        flags.summary(),
    )
    options = RuntimeOptions(
        dtype=dtype,
        attention=attention,
        compile=flags.compile,
        cuda_graphs=flags.cuda_graphs,
        fp8_linear=fp8_math,
        fuse_qkv=flags.fuse_qkv,
        overlap_decode=flags.overlap_decode,
        speed=speed,
    )
    warm = WarmRollout()
    fp8_advice = (
        ()
        if precision in ("fp8", "fp8_fast")
        else ("fp8 weights: an *_fp8_scaled.safetensors file (precision fp8) need half the memory of bf16",)
    )
    resident = ResidentModel(
        model,
        device,
        f"Load Wan DiT ({os.path.basename(path)})",
        on_offload=warm.release_for_offload,
        fixes=fp8_advice,
    )
    resident.register()
    return LoadedDiT(
        model=model,
        path=path,
        options=options,
        device=device,
        lora_path=lora_path,
        lora_strength=lora_strength,
        warm=warm,
        resident=resident,
    )


def load_vae(path: str, precision: str) -> LoadedVAE:
    from wan_core.vae.loader import load_vae as core_load_vae

    device = rt.torch_device()
    dtype = rt.compute_dtype(precision, device)
    rt.free_memory_for(path, device)
    model = core_load_vae(path, dtype=dtype, device=device)
    kind = "wan22" if model.z_dim == 48 else "wan21"
    resident = ResidentModel(model, device, f"Load Wan VAE ({os.path.basename(path)})")
    resident.register()
    return LoadedVAE(
        model=model,
        path=path,
        kind=kind,
        latent_channels=model.z_dim,
        spatial_stride=model.spatial_scale,
        dtype=dtype,
        device=device,
        resident=resident,
    )


def load_taehv(path: str, precision: str) -> LoadedVAE:
    from wan_core.vae.loader import load_taehv as core_load_taehv

    device = rt.torch_device()
    dtype = rt.compute_dtype(precision, device)
    model = core_load_taehv(path, dtype=dtype, device=device)
    resident = ResidentModel(model, device, f"Load TAEHV ({os.path.basename(path)})")
    resident.register()
    return LoadedVAE(
        model=model,
        path=path,
        kind="taehv",
        latent_channels=model.latent_channels,
        spatial_stride=model.spatial_scale,
        dtype=dtype,
        device=device,
        resident=resident,
    )


# --------------------------------------------------------------------------------------------------
# text

_PROMPT_CACHE = None
_PROMPT_CACHE_LOCK = threading.Lock()


def _prompt_cache():
    global _PROMPT_CACHE
    with _PROMPT_CACHE_LOCK:
        if _PROMPT_CACHE is None:
            from wan_core.text import PromptEmbeddingCache

            _PROMPT_CACHE = PromptEmbeddingCache(max_entries=64)
        return _PROMPT_CACHE


TEXT_ENCODER_DEVICES = ("auto", "cpu")  # auto: ComfyUI's torch device; cpu: for GPUs too small for UMT5-XXL


def text_encoder_device(choice: str) -> torch.device:
    """The device the UMT5 encoder loads and runs on for the node's ``device`` input."""
    if choice not in TEXT_ENCODER_DEVICES:
        raise ValueError(
            f"Encode UMT5 Prompt: device must be one of {', '.join(TEXT_ENCODER_DEVICES)}, got {choice!r}."
        )
    return torch.device("cpu") if choice == "cpu" else rt.torch_device()


def encode_prompt_schedule(
    encoder_path: str, schedule: list[tuple], negative: str, precision: str, device: str = "auto"
) -> StreamConditioning:
    """UMT5 embeddings of every prompt of the schedule and of the negative prompt (the presets'
    default negative prompt when empty; only CFG presets use it). Cached per (file, prompt): the key
    does not hold the device, the embeddings are the same up to dtype. They come back as fp32 on the
    CPU whichever device encoded them; the sampler moves them to the DiT's device."""
    from wan_core.rollout.presets import DEFAULT_NEGATIVE_PROMPT
    from wan_core.text import load_tokenizer, load_umt5

    if precision == "fp8" and not _file_is_fp8(encoder_path):
        raise ValueError(
            f"Encode UMT5 Prompt: precision fp8 needs an fp8 weight file, but {encoder_path} stores 16/32-bit "
            "weights. Pick umt5_xxl_fp8_e4m3fn_scaled.safetensors, or precision auto / bf16 / fp16."
        )
    negative_text = negative.strip()  # "" = the default; the sampler's request says whether it is used
    negative = negative_text or DEFAULT_NEGATIVE_PROMPT
    texts = [text for _, text in schedule] + [negative]
    off_gpu_by_choice = device == "cpu" and rt.torch_device().type != "cpu"
    device = text_encoder_device(device)
    dtype = rt.compute_dtype("auto" if precision == "fp8" else precision, device)
    if off_gpu_by_choice and precision in ("auto", "fp8"):
        dtype = torch.bfloat16  # as on a GPU, and half the RAM of fp32 (~11 GB for UMT5-XXL)

    def load():
        rt.free_memory_for(encoder_path, device)
        return load_umt5(encoder_path, dtype=dtype, device=device), load_tokenizer(encoder_path)

    cache = _prompt_cache()
    embs = cache.get_or_encode(texts, encoder_path, load)  # [L_i, 4096] each
    for warning in getattr(cache, "last_warnings", None) or []:
        log.warning("Encode UMT5 Prompt: %s", warning)
    rt.release_memory()
    negative_context = embs[-1][None].float().cpu()
    segments = tuple(
        PromptSegment(
            start=start, text=text, context=emb[None].float().cpu(), negative_context=negative_context
        )
        for (start, text), emb in zip(schedule, embs[:-1])
    )
    return StreamConditioning(segments=segments, encoder_path=encoder_path, negative_text=negative_text)


# --------------------------------------------------------------------------------------------------
# image conditioning


def _image_oom(cond, vae, image, clip_path=None):
    from wan_core.memory import FREE_THE_GPU

    what = (
        f"loading / running the CLIP vision encoder {clip_path}" if clip_path else "preparing the start image"
    )
    return what, rt.torch_device(), [FREE_THE_GPU]


@explain_oom(_image_oom)
def encode_image_condition(
    cond: StreamConditioning, vae: LoadedVAE, image: torch.Tensor, clip_path: str | None
) -> StreamConditioning:
    """Start image -> the conditioning of Wan2.1 I2V (Wan 2.1 VAE: mask + latent, + CLIP tokens when a
    CLIP vision file is given) or Wan2.2 TI2V 5B (Wan 2.2 VAE: the image becomes latent frame 0)."""
    from wan_core.rollout.request import nearest_multiple

    if vae.is_taehv:
        raise ValueError(
            "I2V Control Encode: the image must be encoded with the full Wan VAE (Load Wan VAE), not a TAEHV."
        )
    if image.ndim != 4 or image.shape[-1] != 3:
        raise ValueError(f"I2V Control Encode: expected an IMAGE [N, H, W, 3], got {tuple(image.shape)}")
    height, width = int(image.shape[1]), int(image.shape[2])
    stride = vae.spatial_stride * 2  # VAE stride x DiT patch (2x2)
    model_name = "Wan2.2 TI2V 5B" if vae.kind == "wan22" else "Wan2.1 I2V"
    if height % stride or width % stride:
        fit_w, fit_h = nearest_multiple(width, stride), nearest_multiple(height, stride)
        raise ValueError(
            f"I2V Control Encode: the image is {width}x{height}, but {model_name} needs width and height that "
            f"are multiples of {stride} (VAE stride {vae.spatial_stride} x patch 2). Resize or crop it to e.g. "
            f"{fit_w}x{fit_h} (ComfyUI's ImageScale / ImageCrop nodes)."
        )
    pixels = image[:1].permute(0, 3, 1, 2).float() * 2.0 - 1.0  # [1, 3, H, W] in [-1, 1]
    clip_features = None
    if clip_path is not None:
        if vae.kind == "wan22":
            raise ValueError(
                "I2V Control Encode: Wan2.2 TI2V 5B takes no CLIP vision features; set clip_vision to 'none'."
            )
        from wan_core.clip import encode_image, load_clip_vision

        device = rt.torch_device()
        rt.free_memory_for(clip_path, device)
        clip = load_clip_vision(clip_path, dtype=rt.compute_dtype("auto", device), device=device)
        clip_features = encode_image(clip, pixels).cpu()  # [1, 257, 1280]
        del clip
        rt.release_memory()
    return cond.with_image(
        ImageCondition(width=width, height=height, image=pixels, vae=vae, clip_features=clip_features)
    )


# --------------------------------------------------------------------------------------------------
# sampling


def _encoder_on_device(vae: LoadedVAE):
    """The Wan VAE's streaming encoder as the pipeline calls it (float32 frames in, float32 latents out)."""
    from wan_core.vae.stream import EncoderOnDevice

    return EncoderOnDevice(vae.model, vae.device, vae.dtype)


def _decoder_on_device(vae: LoadedVAE):
    """A TAEHV or Wan VAE as a stream-decoder factory taking latents on any device."""
    from wan_core.vae.stream import OnDevice

    return OnDevice(vae.model, vae.device, vae.dtype)


def _image_frames(frames: torch.Tensor) -> torch.Tensor:
    """Decoded frames ``[1, 3, f, H, W]`` in [-1, 1] -> ComfyUI IMAGE ``[f, H, W, 3]`` in [0, 1] (float32, CPU)."""
    return ((frames[0].float().clamp(-1, 1) + 1.0) * 0.5).permute(1, 2, 3, 0).cpu()


def _previews_in_background(pipe) -> bool:
    """Send previews from a writer thread when the pipeline decodes on a side stream (CUDA)."""
    return bool(pipe.overlap_decode)


def _to_host_async(t: torch.Tensor) -> torch.Tensor:
    """``t`` as float32 on the CPU; on CUDA a non-blocking copy into pinned memory (read it only after
    the stream is synchronized)."""
    if t.device.type != "cuda":
        return t.float().cpu()
    host = torch.empty(t.shape, dtype=torch.float32, pin_memory=True)
    host.copy_(t.float(), non_blocking=True)
    return host


def _check_latent_channels(vae: LoadedVAE, latent_channels: int, source: str, prefix: str = "") -> None:
    """``source`` says where the latents come from ("this DiT makes" / "these are")."""
    if vae.latent_channels != latent_channels:
        raise ValueError(
            f"{prefix}{vae.path} decodes {vae.latent_channels}-channel latents, but {source} "
            f"{latent_channels}-channel latents: use the VAE / TAEHV of this model family (Wan 2.1 "
            "latents: 16 channels; Wan2.2 TI2V 5B: 48)."
        )


class _PreviewSender:
    """Receives each chunk's frames as uint8 ``[f, H, W, 3]`` (the ``BackgroundFrameWriter`` writer
    protocol), in chunk order, and sends them to the browser as that chunk's preview."""

    def __init__(self, reporter, fps: float):
        self.reporter, self.fps, self.chunks_sent = reporter, fps, 0

    def write(self, frames) -> None:  # frames: numpy uint8 [f, H, W, 3]
        self.reporter.chunk_frames(self.chunks_sent, torch.from_numpy(frames).float() / 255.0, fps=self.fps)
        self.chunks_sent += 1


class _InlinePreview:
    """``BackgroundFrameWriter``'s interface without a thread: each chunk is sent when submitted."""

    def __init__(self, sender: _PreviewSender):
        self.sender = sender

    def submit(self, chunk) -> None:
        from wan_core.rollout.video_io import to_uint8_frames

        self.sender.write(to_uint8_frames(chunk.host_frames()))

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None


@contextlib.contextmanager
def _errors_named(node: str):
    """Core ``ValueError`` s raised inside carry the node's display name in front."""
    try:
        yield
    except ValueError as e:
        if type(e) is not ValueError or str(e).startswith(node):
            raise
        raise ValueError(f"{node}: {e}") from e


@dataclass(frozen=True, eq=False)
class SampledVideo:
    """What the sampler makes: the raw latent video and the frame rate it plays at."""

    latent: torch.Tensor  # [1, C, T, h, w] raw (ComfyUI LATENT samples), CPU float32
    fps: float  # the preset's (or the request's) frames per second, for CreateVideo


def auto_preset(dit: LoadedDiT, dit_low_noise: LoadedDiT | None = None) -> str:
    """Preset ``auto``: the preset of the loaded DiT (file name + key layout), or a ``RequestError`` in
    the sampler's words listing the candidates (``wan_core.rollout.preset_auto``)."""
    from wan_core.rollout.preset_auto import resolve_auto_preset

    name = resolve_auto_preset(
        dit.path, dit.config, dual_expert=dit_low_noise is not None, words=SAMPLER_WORDS
    )
    log.info("%s: preset auto = %s (from %s)", SAMPLER, name, os.path.basename(dit.path))
    return name


def sample(
    dit: LoadedDiT,
    cond: StreamConditioning,
    request: VideoRequest | None = None,
    *,
    preview_vae: LoadedVAE | None = None,
    dit_low_noise: LoadedDiT | None = None,
    **inputs,
) -> torch.Tensor:
    """Run the rollout chunk by chunk; returns the raw latent ``[1, C, T, h, w]`` (CPU, float32).
    ``sample_video`` takes the same arguments and also returns the fps."""
    return sample_video(
        dit, cond, request, preview_vae=preview_vae, dit_low_noise=dit_low_noise, **inputs
    ).latent


def sample_video(
    dit: LoadedDiT,
    cond: StreamConditioning,
    request: VideoRequest | None = None,
    *,
    preview_vae: LoadedVAE | None = None,
    dit_low_noise: LoadedDiT | None = None,
    **inputs,
) -> SampledVideo:
    """Run the rollout chunk by chunk; returns the raw latent video and its fps.

    ``request``: the video (``wan_core.rollout.request.VideoRequest``); or, without it, the sampler
    node's inputs as keywords (``width``, ``height``, ``frames``, ``preset``, ``seed``,
    ``window_frames``, ``sink_frames``, ``chunks``, ``gpus``, ``context_parallel``, ``options``; see
    ``video_request.sampler_request``). It is validated here, before any work, in the node's words;
    preset ``auto`` is resolved from the loaded DiT first, and prompt switches given in seconds
    become chunks. ``gpus`` > 1: the rollout runs on that many local worker processes
    (``multi_gpu``), splitting the DiT's tokens (``context_parallel``: "ulysses" | "ring"); the
    preview is decoded here."""
    from wan_core.rollout.preset_auto import AUTO_PRESET
    from wan_core.vae.latent_norm import to_raw

    from_node = request is None
    if from_node:
        request = sampler_request(cond, **inputs)
    elif inputs:
        raise TypeError(f"sample() takes a request or the node's inputs, not both: {sorted(inputs)}")
    if isinstance(request.preset, str) and request.preset == AUTO_PRESET:
        request = dataclasses.replace(request, preset=auto_preset(dit, dit_low_noise))
    valid = request.validate(dit_config=dit.config, words=SAMPLER_WORDS, check_output=False)
    for warning in valid.warnings:
        log.warning("%s", warning)
    if from_node:  # switches given in seconds start at the chunks the request resolved
        cond = cond.at_chunks(valid.switch_chunks)
    fps = float(valid.fps)
    if dit_low_noise is not None and valid.preset.boundary is None:
        raise ValueError(f"{SAMPLER}: preset {valid.preset.name} uses one DiT; disconnect dit_low_noise.")
    with _errors_named(SAMPLER):
        if valid.gpus > 1:
            dit.warm.drop()  # the in-process rollout kept from an earlier job would hold GPU 0's memory
            with ResidentModel.using(getattr(preview_vae, "resident", None)):  # previews are decoded here
                latents = _sample_on_workers(dit, cond, valid, preview_vae, dit_low_noise)
            rt.release_memory()
            return SampledVideo(to_raw(torch.cat(latents, dim=2)), fps)

        # the models on their device (ComfyUI may have offloaded them) and not offloaded while they run
        residents = [
            dit.resident,
            getattr(dit_low_noise, "resident", None),
            getattr(preview_vae, "resident", None),
        ]
        residents.append(cond.image.vae.resident if cond.image is not None else None)
        with ResidentModel.using(*residents, keep=dit.warm.handles()):
            latents = _sample_in_process(dit, cond, valid, preview_vae, dit_low_noise, residents)
        rt.release_memory()
        return SampledVideo(to_raw(torch.cat(latents, dim=2)), fps)


def pipeline_factory(dit: LoadedDiT, model, preset):
    """What makes a job's pipeline (kept in ``dit.warm``) with Load Wan DiT's speed options (the
    Streaming AR Sampler and the Live Sampler alike)."""
    from wan_core.rollout.pipeline import StreamingPipeline

    o = dit.options
    return lambda: StreamingPipeline(
        model, preset, cuda_graphs=o.cuda_graphs, compile=o.compile, fuse_qkv=o.fuse_qkv,
        overlap_decode=o.overlap_decode, missing_inputs="warn",
    )  # fmt: skip


def _sample_in_process(
    dit: LoadedDiT,
    cond: StreamConditioning,
    valid: ValidatedRequest,
    preview_vae: LoadedVAE | None,
    dit_low_noise: LoadedDiT | None,
    residents: list,
) -> list[torch.Tensor]:
    """The rollout in this process on the kept pipeline (``dit.warm``); normalized latent chunks
    ``[1, C, n, h, w]`` on the host. ``residents``: the job's models, already on their device
    (``ResidentModel.using``)."""
    from wan_core.rollout.frame_writer import BackgroundFrameWriter

    p = valid.preset
    model = dit.model
    if dit_low_noise is not None:
        from wan_core.dit import DualExpertDiT

        model = DualExpertDiT(dit.model, dit_low_noise.model, p.boundary)

    image = cond.image
    preview_decoder = None
    if preview_vae is not None:
        from wan_core.vae.stream import rollout_decoder

        preview_decoder = rollout_decoder(preview_vae.model, preview_vae.device, preview_vae.dtype)
        _check_latent_channels(
            preview_vae,
            model.config.out_dim,
            "this DiT makes",
            prefix="Streaming AR Sampler: preview_vae ",
        )
    # the VAE encoder: the start image's VAE, else a full Wan VAE given as preview_vae (schemes that
    # re-encode decoded frames need one; without it the scheme warns and uses its fallback)
    encoder_vae = image.vae if image is not None else preview_vae
    vae_encoder = None if encoder_vae is None or encoder_vae.is_taehv else _encoder_on_device(encoder_vae)
    prompt_id, node_id = rt.executing_ids()
    progress_box: dict = {}

    def on_step(done: int, total: int | None, chunk: int) -> None:
        reporter = progress_box.get("reporter")
        if reporter is not None:
            reporter.step(chunk, done - 1 - chunk * reporter.steps_per_chunk)

    clip_features = image.clip_features if image is not None else None
    # kept between jobs: a job of the same preset / window / models starts on the previous job's KV
    # cache and CUDA graphs (warm_rollout.py); the job's own encoder / decoder / callbacks come with rebind
    key = (p, None if dit_low_noise is None else weakref.ref(dit_low_noise.model))
    pipe = dit.warm.acquire(key, pipeline_factory(dit, model, p))
    first = cond.segments[0]
    # No host sync per chunk on CUDA: latents go to pinned memory asynchronously (one sync at the end);
    # the preview (decoded by the pipeline, on a side stream when overlap_decode is on) is turned into
    # JPEGs and sent on a writer thread, so the GPU goes on with the next chunk meanwhile. Without a
    # side stream (CPU) each chunk's preview is sent before the next chunk starts.
    latents = []
    try:  # from here on a failure drops the kept pipeline (and clears its "in use" mark)
        pipe.rebind(
            vae=vae_encoder,
            decoder=preview_decoder,
            clip_vision=(lambda _img: clip_features.to(dit.device)) if clip_features is not None else None,
            progress=on_step,
            interrupt=rt.check_interrupt,  # raises ComfyUI's interrupt exception before the next step
        )
        switches = {s.start_chunk: s.context.to(dit.device) for s in cond.segments[1:]}  # inside the video
        # make room for a new KV cache before allocating it: ComfyUI unloads its own models if needed
        need = pipe.cache_growth_nbytes(valid.height, valid.width, **valid.length)
        if need > 0:
            in_use = tuple(h for r in residents if r is not None for h in r.handles())
            rt.free_memory_bytes(need, dit.device, keep=dit.warm.handles() + in_use)
        pipe.initialize_cache(
            first.context.to(dit.device),
            image=image.image if image is not None else None,
            height=valid.height,
            width=valid.width,
            **valid.length,
            seed=valid.seed,
            # only where classifier-free guidance reads it (the pipeline's request refuses it elsewhere)
            negative_prompt=first.negative_context.to(dit.device)
            if first.negative_context is not None and pipe.scheme.uses_negative_prompt
            else None,
            prompt_switches=None,
        )
        num_chunks = pipe.num_chunks
        for c, context in switches.items():
            pipe.switch_prompt(context, c)
        steps_per_chunk = pipe.total_steps // num_chunks
        progress_box["reporter"] = reporter = rt.StepProgress(num_chunks, steps_per_chunk, node_id, prompt_id)
        sender = _PreviewSender(reporter, fps=float(valid.fps))
        background = preview_vae is not None and _previews_in_background(pipe)
        with BackgroundFrameWriter(sender) if background else _InlinePreview(sender) as previews:
            for i in range(num_chunks):
                result = pipe.generate(i)  # [1, C, n, h, w] normalized
                latents.append(_to_host_async(result.latents))
                if preview_vae is not None:
                    previews.submit(result)
                rt.check_interrupt()
                pipe.finalize(i)
        if dit.device.type == "cuda":
            torch.cuda.current_stream(dit.device).synchronize()  # the async latent copies are done
    except BaseException:
        dit.warm.drop()  # the KV cache goes now when the job is interrupted or fails (maybe half-written)
        rt.release_memory()
        raise
    try:
        if p.is_autoregressive:
            pipe.end_video()
            dit.warm.keep(dit.device)
        else:  # whole-video presets: no KV cache, no graphs -- nothing a next job gains from
            dit.warm.drop()
    except BaseException:
        dit.warm.drop()
        raise
    del pipe
    return latents


def _sample_on_workers(
    dit: LoadedDiT,
    cond: StreamConditioning,
    valid: ValidatedRequest,
    preview_vae: LoadedVAE | None,
    dit_low_noise: LoadedDiT | None,
) -> list[torch.Tensor]:
    """The rollout on ``valid.gpus`` local workers; progress advances per finished chunk (the workers
    report chunks, not steps), interruption is checked between chunks. Normalized latent chunks."""
    from contextlib import closing

    from . import multi_gpu

    device = multi_gpu.pool_device(valid.gpus, dit.device)
    spec = multi_gpu.build_spec(dit, cond, valid, dit_low_noise=dit_low_noise)
    prompt_id, node_id = rt.executing_ids()
    decoder = None
    if preview_vae is not None:  # the previews are decoded here, chunk by chunk (causal state carried)
        _check_latent_channels(
            preview_vae,
            dit.model.config.out_dim,
            "this DiT makes",
            prefix="Streaming AR Sampler: preview_vae ",
        )
        decoder = _decoder_on_device(preview_vae).stream_decoder()
    reporter = None
    latents = []
    with closing(multi_gpu.rollout_on_workers(spec, valid.gpus, device)) as chunks_out:
        for chunk in chunks_out:
            i = chunk["index"]
            if reporter is None:
                num_chunks, steps = chunk["num_chunks"], chunk["steps_per_chunk"]
                reporter = rt.StepProgress(num_chunks, steps, node_id, prompt_id)
            reporter.step(i, reporter.steps_per_chunk - 1)  # the whole chunk at once
            latents.append(chunk["latents"].float().cpu())  # [1, C, n, h, w] normalized
            if decoder is not None:
                reporter.chunk_frames(
                    i, _image_frames(decoder.decode_chunk(chunk["latents"])), fps=float(valid.fps)
                )
            rt.check_interrupt()
    return latents


# --------------------------------------------------------------------------------------------------
# decoding


def _decode_oom(vae: LoadedVAE, latent: torch.Tensor, chunk_frames: int):
    from wan_core.memory import FREE_THE_GPU

    fixes = [
        f"fewer latent frames per decode step: chunk_frames {max(1, chunk_frames // 2)} (now {chunk_frames})"
    ]
    if not vae.is_taehv:
        fixes.append(
            "the TAEHV decoder (Load TAEHV): a fraction of the Wan VAE's memory, slightly softer frames"
        )
    fixes += ["a smaller video (width / height on the sampler)", FREE_THE_GPU]
    return f"decoding a {tuple(latent.shape)} latent with {vae.path}", vae.device, fixes


@explain_oom(_decode_oom)
def decode_latent(vae: LoadedVAE, latent: torch.Tensor, chunk_frames: int) -> torch.Tensor:
    """Raw LATENT ``[1, C, T, h, w]`` -> IMAGE ``[F, H, W, 3]`` in [0, 1], ``chunk_frames`` latent frames at a time."""
    from wan_core.vae.latent_norm import to_normalized

    if latent.ndim != 5:
        raise ValueError(
            f"VAE Decode Chunk: expected a video latent [B, C, T, h, w], got shape {tuple(latent.shape)} "
            "(an image latent from another sampler?)"
        )
    if latent.shape[1] != vae.latent_channels:
        raise ValueError(
            f"VAE Decode Chunk: {vae.path} decodes {vae.latent_channels}-channel latents but this latent has "
            f"{latent.shape[1]} channels: use the VAE / TAEHV of this model family (Wan 2.1: 16, Wan2.2 TI2V 5B: 48)."
        )
    if latent.shape[0] != 1:
        raise ValueError(f"VAE Decode Chunk: decodes one video at a time, got a batch of {latent.shape[0]}")
    z = to_normalized(latent.float())
    out = []
    with ResidentModel.using(vae.resident):
        # ComfyUI's headroom for running a model (~1 GB): may unload a kept rollout, which is not in use
        rt.free_memory_bytes(0, vae.device, keep=vae.resident.handles() if vae.resident is not None else ())
        decoder = _decoder_on_device(vae).stream_decoder()  # causal state carried: memory stays flat
        for start in range(0, z.shape[2], chunk_frames):
            rt.check_interrupt()
            out.append(_image_frames(decoder.decode_chunk(z[:, :, start : start + chunk_frames])))
    rt.release_memory()
    return torch.cat(out, dim=0)
