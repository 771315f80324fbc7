"""The pack's custom socket types (``comfy_api.latest`` ``io.Custom``); values are ``payloads`` objects."""

from comfy_api.latest import io

WanDiT = io.Custom("WANSTREAM_DIT")  # payloads.LoadedDiT
WanVAE = io.Custom("WANSTREAM_VAE")  # payloads.LoadedVAE (full Wan VAE or TAEHV)
WanConditioning = io.Custom("WANSTREAM_CONDITIONING")  # payloads.StreamConditioning

CATEGORY = "Wan Stream"
