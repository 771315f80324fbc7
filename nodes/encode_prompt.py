"""Encode UMT5 Prompt: positive / negative prompt and prompt switches -> WANSTREAM_CONDITIONING."""

from __future__ import annotations

from comfy_api.latest import io

from . import comfy_runtime as rt
from . import core_bridge, model_folders
from .prompt_schedule import parse_prompt_switches
from .socket_types import CATEGORY, WanConditioning


class WanStreamEncodePrompt(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="WanStreamEncodePrompt",
            display_name="Encode UMT5 Prompt (Stream)",
            category=CATEGORY,
            description=(
                "Encodes the prompt (and an optional negative prompt) with the UMT5-XXL text encoder from "
                "models/text_encoders, plus prompt switches that take over at chosen chunks (long videos "
                "whose content changes). Embeddings are cached per prompt, so re-running a workflow does not "
                "reload the encoder."
            ),
            inputs=[
                io.Combo.Input(
                    "text_encoder",
                    options=model_folders.choices("text_encoders"),
                    tooltip="UMT5-XXL encoder in models/text_encoders (ComfyUI umt5_xxl_* or the official "
                    "models_t5_umt5-xxl-enc-bf16.pth); its tokenizer comes with the file or with wan_core.",
                ),
                io.String.Input(
                    "positive", multiline=True, default="", tooltip="What the video shows (from chunk 0 on)."
                ),
                io.String.Input(
                    "negative",
                    multiline=True,
                    default="",
                    tooltip="What to avoid; used only by presets with classifier-free guidance (base many-step). "
                    "Empty: the model's default negative prompt where the preset uses one.",
                ),
                io.String.Input(
                    "prompt_switches",
                    multiline=True,
                    default="",
                    tooltip="Optional prompt changes for long videos, one per line: '<seconds>s: <prompt>' "
                    "(e.g. '5s: the fox jumps into a frozen river', '2.5s: ...') or '<start chunk>: <prompt>' "
                    "(e.g. '4: ...'). A switch applies from the first chunk that starts at or after that time "
                    "(the sampler converts with the preset's chunk size and fps) or from that chunk on. Lines "
                    "starting with # are ignored.",
                ),
                io.Combo.Input(
                    "precision",
                    options=rt.PRECISIONS,
                    default="auto",
                    tooltip="Encoder precision. auto: the file's own (fp8 scaled files stay fp8), bf16 on GPU and with "
                    "device cpu, fp32 when ComfyUI itself runs on the CPU.",
                ),
                io.Boolean.Input(
                    "download",
                    default=False,
                    tooltip="Download the selected known encoder file from Hugging Face when it is missing.",
                ),
                io.Combo.Input(
                    "device",
                    optional=True,
                    options=list(core_bridge.TEXT_ENCODER_DEVICES),
                    default="auto",
                    tooltip="Where the encoder loads and runs. auto: ComfyUI's GPU. cpu: system RAM and CPU, for "
                    "small GPUs (UMT5-XXL needs ~11 GB in bf16, ~6 GB in fp8); slower, but only the embeddings "
                    "reach the GPU. Cached prompts are reused whichever device encoded them.",
                ),
            ],
            outputs=[
                WanConditioning.Output(
                    display_name="conditioning", tooltip="The prompt schedule, for the Streaming AR Sampler."
                )
            ],
        )

    @classmethod
    def execute(
        cls, text_encoder, positive, negative, prompt_switches, precision, download, device="auto"
    ) -> io.NodeOutput:
        schedule = parse_prompt_switches(positive, prompt_switches)
        path = model_folders.resolve("text_encoders", text_encoder, download, "Encode UMT5 Prompt")
        return io.NodeOutput(
            core_bridge.encode_prompt_schedule(path, schedule, negative, precision=precision, device=device)
        )
