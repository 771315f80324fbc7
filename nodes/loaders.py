"""Load Wan DiT, Load Wan VAE, Load TAEHV: files from ComfyUI's model folders, kind/size/format
detected from the weights themselves (``wan_core`` loaders)."""

from __future__ import annotations

from comfy_api.latest import io

from wan_core.dit.keymap import WEIGHT_CHOICES

from . import comfy_runtime as rt
from . import core_bridge, model_folders
from .legacy_inputs import legacy
from .socket_types import CATEGORY, WanDiT, WanVAE
from .speed import SPEEDS

_DOWNLOAD_TIP = (
    "When the selected file is a known model that is not in the folder yet, download it from Hugging Face "
    "into the folder first (off: a missing file is an error)."
)


class WanStreamLoadDiT(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="WanStreamLoadDiT",
            display_name="Load Wan DiT (Stream)",
            category=CATEGORY,
            description=(
                "Loads a Wan 2.1 / 2.2 diffusion transformer from models/diffusion_models: official, "
                "ComfyUI, Self-Forcing / CausVid / Krea checkpoints (.safetensors or .pt), fp16/bf16/fp32 "
                "or fp8 scaled. Model size (1.3B / 5B / 14B) and kind (T2V / I2V / TI2V) are read from the weights."
            ),
            inputs=[
                io.Combo.Input(
                    "model_name",
                    options=model_folders.choices("diffusion_models"),
                    tooltip="DiT weights in models/diffusion_models (known models not yet downloaded are listed too).",
                ),
                io.Combo.Input(
                    "precision",
                    options=rt.DIT_PRECISIONS,
                    default="auto",
                    tooltip="Compute precision. auto: bf16 where supported, else fp16 (fp32 on CPU). "
                    "fp8: weights kept in 8 bits (a file's own fp8 scales are used), math in bf16. "
                    "fp8_fast: the transformer blocks' linear layers compute in FP8 (e4m3 tensor cores, "
                    "per-token scales; from a bf16/fp16 or an fp8 file): faster, slightly less exact; "
                    "needs an RTX 40xx / Ada, H100 / Hopper or newer GPU.",
                ),
                io.Combo.Input(
                    "attention",
                    options=rt.ATTENTION_BACKENDS,
                    default="auto",
                    tooltip="Attention kernel. auto: the fastest one installed (flash > sage > PyTorch SDPA).",
                ),
                legacy(
                    io.Boolean.Input(
                        "compile",
                        default=False,
                        tooltip="Kept for saved workflows (see speed): on = torch.compile the transformer "
                        "blocks whatever speed says; off = as speed says.",
                    )
                ),
                legacy(
                    io.Boolean.Input(
                        "cuda_graphs",
                        default=False,
                        tooltip="Kept for saved workflows (see speed): on = CUDA graphs whatever speed says "
                        "(CUDA only); off = as speed says.",
                    )
                ),
                io.Boolean.Input("download", default=False, tooltip=_DOWNLOAD_TIP),
                io.Combo.Input(
                    "lora_name",
                    options=model_folders.choices("loras", with_none=True),
                    default=model_folders.NONE_CHOICE,
                    tooltip="Optional LoRA from models/loras merged into the weights at load (LongLive ships "
                    "its model as base + LoRA); 'none' for most models.",
                ),
                io.Float.Input(
                    "lora_strength",
                    default=1.0,
                    min=-4.0,
                    max=4.0,
                    step=0.05,
                    tooltip="Scale of the merged LoRA (1.0 = as trained).",
                ),
                io.Combo.Input(
                    "weights",
                    options=list(WEIGHT_CHOICES),
                    default="auto",
                    optional=True,
                    tooltip="Training checkpoints hold two weight sets: generator (as trained) and generator_ema "
                    "(their average). auto: the set the model family's official inference loads (LongLive, "
                    "Causal Forcing chunk-wise: generator; Self-Forcing, Causal Forcing frame-wise: "
                    "generator_ema; an unknown file: generator_ema if present). Files with one set: auto.",
                ),
                io.Combo.Input(
                    "speed",
                    optional=True,
                    options=list(SPEEDS),
                    default="auto",
                    tooltip="auto: on a CUDA GPU, CUDA graphs + fused q/k/v + decoding overlapped with the next "
                    "chunk, and torch.compile where Triton is installed (slow first chunk, faster after); if "
                    "compiling or capturing fails the model runs eager, with a warning, and the job goes on. "
                    "On the CPU: eager. eager: none of them (the plain path).",
                ),
            ],
            outputs=[WanDiT.Output(display_name="dit", tooltip="The loaded Wan DiT.")],
        )

    @classmethod
    def execute(
        cls,
        model_name,
        precision,
        attention,
        compile,
        cuda_graphs,
        download,
        lora_name,
        lora_strength,
        weights="auto",
        speed="auto",
    ) -> io.NodeOutput:
        path = model_folders.resolve("diffusion_models", model_name, download, "Load Wan DiT")
        lora_path = None
        if lora_name != model_folders.NONE_CHOICE:
            lora_path = model_folders.resolve("loras", lora_name, download, "Load Wan DiT")
        return io.NodeOutput(
            core_bridge.load_dit(
                path,
                precision=precision,
                attention=attention,
                compile=compile,
                cuda_graphs=cuda_graphs,
                lora_path=lora_path,
                lora_strength=lora_strength,
                weights=weights,
                speed=speed,
            )
        )


