"""I2V Control Encode: IMAGE (+ CLIP vision) -> the image conditioning of Wan 2.1 I2V / Wan 2.2 TI2V."""

from __future__ import annotations

from comfy_api.latest import io

from . import core_bridge, model_folders
from .socket_types import CATEGORY, WanConditioning, WanVAE


class WanStreamI2VControlEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="WanStreamI2VControlEncode",
            display_name="I2V Control Encode (Stream)",
            category=CATEGORY,
            description=(
                "Adds a start image to the conditioning. With the Wan 2.1 VAE and a CLIP vision model: "
                "Wan2.1 14B I2V conditioning (mask + VAE latent + CLIP-ViT-H tokens). With the Wan 2.2 VAE: "
                "Wan2.2 TI2V 5B conditioning (the image becomes the first latent frame). Width and height "
                "come from the image and must be multiples of the model's stride."
            ),
            inputs=[
                WanConditioning.Input(
                    "conditioning", tooltip="The prompt conditioning from Encode UMT5 Prompt."
                ),
                WanVAE.Input(
                    "vae",
                    tooltip="The full Wan VAE (2.1 for Wan2.1 I2V, 2.2 for TI2V 5B) that encodes the image.",
                ),
                io.Image.Input(
                    "image",
                    tooltip="The start image (first of a batch is used); its size sets the video size.",
                ),
                io.Combo.Input(
                    "clip_vision",
                    options=model_folders.choices("clip_vision", with_none=True),
                    default=model_folders.NONE_CHOICE,
                    tooltip="CLIP vision model (clip_vision_h) from models/clip_vision: required by Wan2.1 I2V, "
                    "'none' for Wan2.2 TI2V 5B.",
                ),
                io.Boolean.Input(
                    "download",
                    default=False,
                    tooltip="Download the selected known CLIP vision file from Hugging Face when it is missing.",
                ),
            ],
            outputs=[
                WanConditioning.Output(display_name="conditioning", tooltip="Prompt + image conditioning."),
                io.Int.Output(
                    display_name="width", tooltip="Video width from the image (connect to the sampler)."
                ),
                io.Int.Output(
                    display_name="height", tooltip="Video height from the image (connect to the sampler)."
                ),
            ],
        )

    @classmethod
    def execute(cls, conditioning, vae, image, clip_vision, download) -> io.NodeOutput:
        clip_path = None
        if clip_vision != model_folders.NONE_CHOICE:
            clip_path = model_folders.resolve("clip_vision", clip_vision, download, "I2V Control Encode")
        cond = core_bridge.encode_image_condition(conditioning, vae, image, clip_path)
        return io.NodeOutput(cond, cond.image.width, cond.image.height)
