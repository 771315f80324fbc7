"""One live job inside ComfyUI: the endless rollout of the Live Sampler, steered through
``live_routes`` while it runs, its chunks shown in the node's player as soon as they are decoded.

Events (ComfyUI websocket, sent only to the client that queued the job):
``wanstream.live.start`` {node, prompt_id, token, fps, preset, can_switch, max_chunks},
``wanstream.live.progress`` {node, prompt_id, chunk, step, num_steps, frames, seconds, state},
``wanstream.live.preview`` {node, prompt_id, chunk, first_frame, fps, width, height, frames: [base64
JPEG], sent_ms}, ``wanstream.live.prompt`` {node, prompt_id, chunk, text, weight} or {.., error},
``wanstream.live.end`` {node, prompt_id, chunks, frames, seconds, ended_by}.
The output latent is exactly the chunks sent to the player (kept on disk meanwhile: ``LatentSpool``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time

import torch

from . import comfy_runtime as rt
from .core_bridge import (
    _check_latent_channels,
    _encoder_on_device,
    _errors_named,
    _InlinePreview,
    _previews_in_background,
    _prompt_cache,
    _to_host_async,
    pipeline_factory,
    text_encoder_device,
)
from .live_jobs import JOBS
from .payloads import LoadedDiT, LoadedVAE, StreamConditioning
from .resident_model import ResidentModel
from .video_request import SAMPLER_WORDS

log = logging.getLogger("wan_stream")

LIVE_SAMPLER = "Live Sampler"
LIVE_WORDS = dataclasses.replace(SAMPLER_WORDS, prefix=f"{LIVE_SAMPLER}: ")
START_EVENT, PROGRESS_EVENT, PREVIEW_EVENT = (
    "wanstream.live.start",
    "wanstream.live.progress",
    "wanstream.live.preview",
)
PROMPT_EVENT, END_EVENT = "wanstream.live.prompt", "wanstream.live.end"


def max_chunks_for(max_seconds: float, fps: float, latent_frames_per_chunk: int) -> int | None:
    """Chunks that cover ``max_seconds`` of video (the first latent frame is 1 pixel frame, each later
    one 4); None for 0 (until stopped)."""
    if not (isinstance(max_seconds, (int, float)) and math.isfinite(max_seconds) and max_seconds >= 0):
        raise ValueError(
            f"{LIVE_SAMPLER}: max_seconds must be 0 (until stopped) or a positive number, got {max_seconds}"
        )
    if max_seconds == 0:
        return None
    pixel_frames = max(1, math.ceil(max_seconds * fps))
    latent = 1 + math.ceil((pixel_frames - 1) / 4)
    return max(1, math.ceil(latent / latent_frames_per_chunk))


def queuing_client_id() -> str:
    """The ``client_id`` of the client that queued the running prompt: the job's events (its token,
    frames and prompts) go to that websocket only. Without one ComfyUI would broadcast them to every
    connected client, so the job is refused."""
    from server import PromptServer

    client_id = PromptServer.instance.client_id
    if not isinstance(client_id, str) or not client_id:
        raise ValueError(
            f"{LIVE_SAMPLER}: this prompt was queued without a client_id, so its live stream (frames, "
            "prompts and steering token) would go to every connected client. Queue it from the ComfyUI "
            'page, or give "client_id" (the clientId of your websocket) in POST /prompt.'
        )
    return client_id


class PromptEncoder:
    """New prompts of a live job -> UMT5 embeddings ``[1, L, 4096]`` on ``device``; repeats come from
    the pack's prompt cache; the encoder loads at the first new prompt and stays until ``close``."""

    def __init__(self, encoder_path: str, device_choice: str, device: torch.device):
        self.path, self.device = encoder_path, device
        self.encoder_device = text_encoder_device(device_choice)
        self.held = None
        self.loads = 0

    def _load(self):
        if self.held is None:
            from wan_core.text import load_tokenizer, load_umt5

            rt.free_memory_for(self.path, self.encoder_device)
            dtype = rt.compute_dtype("auto", self.encoder_device)
            self.held = (
                load_umt5(self.path, dtype=dtype, device=self.encoder_device),
                load_tokenizer(self.path),
            )
            self.loads += 1
        return self.held

    def __call__(self, text: str) -> torch.Tensor:
        if not self.path:
            raise ValueError("the conditioning names no text encoder file")
        cache = _prompt_cache()
        emb = cache.get_or_encode([text], self.path, self._load)[0]
        for warning in getattr(cache, "last_warnings", None) or []:
            log.warning("%s: %s", LIVE_SAMPLER, warning)
        return emb[None].float().to(self.device)

    def close(self) -> None:
        self.held = None


