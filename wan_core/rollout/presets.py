"""Published inference settings of every supported model family, as frozen dataclasses.

Each ``RolloutPreset`` says which files the family needs (``ModelFile``: local name in a
ComfyUI-style models folder + Hugging Face source), which sampler it uses and with what settings.
Sources (configs of each project, read from their public repos; see FACTS.md section 3):

| preset | steps (train units) | warp | shift | latent frames / chunk | attention |
|---|---|---|---|---|---|
| self-forcing-1.3b | 1000 750 500 250 | yes | 5 | 3 | 21 latent frames (as trained), rolling after |
| causvid-1.3b | 1000 757 522 | no | 8 | 3 | 21 frames, rolling after |
| longlive-1.3b | 1000 750 500 250 | yes | 5 | 3 | local_attn_size 12 = sink 3 + window 9, prompt switching (KV re-cache) |
| rolling-forcing-1.3b | 1000 800 600 400 200 | yes | 5 | 3 | window of 5 chunks at staggered steps; anchor + 21 frames |
| causal-forcing-chunkwise-1.3b | 1000 750 500 250 | yes | 5 | 3 | 21 frames |
| causal-forcing-framewise-1.3b | 1000 750 500 250 | yes | 5 | 1 | 21 frames |
| krea-realtime-14b | 1000 750 500 250 (+ t=0) | yes | 5 | 3 | KV recompute: anchor + 2 context frames, rebuilt every chunk |
| wan2.1-t2v-1.3b / -14b (base) | Euler 50 steps | - | 5 | whole video | bidirectional, CFG 5 |
| wan2.1-i2v-14b-480p (base) | Euler 40 steps | - | 3 | whole video | CLIP + mask + image latent, CFG 5 |
| wan2.2-ti2v-5b (base) | Euler 50 steps | - | 5 | whole video | first latent clean, t=0 tokens, CFG 5 |
| wan2.2-t2v-a14b / i2v-a14b | Euler 40 steps | - | 12 / 5 | whole video | two experts, boundary 0.875 / 0.9 |
| causal-forcing-pp-2step / -1step-1.3b | 1000 500 / 1000 (chunk 0: 1000 750 500 250) | yes | 5 | 1 | 21 frames |
| reward-forcing-1.3b | 1000 750 500 250 | yes | 5 | 3 | sink 3 + window 6, EMA sink (alpha 0.999), relative RoPE |
| longlive2-5b (TI2V 5B) | UniPC 4 steps (t 999 937 833 624) | - | 5 | 8 | sink 8 + window 24, absolute RoPE |

Notes. Rolling Forcing (TencentARC/RollingForcing @a1477d0) denoises a window of 5 chunks jointly at
staggered noise levels (``sampler="rolling_forcing"``, ``schemes/rolling_forcing.py``). Krea realtime (krea-ai/realtime-video @acf4b7b, ``release_server.py``) rebuilds the
KV cache before every chunk (``do_kv_recomp: true``, ``kv_cache_num_frames 3``; ``schemes/kv_recompute.py``);
its server builds the steps with ``get_denoising_schedule`` = linspace(1000, 0, 5) warped through the
shifted table, i.e. 1000 / 937.5 / 833.3 / 625 and a last step at t = 0 (``final_t0_step``; the config
file's unwarped ``[1000, 937, 833, 625, 0]`` is not what the server runs).
Base Wan ships a UniPC sampler; we use flow-matching Euler with the same shift (see
``schedulers.EulerSchedule``). LongLive 1.0 (NVlabs/LongLive @2462895, the last commit before 2.0)
uses 3 latent frames per chunk, local_attn_size 12, sink 3, ``global_sink: true`` in every inference
config; its prompt-switch KV re-cache is in ``prompt_switch.py``; ``longlive_inference.yaml`` makes
120 latent frames (477 pixel frames).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from wan_core.dit.keymap import WEIGHT_SETS

from .model_files import ModelFile
from .schedulers import EulerSchedule, FewStepSchedule
from .schemes.unipc_solver import UniPCSchedule

__all__ = [
    "RolloutPreset",
    "PRESETS",
    "get_preset",
    "DEFAULT_NEGATIVE_PROMPT",
    "official_weight_set",
]

# Our own default negative prompt for CFG with base Wan checkpoints (user-overridable).
DEFAULT_NEGATIVE_PROMPT = (
    "static frame, frozen motion, blurry details, overexposed, oversaturated colors, low quality, worst quality, "
    "jpeg artifacts, subtitles, text, watermark, deformed hands, extra fingers, distorted face, malformed limbs, "
    "messy background, crowd in the background, walking backwards"
)

_WAN21 = "Comfy-Org/Wan_2.1_ComfyUI_repackaged"
_WAN22 = "Comfy-Org/Wan_2.2_ComfyUI_Repackaged"

UMT5 = ModelFile(
    "text_encoder",
    "text_encoders",
    "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
    _WAN21,
    "split_files/text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors",
    alternatives=(
        "umt5_xxl_fp16.safetensors",
        "umt5-xxl-enc-bf16.safetensors",
        "models_t5_umt5-xxl-enc-bf16.pth",
    ),
    size_hint="6.7 GB",
)
VAE21 = ModelFile(
    "vae",
    "vae",
    "wan_2.1_vae.safetensors",
    _WAN21,
    "split_files/vae/wan_2.1_vae.safetensors",
    alternatives=("Wan2.1_VAE.pth", "Wan2_1_VAE_bf16.safetensors"),
    size_hint="254 MB",
)
VAE22 = ModelFile(
    "vae",
    "vae",
    "wan2.2_vae.safetensors",
    _WAN22,
    "split_files/vae/wan2.2_vae.safetensors",
    alternatives=("Wan2.2_VAE.pth",),
    size_hint="1.4 GB",
)
TAEW21 = ModelFile(
    "taehv",
    "vae_approx",
    "taew2_1.pth",
    "madebyollin/taehv",
    "taew2_1.pth",
    alternatives=("taew2_1.safetensors", "lighttaew2_1.safetensors", "lighttaew2_1.pth"),
    size_hint="22 MB",
)
TAEW22 = ModelFile(
    "taehv",
    "vae_approx",
    "taew2_2.pth",
    "madebyollin/taehv",
    "taew2_2.pth",
    alternatives=("taew2_2.safetensors", "lighttaew2_2.safetensors", "lighttaew2_2.pth"),
    size_hint="22 MB",
)
CLIP_H = ModelFile(
    "clip_vision",
    "clip_vision",
    "clip_vision_h.safetensors",
    _WAN21,
    "split_files/clip_vision/clip_vision_h.safetensors",
    alternatives=("models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth",),
    size_hint="1.3 GB",
)


def _dit(name: str, repo: str, path: str, size: str = "", alts: tuple[str, ...] = ()) -> ModelFile:
    return ModelFile("dit", "diffusion_models", name, repo, path, alternatives=alts, size_hint=size)


@dataclass(frozen=True)
class RolloutPreset:
    """Everything the pipeline and the CLI need to run one published model the way it was published."""

    name: str
    description: str
    task: str  # "t2v" | "i2v" (Wan2.1 14B style: CLIP + mask + image latent as y) | "ti2v" (first latent stamped)
    dit: ModelFile
    vae: ModelFile
    text_encoder: ModelFile = UMT5
    taehv: ModelFile | None = None
    clip_vision: ModelFile | None = None
    dit_low_noise: ModelFile | None = (
        None  # Wan2.2 A14B: the low-noise expert (``dit`` is the high-noise one)
    )
    lora: ModelFile | None = None  # merged into the DiT at load (LongLive)
    # sampling
    # "few_step" (AR, chunk by chunk) | "rolling_forcing" (AR, a window of chunks at staggered noise levels,
    # schemes/rolling_forcing.py) | "euler_cfg" (bidirectional, one chunk) | "unipc" (AR, chunk by chunk,
    # each chunk solved by multistep UniPC: LongLive 2.0, schemes/causal_unipc.py; ``schedule`` is then a
    # ``UniPCSchedule``)
    sampler: str = "few_step"
    schedule: FewStepSchedule | UniPCSchedule | None = None
    # few_step: chunk 0's own step list (Causal Forcing++ 1 / 2-step: the first chunk takes 4 steps)
    first_chunk_schedule: FewStepSchedule | None = None
    euler: EulerSchedule | None = None
    guidance_scale: float = 1.0  # CFG (euler_cfg); for dual expert: the low-noise expert's scale
    guidance_scale_high: float | None = None  # dual expert: high-noise expert's CFG scale
    boundary: float | None = None  # dual expert: t >= boundary * 1000 -> high-noise expert
    # chunking and cache (latent frames)
    frames_per_chunk: int = 3  # 0 = the whole video is one chunk
    # attention window in latent frames, counting the current chunk and not the sink (so the reference
    # configs' ``local_attn_size`` = sink_frames + window_frames); None = every frame of the video
    window_frames: int | None = 21
    sink_frames: int = 0
    # Krea KV recompute: context latent frames (anchor + the last K-1) rebuilt into the cache before every
    # chunk; 0 = off (clean context pass per chunk). Anchor: "reencode" (Krea default: VAE-encode a decoded
    # frame) | "first_frame" (Krea ``keep_first_frame``: latent frame 0). See schemes/kv_recompute.py.
    kv_recompute_frames: int = 0
    kv_recompute_anchor: str = "reencode"
    # Reward Forcing's EMA sink: > 0 = the rate alpha with which the sink's K/V take in the frames evicted
    # from the window (sink = alpha * sink + (1 - alpha) * evicted; schemes/ema_sink.py); 0 = a fixed sink
    sink_ema: float = 0.0
    # the weight set of a training checkpoint (``generator`` / ``generator_ema``) the family's official
    # inference loads; Load Wan DiT / ``--weights auto`` prefer it (``load_dit(prefer=...)``)
    weight_set: str = "generator_ema"
    image_stamp: str = "none"  # "none" | "mask_inject" | "clean_t0" (TI2V) | "concat_y" (I2V 14B)
    # the rollout scheme by its registered name (``rollout/schemes``); None: the published one, derived
    # from ``sampler`` and ``kv_recompute_frames`` (see ``scheme``)
    custom_scheme: str | None = None
    # video
    height: int = 480
    width: int = 832
    fps: int = 16
    default_frames: int = 81  # pixel frames
    latent_channels: int = 16
    vae_stride: tuple[int, int, int] = (4, 8, 8)
    patch_size: tuple[int, int, int] = (1, 2, 2)

    def __post_init__(self) -> None:
        if self.task not in ("t2v", "i2v", "ti2v"):
            raise ValueError(f"{self.name}: task must be t2v / i2v / ti2v, got {self.task!r}")
        if self.sampler == "few_step" and self.schedule is None:
            raise ValueError(f"{self.name}: few_step sampler needs a FewStepSchedule")
        if self.sampler == "euler_cfg" and self.euler is None:
            raise ValueError(f"{self.name}: euler_cfg sampler needs an EulerSchedule")
        if self.sampler == "rolling_forcing" and self.schedule is None:
            raise ValueError(f"{self.name}: rolling_forcing sampler needs a FewStepSchedule")
        if (self.sampler == "unipc") != isinstance(self.schedule, UniPCSchedule):
            raise ValueError(f"{self.name}: the unipc sampler (and only it) takes a UniPCSchedule")
        if self.sampler not in ("few_step", "euler_cfg", "rolling_forcing", "unipc"):
            raise ValueError(f"{self.name}: unknown sampler {self.sampler!r}")
        if self.first_chunk_schedule is not None and self.sampler != "few_step":
            raise ValueError(f"{self.name}: first_chunk_schedule is for the few_step sampler")
        if self.sink_ema and not (0.0 < self.sink_ema < 1.0 and self.sink_frames > 0):
            raise ValueError(f"{self.name}: an EMA sink needs 0 < sink_ema < 1 and sink_frames > 0")
        if self.weight_set not in WEIGHT_SETS:
            raise ValueError(f"{self.name}: weight_set must be one of {WEIGHT_SETS}, got {self.weight_set!r}")
        if self.kv_recompute_frames:
            if self.kv_recompute_frames < 2 or self.kv_recompute_anchor not in ("reencode", "first_frame"):
                raise ValueError(
                    f"{self.name}: KV recompute needs kv_recompute_frames >= 2 and anchor reencode / first_frame"
                )
            if (
                self.sink_frames
                or (self.window_frames or 0) < self.kv_recompute_frames + self.frames_per_chunk
            ):
                raise ValueError(
                    f"{self.name}: KV recompute needs sink_frames 0 and window_frames >= kv_recompute_frames + "
                    f"frames_per_chunk = {self.kv_recompute_frames + self.frames_per_chunk}"
                )
        if (self.boundary is None) != (self.dit_low_noise is None):
            raise ValueError(f"{self.name}: a dual-expert preset needs both boundary and dit_low_noise")

    @property
    def is_autoregressive(self) -> bool:
        return self.sampler in ("few_step", "rolling_forcing", "unipc")

    @property
    def scheme(self) -> str:
        """Name of the rollout scheme that runs this preset (``rollout/schemes``)."""
        if self.custom_scheme is not None:
            return self.custom_scheme
        if self.sampler == "euler_cfg":
            return "bidirectional"
        if self.sampler == "rolling_forcing":
            return "rolling_forcing"
        if self.sampler == "unipc":
            return "causal_unipc"
        if self.sink_ema:
            return "ema_sink"
        return "kv_recompute" if self.kv_recompute_frames else "causal"

    def files(self, decoder: str = "vae") -> list[ModelFile]:
        """Files needed to run this preset with the given decoder ("vae" | "taehv")."""
        out = [self.dit]
        if self.dit_low_noise is not None:
            out.append(self.dit_low_noise)
        if self.lora is not None:
            out.append(self.lora)
        out.append(self.text_encoder)
        if decoder == "taehv":
            if self.taehv is None:
                raise ValueError(f"preset {self.name!r} has no TAEHV decoder; use --decoder vae")
            out.append(self.taehv)
        needs_encoder = self.task in ("i2v", "ti2v") or (
            self.kv_recompute_frames and self.kv_recompute_anchor == "reencode"
        )
        if decoder == "vae" or needs_encoder:
            out.append(self.vae)  # I2V / TI2V / Krea's re-encoded anchor need the VAE encoder in any case
        if self.clip_vision is not None:
            out.append(self.clip_vision)
        return out

    def with_overrides(self, **kw) -> RolloutPreset:
        return replace(self, **kw)


_SF_STEPS = FewStepSchedule(steps=(1000, 750, 500, 250), shift=5.0, warp=True)


def _comfy_dit(repo: str, name: str, role: str = "dit", alts: tuple[str, ...] = ()) -> ModelFile:
    """A DiT in a Comfy-Org repackaged repo (``split_files/diffusion_models/<name>``)."""
    return ModelFile(
        role, "diffusion_models", name, repo, f"split_files/diffusion_models/{name}", alternatives=alts
    )


# Self-Forcing family: causal Wan2.1 T2V 1.3B distilled to 4 warped steps (shift 5), chunks of 3 latent
# frames, 21-frame window, Wan2.1 VAE / TAEHV. The others differ only where stated.
SELF_FORCING = RolloutPreset(
    name="self-forcing-1.3b",
    description="Self-Forcing DMD (Wan2.1 T2V 1.3B, causal, 4 steps, chunks of 3 latent frames)",
    task="t2v",
    dit=_dit("self_forcing_dmd.pt", "gdhe17/Self-Forcing", "checkpoints/self_forcing_dmd.pt", "5.7 GB"),
    vae=VAE21,
    taehv=TAEW21,
    schedule=_SF_STEPS,
)

# Base Wan2.1 T2V 1.3B: bidirectional (the whole video is one chunk, every frame attends to every frame),
# Euler 50 steps, shift 5, CFG 5. The other base presets differ only where stated.
WAN21_T2V = RolloutPreset(
    name="wan2.1-t2v-1.3b",
    description="Base Wan2.1 T2V 1.3B, bidirectional, Euler 50 steps, CFG 5",
    task="t2v",
    dit=_comfy_dit(_WAN21, "wan2.1_t2v_1.3B_fp16.safetensors"),
    vae=VAE21,
    taehv=TAEW21,
    sampler="euler_cfg",
    euler=EulerSchedule(num_steps=50, shift=5.0),
    guidance_scale=5.0,
    frames_per_chunk=0,
    window_frames=None,
)

WAN22_T2V_A14B = replace(
    WAN21_T2V,
    name="wan2.2-t2v-a14b",
    description="Wan2.2 T2V A14B: high-noise expert for t >= 875, low-noise after; Euler 40 steps, CFG 4 / 3",
    dit=_comfy_dit(_WAN22, "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors"),
    dit_low_noise=_comfy_dit(_WAN22, "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors", role="dit_low_noise"),
    euler=EulerSchedule(num_steps=40, shift=12.0),
    guidance_scale=3.0,
    guidance_scale_high=4.0,
    boundary=0.875,
)

# Causal Forcing++ (thu-ml/Causal-Forcing @1fc7bbc, configs/causal_forcing_dmd_framewise_{2,1}step.yaml):
# frame-wise (1 latent frame per chunk), warped steps [1000, 500] / [1000] at shift 5, and
# ``denoising_step_list_first_chunk`` [1000, 750, 500, 250] for chunk 0; full attention over 21 frames
# (no local_attn_size); README runs both with --use_ema (generator_ema).
CAUSAL_FORCING_PP_2STEP = replace(
    SELF_FORCING,
    name="causal-forcing-pp-2step-1.3b",
    description="Causal Forcing++ frame-wise 2-step (Wan2.1 T2V 1.3B; the first frame takes 4 steps)",
    dit=_dit(
        "causal_forcing_pp_framewise_2step.pt",
        "zhuhz22/Causal-Forcing",
        "causal-forcing++/framewise-2step.pt",
    ),
    schedule=FewStepSchedule(steps=(1000, 500), shift=5.0, warp=True),
    first_chunk_schedule=_SF_STEPS,
    frames_per_chunk=1,
)

# Reward Forcing (JaydenLyh/Reward-Forcing @4317f5a, configs/reward_forcing.yaml, wan/modules/causal_model.py):
# Self-Forcing's 4 warped steps at shift 5, chunks of 3; local_attn_size 9 + sink_size 3 = sink 3 + window 6;
# keys cached un-roped and roped relative to the cache at attention time (relative RoPE); when a chunk evicts
# as many window tokens as the sink holds, the sink K/V become 0.999 * sink + 0.001 * evicted
# (``compression_alpha``; fewer evicted tokens are copied over the sink's first ones). The released
# ``rewardforcing.pt`` is a bare generator state dict (inference.py loads it whole).
REWARD_FORCING = replace(
    SELF_FORCING,
    name="reward-forcing-1.3b",
    description="Reward Forcing (Wan2.1 T2V 1.3B, 4 steps, chunks of 3): sink 3 + window 6, EMA sink",
    dit=_dit("rewardforcing.pt", "JaydenLu666/Reward-Forcing-T2V-1.3B", "rewardforcing.pt"),
    window_frames=6,
    sink_frames=3,
    sink_ema=0.999,
)

# LongLive 2.0 5B (NVlabs/LongLive @7860ad9, configs/inference.yaml / inference_i2v.yaml,
# pipeline/causal_diffusion_inference.py): causal Wan2.2 TI2V 5B, chunks of 8 latent frames, each solved by
# FlowUniPCMultistepScheduler with 4 steps at shift 5 (no CFG: guidance 1.0), then a clean context pass at
# t = 0; local_attn_size 32 with sink_size 8 = sink 8 + window 24, absolute RoPE (use_relative_rope off);
# 128 latent frames at 704x1280, 24 fps; use_ema: false. I2V: the image latent replaces latent 0 of the
# first chunk before and after every step, its timestep 0. ``model_bf16.pt`` is the merged (LoRA folded)
# BF16 generator; the NVFP4 files (TransformerEngine / FourOverSix) are not supported.
LONGLIVE2_5B = RolloutPreset(
    name="longlive2-5b",
    description="LongLive 2.0 (Wan2.2 TI2V 5B, causal): chunks of 8 latent frames, UniPC 4 steps, sink 8 + window 24",
    task="ti2v",
    dit=_dit(
        "longlive2_5b_bf16.pt",
        "Efficient-Large-Model/LongLive-2.0-5B",
        "model_bf16.pt",
        "10 GB",
        alts=("model_bf16.pt",),
    ),
    vae=VAE22,
    taehv=TAEW22,
    sampler="unipc",
    schedule=UniPCSchedule(num_steps=4, shift=5.0),
    frames_per_chunk=8,
    window_frames=24,
    sink_frames=8,
    image_stamp="clean_t0",
    height=704,
    width=1280,
    fps=24,
    default_frames=509,  # 128 latent frames
    latent_channels=48,
    vae_stride=(4, 16, 16),
    weight_set="generator",
)

_presets = [
    SELF_FORCING,
    replace(
        SELF_FORCING,
        name="causvid-1.3b",
        description="CausVid autoregressive DMD (Wan2.1 T2V 1.3B, 3 steps, shift 8, no warping)",
        dit=_dit("causvid_model.pt", "tianweiy/CausVid", "autoregressive_checkpoint/model.pt", "10.6 GB"),
        schedule=FewStepSchedule(steps=(1000, 757, 522), shift=8.0, warp=False),
    ),
    replace(
        SELF_FORCING,
        name="longlive-1.3b",
        description="LongLive (Wan2.1 T2V 1.3B + LoRA): short window 12 + frame sink 3, prompt switching",
        dit=_dit(
            "longlive_base.pt", "Efficient-Large-Model/LongLive-1.3B", "models/longlive_base.pt", "5.3 GB"
        ),
        lora=ModelFile(
            "lora",
            "loras",
            "longlive_lora.pt",
            "Efficient-Large-Model/LongLive-1.3B",
            "models/lora.pt",
            size_hint="1.4 GB",
        ),
        window_frames=9,  # LongLive local_attn_size 12 = sink 3 + window 9 (window counts the current chunk)
        sink_frames=3,
        default_frames=477,  # longlive_inference.yaml num_output_frames 120 latent frames
        weight_set="generator",  # longlive_inference.yaml use_ema: false
    ),
    replace(
        SELF_FORCING,
        name="rolling-forcing-1.3b",
        description="Rolling Forcing DMD (Wan2.1 T2V 1.3B, 5 steps): 5 chunks denoised jointly at staggered noise levels",
        dit=_dit("rolling_forcing_dmd.pt", "TencentARC/RollingForcing", "checkpoints/rolling_forcing_dmd.pt"),
        schedule=FewStepSchedule(steps=(1000, 800, 600, 400, 200), shift=5.0, warp=True),
        sampler="rolling_forcing",
    ),
    replace(
        SELF_FORCING,
        name="causal-forcing-chunkwise-1.3b",
        description="Causal Forcing chunk-wise (Wan2.1 T2V 1.3B, 4 steps, chunks of 3 latent frames)",
        dit=_dit("causal_forcing_chunkwise.pt", "zhuhz22/Causal-Forcing", "chunkwise/causal_forcing.pt"),
        weight_set="generator",  # README: the chunk-wise command runs inference.py without --use_ema
    ),
    replace(
        SELF_FORCING,
        name="causal-forcing-framewise-1.3b",
        description="Causal Forcing frame-wise (Wan2.1 T2V 1.3B, 4 steps, one latent frame per chunk)",
        dit=_dit("causal_forcing_framewise.pt", "zhuhz22/Causal-Forcing", "framewise/causal_forcing.pt"),
        frames_per_chunk=1,
    ),
    replace(
        SELF_FORCING,
        name="krea-realtime-14b",
        description="Krea realtime video (Wan2.1 T2V 14B, causal, 4 steps, KV cache recomputed every chunk)",
        dit=_dit(
            "krea-realtime-video-14b.safetensors",
            "krea/krea-realtime-video",
            "krea-realtime-video-14b.safetensors",
            "28.6 GB",
        ),
        # server: get_denoising_schedule(5 steps) -> 1000, 937.5, 833.3, 625, 0
        schedule=FewStepSchedule(steps=(1000, 750, 500, 250), shift=5.0, warp=True, final_t0_step=True),
        window_frames=6,  # Krea cache: kv_cache_num_frames 3 + num_frame_per_block 3
        kv_recompute_frames=3,
    ),
    CAUSAL_FORCING_PP_2STEP,
    replace(
        CAUSAL_FORCING_PP_2STEP,
        name="causal-forcing-pp-1step-1.3b",
        description="Causal Forcing++ frame-wise 1-step (Wan2.1 T2V 1.3B; the first frame takes 4 steps)",
        dit=_dit(
            "causal_forcing_pp_framewise_1step.pt",
            "zhuhz22/Causal-Forcing",
            "causal-forcing++/framewise-1step.pt",
        ),
        schedule=FewStepSchedule(steps=(1000,), shift=5.0, warp=True),
    ),
    REWARD_FORCING,
    LONGLIVE2_5B,
    WAN21_T2V,
    replace(
        WAN21_T2V,
        name="wan2.1-t2v-14b",
        description="Base Wan2.1 T2V 14B, bidirectional, Euler 50 steps, CFG 5",
        dit=_comfy_dit(
            _WAN21,
            "wan2.1_t2v_14B_fp8_scaled.safetensors",
            alts=("wan2.1_t2v_14B_fp16.safetensors", "wan2.1_t2v_14B_bf16.safetensors"),
        ),
    ),
    replace(
        WAN21_T2V,
        name="wan2.1-i2v-14b-480p",
        description="Base Wan2.1 I2V 14B 480p: CLIP features + mask + image latent, Euler 40 steps, CFG 5",
        task="i2v",
        dit=_comfy_dit(
            _WAN21,
            "wan2.1_i2v_480p_14B_fp8_scaled.safetensors",
            alts=("wan2.1_i2v_480p_14B_fp16.safetensors", "wan2.1_i2v_480p_14B_bf16.safetensors"),
        ),
        clip_vision=CLIP_H,
        euler=EulerSchedule(num_steps=40, shift=3.0),
        image_stamp="concat_y",
    ),
    replace(
        WAN21_T2V,
        name="wan2.2-ti2v-5b",
        description="Wan2.2 TI2V 5B (text or text+image), 704x1280 24 fps, Euler 50 steps, CFG 5",
        task="ti2v",
        dit=_comfy_dit(_WAN22, "wan2.2_ti2v_5B_fp16.safetensors"),
        vae=VAE22,
        taehv=TAEW22,
        image_stamp="clean_t0",
        height=704,
        width=1280,
        fps=24,
        default_frames=121,
        latent_channels=48,
        vae_stride=(4, 16, 16),
    ),
    WAN22_T2V_A14B,
    replace(
        WAN22_T2V_A14B,
        name="wan2.2-i2v-a14b",
        description="Wan2.2 I2V A14B: mask + image latent (no CLIP), experts switch at t = 900; Euler 40 steps, CFG 3.5",
        task="i2v",
        dit=_comfy_dit(_WAN22, "wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors"),
        dit_low_noise=_comfy_dit(
            _WAN22, "wan2.2_i2v_low_noise_14B_fp8_scaled.safetensors", role="dit_low_noise"
        ),
        euler=EulerSchedule(num_steps=40, shift=5.0),
        guidance_scale=3.5,
        guidance_scale_high=3.5,
        boundary=0.9,
        image_stamp="concat_y",
    ),
]

PRESETS: dict[str, RolloutPreset] = {p.name: p for p in _presets}


def official_weight_set(file_name: str) -> str | None:
    """The weight set the official inference of the family whose DiT file is ``file_name`` loads (by the
    file's name, as a preset names it or its alternatives); None for a file no preset names."""
    base = file_name.replace("\\", "/").rsplit("/", 1)[-1]
    for p in PRESETS.values():
        if base == p.dit.name or base in p.dit.alternatives:
            return p.weight_set
    return None


def get_preset(name: str) -> RolloutPreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}") from None
