"""A video's start image as the DiT reads it (``ImageCondition``): I2V 14B's streamed ``y``
(mask + image latent, with CLIP features when the DiT has image cross-attention), or the image latent
stamped into latent frame 0 (TI2V ``clean_t0``, ``mask_inject``)."""

from __future__ import annotations

from .conditioning import ConcatYStream, ImageCondition

__all__ = ["image_condition"]


def image_condition(preset, dit_config, image, mode, *, vae, clip_vision, latent_hw, device):
    """``(ImageCondition or None, clip_fea or None)`` for ``image`` ``[B, 3, H, W]`` in [-1, 1] (or None).
    ``mode``: the preset's ``image_stamp`` unless the caller overrides it."""
    mode = mode or preset.image_stamp
    if image is None:
        if mode == "concat_y" or dit_config.cond_dim:
            raise ValueError(f"preset {preset.name!r} is image-to-video: pass image=[B, 3, H, W]")
        return None, None
    image = image.to(device)
    if image.ndim == 3:
        image = image[None]
    if mode == "none":
        mode = "mask_inject"
    if mode == "concat_y":
        if vae is None:
            raise ValueError("image-to-video needs the VAE encoder (vae=...)")
        clip_fea = None
        if dit_config.image_cross_attn:
            if clip_vision is None:
                raise ValueError("this I2V DiT needs CLIP vision features: pass clip_vision=...")
            clip_fea = clip_vision(image)
        y = ConcatYStream(vae, image, preset.vae_stride[0])
        return ImageCondition(mode, clip_fea=clip_fea, y_stream=y), clip_fea
    if vae is None:
        raise ValueError("image conditioning needs the VAE encoder (vae=...)")
    z = vae.encode_chunk(image[:, :, None], vae.new_encode_cache())  # [B, C, 1, h, w]
    if z.shape[-2:] != tuple(latent_hw):
        raise ValueError(
            f"image latent {tuple(z.shape[-2:])} does not match the video latent {tuple(latent_hw)}"
        )
    return ImageCondition(mode, image_latent=z.float()), None