class _Events:
    """What the job tells the player (progress per step, each chunk's frames, prompts, the end)."""

    def __init__(
        self, client_id: str, node_id, prompt_id, fps: float, steps_per_chunk: int, max_chunks: int | None
    ):
        if not client_id:  # sid None would broadcast to every websocket
            raise ValueError(f"{LIVE_SAMPLER}: live events need the queuing client's id")
        import comfy.utils

        self.client_id, self.node_id, self.prompt_id, self.fps = client_id, node_id, prompt_id, fps
        self.steps_per_chunk, self.max_chunks = steps_per_chunk, max_chunks
        self.frames_sent = 0
        self.chunks_sent = 0
        total = steps_per_chunk * (max_chunks or 1)
        self.bar = comfy.utils.ProgressBar(total, node_id=node_id)

    def send(self, event: str, **data) -> None:
        from server import PromptServer

        data = {"node": self.node_id, "prompt_id": self.prompt_id, **data}
        PromptServer.instance.send_sync(event, data, self.client_id)

    def step(self, chunk: int, step: int, state: str) -> None:  # step: 1-based within the chunk
        if self.max_chunks is None:
            self.bar.update_absolute(step)  # no total: the bar runs over each chunk
        else:
            self.bar.update_absolute(chunk * self.steps_per_chunk + step)
        self.send(
            PROGRESS_EVENT, chunk=chunk, step=step, num_steps=self.steps_per_chunk, frames=self.frames_sent,
            seconds=self.frames_sent / self.fps, state=state, max_chunks=self.max_chunks,
        )  # fmt: skip

    def write(self, frames) -> None:  # numpy uint8 [f, H, W, 3] (BackgroundFrameWriter's writer protocol)
        images = torch.from_numpy(frames).float() / 255.0
        self.send(
            PREVIEW_EVENT, chunk=self.chunks_sent, first_frame=self.frames_sent, fps=self.fps,
            width=int(images.shape[2]), height=int(images.shape[1]), frames=rt.encode_jpeg_frames(images),
            sent_ms=time.time() * 1000.0,
        )  # fmt: skip
        self.frames_sent += int(images.shape[0])
        self.chunks_sent += 1


class _HostLatents:
    """Each chunk's latents copied to the host without waiting; written to the spool one chunk later
    (when its copy is surely done), so the loop never waits for the GPU here."""

    def __init__(self, spool):
        self.spool, self.pending = spool, None

    def add(self, latents: torch.Tensor) -> None:
        self.flush()
        host = _to_host_async(latents)
        event = None
        if latents.device.type == "cuda":
            event = torch.cuda.Event()
            event.record(torch.cuda.current_stream(latents.device))
        self.pending = (host, event)

    def flush(self) -> None:
        if self.pending is not None:
            host, event = self.pending
            if event is not None:
                event.synchronize()
            self.spool.append(host)
            self.pending = None


def run_live(
    dit: LoadedDiT,
    cond: StreamConditioning,
    preview_vae: LoadedVAE,
    *,
    width: int,
    height: int,
    preset: str,
    seed: int,
    max_seconds: float,
    interpolation: str,
    text_encoder_device: str = "auto",
) -> tuple[torch.Tensor, float]:
    """The live job; returns (raw latent ``[1, C, T, h, w]`` of the chunks shown, fps)."""
    client_id = queuing_client_id()  # before any model work
    from wan_core.live import INTERPOLATIONS
    from wan_core.rollout.request import VideoRequest
    from wan_core.vae.latent_norm import to_raw

    image = cond.image
    request = VideoRequest(
        preset=preset, prompt=cond.segments[0].text, width=width, height=height, endless=True, seed=seed,
        image=None if image is None else image.image, negative_prompt=cond.negative_text or None,
    )  # fmt: skip
    valid = request.validate(dit_config=dit.config, words=LIVE_WORDS, check_output=False)
    for warning in valid.warnings:
        log.warning("%s", warning)
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"{LIVE_SAMPLER}: interpolation must be one of {', '.join(INTERPOLATIONS)}")
    if len(cond.segments) > 1:
        log.warning(
            "%s: the prompt_switches of Encode UMT5 Prompt are not used live; steer from the player",
            LIVE_SAMPLER,
        )
    max_chunks = max_chunks_for(max_seconds, valid.fps, valid.preset.frames_per_chunk)
    _check_latent_channels(
        preview_vae, dit.config.out_dim, "this DiT makes", prefix=f"{LIVE_SAMPLER}: preview_vae "
    )
    residents = [dit.resident, preview_vae.resident, image.vae.resident if image is not None else None]
    with _errors_named(LIVE_SAMPLER), ResidentModel.using(*residents, keep=dit.warm.handles()):
        latents = _run_in_process(
            dit,
            cond,
            valid,
            preview_vae,
            residents,
            max_chunks,
            interpolation,
            text_encoder_device,
            client_id,
        )
    rt.release_memory()
    return to_raw(latents), float(valid.fps)


