"""Speed preparation of a loaded DiT: ``prepare_dit`` (the one place that orders LoRA merge, fused
q/k/v, FP8 linears and ``torch.compile``)."""

from .prepare import PrepareReport, prepare_dit

__all__ = ["PrepareReport", "prepare_dit"]
