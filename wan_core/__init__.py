"""wan_core: self-contained PyTorch inference for streaming autoregressive Wan 2.1 / 2.2 video.

Never imports ComfyUI. See docs/ARCHITECTURE.md for the parts and their contracts.
"""

__version__ = "0.1.0"