def _run_in_process(
    dit, cond, valid, preview_vae, residents, max_chunks, interpolation, encoder_choice, client_id: str
):
    from wan_core.live import LiveControl, LiveLoop
    from wan_core.live.spool import LatentSpool
    from wan_core.rollout.frame_writer import BackgroundFrameWriter
    from wan_core.vae.stream import rollout_decoder

    p = valid.preset
    image = cond.image
    encoder_vae = image.vae if image is not None else preview_vae
    vae_encoder = None if encoder_vae is None or encoder_vae.is_taehv else _encoder_on_device(encoder_vae)
    clip_features = image.clip_features if image is not None else None
    prompt_id, node_id = rt.executing_ids()
    box: dict = {}

    def on_step(done: int, total, chunk: int) -> None:
        events, control = box.get("events"), box.get("control")
        if events is not None:
            events.step(chunk, done - chunk * events.steps_per_chunk, control.state)

    pipe = dit.warm.acquire((p, None), pipeline_factory(dit, dit.model, p))  # the sampler's speed options
    encoder = PromptEncoder(cond.encoder_path, encoder_choice, dit.device)
    job = None
    try:
        pipe.rebind(
            vae=vae_encoder,
            decoder=rollout_decoder(preview_vae.model, preview_vae.device, preview_vae.dtype),
            clip_vision=(lambda _img: clip_features.to(dit.device)) if clip_features is not None else None,
            progress=on_step,
            interrupt=rt.check_interrupt,  # /interrupt: ComfyUI's exception, the job is discarded
        )
        need = pipe.cache_growth_nbytes(valid.height, valid.width, num_chunks=1)
        if need > 0:
            in_use = tuple(h for r in residents if r is not None for h in r.handles())
            rt.free_memory_bytes(need, dit.device, keep=dit.warm.handles() + in_use)
        first = cond.segments[0]
        context = first.context.to(dit.device)
        pipe.start_video(
            context, image=image.image if image is not None else None, height=valid.height, width=valid.width,
            seed=valid.seed,
        )  # fmt: skip
        try:
            pipe.scheme.check_switch(1)
            refusal = None
        except ValueError as e:
            refusal = str(e)
        control = LiveControl(switch_refusal=refusal)
        steps_per_chunk = pipe.scheme.total_steps(1)
        events = _Events(client_id, node_id, prompt_id, float(valid.fps), steps_per_chunk, max_chunks)
        box.update(events=events, control=control)
        job = JOBS.start(prompt_id, client_id, node_id, control)
        events.send(
            START_EVENT, token=job.token, fps=events.fps, preset=p.name, can_switch=refusal is None,
            switch_refusal=refusal, max_chunks=max_chunks, interpolation=interpolation,
        )  # fmt: skip
        background = _previews_in_background(pipe)
        with LatentSpool(rt.temp_folder()) as spool:  # on disk, not the system's /tmp (often RAM)
            host = _HostLatents(spool)
            with BackgroundFrameWriter(events) if background else _InlinePreview(events) as previews:

                def on_chunk(result) -> None:
                    host.add(result.latents)  # [1, C, n, h, w] normalized
                    previews.submit(result)

                loop = LiveLoop(
                    pipe, control, encoder, on_chunk=on_chunk, interpolation=interpolation, max_chunks=max_chunks,
                    on_prompt=lambda a: events.send(PROMPT_EVENT, chunk=a.chunk, text=a.text, weight=a.weight),
                    on_error=lambda m: events.send(PROMPT_EVENT, error=m), poll=rt.check_interrupt,
                )  # fmt: skip
                result = loop.run(context)
            host.flush()
            latents = spool.read()
        events.send(
            END_EVENT, chunks=result.chunks, frames=events.frames_sent, seconds=events.frames_sent / events.fps,
            ended_by=result.ended_by,
        )  # fmt: skip
        log.info(
            "%s: %d chunks, %d frames shown (%s)",
            LIVE_SAMPLER,
            result.chunks,
            events.frames_sent,
            result.ended_by,
        )
    except BaseException:
        dit.warm.drop()  # interrupted or failed: the KV cache goes now
        rt.release_memory()
        raise
    finally:
        encoder.close()
        if job is not None:
            JOBS.end(job)
    try:
        pipe.end_video()
        dit.warm.keep(dit.device)  # the next live (or fixed-length) job of this preset starts warm
    except BaseException:
        dit.warm.drop()
        raise
    if latents is None:
        raise ValueError(f"{LIVE_SAMPLER}: stopped before the first chunk was shown: no video to pass on")
    return latents
