"""Rollout schemes (one file each) and their registry; see ``base.py`` and docs/ARCHITECTURE.md."""

from . import bidirectional, causal, causal_unipc, ema_sink, kv_recompute, rolling_forcing  # noqa: F401  (built-ins)
from .base import SCHEMES, RolloutScheme, Runner, SchemeOptions, register_scheme, scheme_for

__all__ = ["SCHEMES", "RolloutScheme", "Runner", "SchemeOptions", "register_scheme", "scheme_for"]