class WanStreamLoadVAE(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="WanStreamLoadVAE",
            display_name="Load Wan VAE (Stream)",
            category=CATEGORY,
            description=(
                "Loads the causal Wan video VAE from models/vae: Wan 2.1 (16 latent channels, 8x spatial) or "
                "Wan 2.2 (48 channels, 16x, for TI2V 5B), detected from the weights. Decodes chunk by chunk "
                "with a causal cache."
            ),
            inputs=[
                io.Combo.Input(
                    "vae_name",
                    options=model_folders.choices("vae"),
                    tooltip="VAE weights in models/vae (wan_2.1_vae / wan2.2_vae or the official .pth).",
                ),
                io.Combo.Input(
                    "precision",
                    options=rt.VAE_PRECISIONS,
                    default="auto",
                    tooltip="Compute precision. auto: bf16 where supported, else fp16 (fp32 on CPU).",
                ),
                io.Boolean.Input("download", default=False, tooltip=_DOWNLOAD_TIP),
            ],
            outputs=[WanVAE.Output(display_name="vae", tooltip="The loaded Wan VAE.")],
        )

    @classmethod
    def execute(cls, vae_name, precision, download) -> io.NodeOutput:
        path = model_folders.resolve("vae", vae_name, download, "Load Wan VAE")
        return io.NodeOutput(core_bridge.load_vae(path, precision=precision))


class WanStreamLoadTAEHV(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="WanStreamLoadTAEHV",
            display_name="Load TAEHV (Stream)",
            category=CATEGORY,
            description=(
                "Loads a tiny video autoencoder (TAEHV: taew2_1 / lighttaew2_1 for Wan 2.1 latents, "
                "taew2_2 / lighttaew2_2 for Wan 2.2 TI2V 5B) from models/vae_approx, for the live preview "
                "and fast decoding."
            ),
            inputs=[
                io.Combo.Input(
                    "taehv_name",
                    options=model_folders.choices("vae_approx"),
                    tooltip="TAEHV weights in models/vae_approx (.pth or .safetensors).",
                ),
                io.Combo.Input(
                    "precision",
                    options=rt.VAE_PRECISIONS,
                    default="auto",
                    tooltip="Compute precision. auto: fp16/bf16 on GPU, fp32 on CPU.",
                ),
                io.Boolean.Input("download", default=False, tooltip=_DOWNLOAD_TIP),
            ],
            outputs=[
                WanVAE.Output(
                    display_name="taehv", tooltip="The loaded TAEHV (usable wherever a Wan VAE decodes)."
                )
            ],
        )

    @classmethod
    def execute(cls, taehv_name, precision, download) -> io.NodeOutput:
        path = model_folders.resolve("vae_approx", taehv_name, download, "Load TAEHV")
        return io.NodeOutput(core_bridge.load_taehv(path, precision=precision))
