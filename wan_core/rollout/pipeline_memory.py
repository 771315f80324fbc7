"""What a ``StreamingPipeline`` holds and will allocate (the kept-rollout registration in ComfyUI and
the out-of-memory advice read it); every number comes from the scheme's own cache and frames."""

from __future__ import annotations

from wan_core.dit.kv_cache import planned_kv_nbytes
from wan_core.memory import tensor_nbytes

from .prompt import cross_tensors
from .runner import oom_advice

__all__ = ["PipelineMemory"]


class PipelineMemory:
    """Mixin of ``StreamingPipeline``: its memory report (``scheme``, ``state``, ``_plan_video``)."""

    def planned_cache_nbytes(self, height=None, width=None, num_frames=None, num_chunks=None, batch=1) -> int:
        """Bytes of the KV cache ``start_video`` allocates for a video of this geometry (nothing is
        allocated; 0 for schemes without a cache)."""
        spec = self.scheme.cache_spec(self._plan_video(height, width, num_frames, num_chunks, batch))
        return 0 if spec is None else planned_kv_nbytes(*spec)

    def cache_growth_nbytes(self, *args, **kwargs) -> int:
        """Bytes ``start_video`` will newly allocate for this geometry (arguments as
        ``planned_cache_nbytes``): the planned KV cache minus the kept one, which it frees or reuses."""
        cache = None if self.state is None else self.scheme.cache
        kept = 0 if cache is None else cache.kv_nbytes()
        return max(0, self.planned_cache_nbytes(*args, **kwargs) - kept)

    def cache_nbytes(self) -> int:
        """Bytes held by the rollout state that can grow with the video: KV cache + kept frames."""
        self._require_state()
        return self.scheme.nbytes()

    def held_nbytes(self) -> int:
        """Bytes kept between videos: the scheme's (KV cache + kept frames) and the prompts' cross K/V
        (the captured graphs read them). The graphs' memory pool (about one pass's activations) is not
        counted."""
        st = self.state
        if st is None:
            return 0
        crosses = [*st.prompt.cross, *(st.prompt.uncond or [])]
        return self.cache_nbytes() + sum(tensor_nbytes(cross_tensors(c)) for c in crosses)

    def oom_fixes(self) -> list[str]:
        """What shrinks this pipeline's memory, with the current values (for out-of-memory errors)."""
        return oom_advice(self)
