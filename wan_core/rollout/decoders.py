"""Deprecated: the decoder interface lives in ``wan_core.vae.stream`` (``as_rollout_decoder``,
``rollout_decoder``, ``OnDevice``); these names are kept for older imports."""

from wan_core.vae.stream import as_rollout_decoder as as_stream_decoder_factory

__all__ = ["as_stream_decoder_factory"]
