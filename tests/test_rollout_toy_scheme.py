"""A new rollout scheme is one file: this one registers a toy scheme (each chunk on its own: one DiT
step from pure noise, x0 re-noised to sigma 0.5 and denoised once more, no KV cache) and runs it
through the unchanged ``StreamingPipeline`` -- call order, progress, decoding, noise sources."""

import torch
from official_ref import randomize_

from wan_core.dit import WanDiT, WanDiTConfig
from wan_core.rollout.noise import SeededNoise
from wan_core.rollout.pipeline import StreamingPipeline
from wan_core.rollout.presets import get_preset
from wan_core.rollout.schedulers import flow_to_x0, renoise
from wan_core.rollout.schemes import RolloutScheme, register_scheme

SIGMAS = (1.0, 0.5)


@register_scheme("toy-two-step")
class ToyScheme(RolloutScheme):
    """Two DiT calls per chunk over the chunk alone (bidirectional inside the chunk)."""

    title = "toy two-step"

    @property
    def noise_draws(self) -> int:
        return len(SIGMAS)

    def total_steps(self, num_chunks):
        return None if num_chunks is None else num_chunks * len(SIGMAS)

    def generate(self, i):
        noise, model = self.runner.noise(i), self.experts[0]  # [2, B, C, n, h, w]
        x = noise[0]
        for k, sigma in enumerate(SIGMAS):
            self.runner.check_interrupt()
            t = torch.full((x.shape[0],), 1000.0 * sigma, device=x.device)
            x0 = flow_to_x0(x, self.runner.call(model, x, t, self.state.prompt.cross[0]), sigma)
            if k + 1 < len(SIGMAS):
                x = renoise(x0, noise[k + 1], SIGMAS[k + 1])
            self.runner.step_done(i)
        return x0


class _Decoder:
    def stream_decoder(self):
        return self

    def decode_chunk(self, z):  # [B, C, n, h, w] -> [B, 3, 2n, h, w]
        return z[:, :3].repeat_interleave(2, dim=2)


@torch.no_grad()
def test_toy_scheme_runs_through_the_pipeline_and_equals_its_hand_loop():
    dit = randomize_(WanDiT(WanDiTConfig(dim=32, ffn_dim=64, num_heads=2, num_layers=2)).eval(), 0, std=0.2)
    p = get_preset("self-forcing-1.3b").with_overrides(custom_scheme="toy-two-step")
    assert p.scheme == "toy-two-step"
    seen = []
    pipe = StreamingPipeline(dit, p, decoder=_Decoder(), progress=lambda d, t, c: seen.append((d, t, c)))
    ctx = torch.randn(1, 5, 4096, generator=torch.Generator().manual_seed(3))
    pipe.start_video(ctx, height=32, width=48, num_frames=25, seed=4)  # 7 latent frames: chunks 3, 3, 1
    results = list(pipe.stream())
    assert [r.num_latent_frames for r in results] == [3, 3, 1] and pipe.planned_cache_nbytes() == 0
    assert seen[-1] == (6, 6, 2) and torch.equal(
        results[1].host_frames(), results[1].latents[:, :3].repeat_interleave(2, 2)
    )
    cross = dit.prepare_context(ctx)
    for r in results:  # the same two steps written out by hand
        noise = SeededNoise(4)(r.index, (2, 1, 16, r.num_latent_frames, 4, 6), torch.device("cpu"))
        x0 = flow_to_x0(noise[0], dit(noise[0], torch.full((1,), 1000.0), cross), 1.0)
        x = renoise(x0, noise[1], 0.5)
        x0 = flow_to_x0(x, dit(x, torch.full((1,), 500.0), cross), 0.5)
        assert torch.equal(r.latents, x0)
    try:
        pipe.switch_prompt(ctx, 2)
    except ValueError as e:  # no prompt switches: the scheme says so, naming the preset and itself
        assert "'self-forcing-1.3b' (toy two-step) does not support prompt switches" in str(e)
    else:
        raise AssertionError("a scheme without switches accepted one")
