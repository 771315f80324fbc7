"""The live loop (``wan_core.live``) on a tiny DiT on the CPU: a prompt request applies from the next
chunk (latents equal a no-switch run before it, differ from it on), a transition blends over N
chunks (equal to switches to the blended embeddings made by hand), a stop during a chunk drops that
chunk, pause holds the loop, bad requests are refused with a status and the stream goes on, a
preset without switches refuses prompts but stops; the blend's end points and slerp's properties."""

import threading

import pytest
import torch
from official_ref import randomize_

from wan_core.dit import WanDiT, WanDiTConfig
from wan_core.live import LiveControl, LiveLimits, LiveLoop, SteeringError, blend_embeddings, pad_to_length
from wan_core.rollout.pipeline import StreamingPipeline
from wan_core.rollout.presets import get_preset

TINY = dict(dim=32, ffn_dim=64, num_heads=2, num_layers=2)
H, W = 32, 48


def _prompts():
    g = torch.Generator().manual_seed(5)
    return {t: torch.randn(1, n, 4096, generator=g) for t, n in (("a", 9), ("b", 7), ("c", 11))}


PROMPTS = _prompts()


def _pipe(preset="self-forcing-1.3b"):
    dit = randomize_(WanDiT(WanDiTConfig(**TINY)).eval(), 0, std=0.2)
    pipe = StreamingPipeline(dit, get_preset(preset))
    pipe.start_video(PROMPTS["a"], height=H, width=W, seed=3)  # endless
    return pipe


def _run(steer=None, max_chunks=6, interpolation="linear", preset="self-forcing-1.3b"):
    """Latent chunks of a live run; ``steer(control, chunk_index)`` is called after each chunk is shown."""
    pipe = _pipe(preset)
    control = LiveControl()
    shown = []

    def on_chunk(r):
        shown.append(r.latents.clone())
        if steer is not None:
            steer(control, r.index)

    loop = LiveLoop(
        pipe,
        control,
        PROMPTS.__getitem__,
        on_chunk=on_chunk,
        max_chunks=max_chunks,
        interpolation=interpolation,
    )
    return loop.run(PROMPTS["a"]), shown, pipe


def test_prompt_applies_from_the_next_chunk():
    base, ref, _ = _run()
    assert base.ended_by == "max_chunks" and base.chunks == 6 and len(ref) == 6
    answers = []

    def steer(control, i):
        if i == 1:
            answers.append(control.set_prompt("b"))

    res, got, _ = _run(steer)
    assert answers[0].applies_from_chunk == 2
    assert [(a.chunk, a.text, a.weight) for a in res.applied] == [(2, "b", 1.0)]
    for i in range(2):
        assert torch.equal(got[i], ref[i]), i
    for i in range(2, 6):
        assert not torch.allclose(got[i], ref[i], atol=1e-4), i


def test_same_as_a_scheduled_switch():
    """The live switch is the pipeline's own (LongLive KV re-cache): same latents as a video started
    with the switch scheduled."""
    res, got, _ = _run(lambda c, i: i == 2 and c.set_prompt("b"))
    pipe = _pipe()
    pipe.switch_prompt(PROMPTS["b"], 3)
    want = [pipe.generate(i).latents for i in range(6)]  # generate(i) finalizes chunk i - 1
    for a, b in zip(got, want):
        assert torch.equal(a, b)


@pytest.mark.parametrize("interpolation", ["linear", "slerp"])
def test_transition_over_three_chunks(interpolation):
    res, got, _ = _run(
        lambda c, i: i == 0 and c.set_prompt("b", transition_chunks=3), interpolation=interpolation
    )
    assert [(a.chunk, round(a.weight, 3)) for a in res.applied] == [(1, 0.333), (2, 0.667), (3, 1.0)]
    pipe = _pipe()
    for k, w in enumerate((1 / 3, 2 / 3)):
        pipe.switch_prompt(blend_embeddings(PROMPTS["a"], PROMPTS["b"], w, interpolation), 1 + k)
    pipe.switch_prompt(PROMPTS["b"], 3)
    want = []
    for i in range(6):
        want.append(pipe.generate(i).latents)
        pipe.finalize(i)
    for a, b in zip(got, want):
        assert torch.equal(a, b)
    # and the blended chunks differ from a direct switch
    _, direct, _ = _run(lambda c, i: i == 0 and c.set_prompt("b"))
    assert not torch.allclose(direct[1], got[1], atol=1e-4)


def test_new_prompt_during_a_transition_starts_from_the_blend():
    def steer(c, i):
        if i == 0:
            c.set_prompt("b", transition_chunks=4)
        if i == 1:
            c.set_prompt("c", transition_chunks=2)

    res, _, _ = _run(steer)
    assert [(a.chunk, a.text, round(a.weight, 2)) for a in res.applied] == [
        (1, "b", 0.25),
        (2, "c", 0.5),
        (3, "c", 1.0),
    ]


def test_stop_during_a_chunk_drops_it():
    pipe = _pipe()
    control = LiveControl()
    shown = []
    steps = []
    outer = pipe.interrupt

    def progress(done, total, chunk):
        steps.append(chunk)
        if chunk == 2 and len([s for s in steps if s == 2]) == 2:
            control.stop()  # mid-chunk 2

    pipe.progress = progress
    res = LiveLoop(pipe, control, PROMPTS.__getitem__, on_chunk=lambda r: shown.append(r.index)).run(
        PROMPTS["a"]
    )
    assert res.ended_by == "stop" and res.chunks == 2 and shown == [0, 1]
    assert pipe.interrupt is outer
    with pytest.raises(SteeringError) as e:
        control.set_prompt("b")
    assert e.value.status == 409 and e.value.code == "ended"


def test_pause_holds_the_loop_and_resume_goes_on():
    pipe = _pipe()
    control = LiveControl()
    shown = []
    paused_at = threading.Event()

    def on_chunk(r):
        shown.append(r.index)
        if r.index == 1:
            control.pause()

    def poll():
        if control.state == "paused":
            paused_at.set()

    loop = LiveLoop(pipe, control, PROMPTS.__getitem__, on_chunk=on_chunk, max_chunks=4, poll=poll)
    t = threading.Thread(target=loop.run, args=(PROMPTS["a"],))
    t.start()
    assert paused_at.wait(30)
    count = len(shown)
    t.join(0.5)
    assert t.is_alive() and len(shown) == count == 2  # held while paused
    assert control.resume()["state"] == "running"
    t.join(60)
    assert not t.is_alive() and shown == [0, 1, 2, 3]


def test_bad_requests_are_refused_and_the_stream_goes_on():
    errors = []

    def steer(c, i):
        if i != 1:
            return
        for args, status in [
            (("x" * 3000,), 413),
            (("   ",), 400),
            ((5,), 400),
            (("b", -1), 400),
            (("b", 65), 400),
            (("b", True), 400),
        ]:
            with pytest.raises(SteeringError) as e:
                c.set_prompt(*args)
            errors.append((e.value.status, str(e.value)))
            assert e.value.status == status, (args, e.value)

    res, got, _ = _run(steer, max_chunks=4)
    base, ref, _ = _run(max_chunks=4)
    assert res.chunks == 4 and len(errors) == 6
    assert all(torch.equal(a, b) for a, b in zip(got, ref))
    assert "3000 characters; at most 2000" in errors[0][1]


def test_encoding_failure_is_reported_and_the_stream_goes_on():
    res, got, _ = _run(lambda c, i: i == 0 and c.set_prompt("missing"), max_chunks=3)
    assert res.chunks == 3 and res.applied == [] and "not applied: KeyError" in res.errors[0]


def test_preset_without_switches_refuses_prompts_but_stops():
    pipe = _pipe("rolling-forcing-1.3b")
    try:
        pipe.scheme.check_switch(1)
        refusal = None
    except ValueError as e:
        refusal = str(e)
    assert refusal is not None
    control = LiveControl(switch_refusal=refusal)
    with pytest.raises(SteeringError) as e:
        control.set_prompt("b")
    assert e.value.status == 409 and "does not support prompt switches" in str(e.value)
    shown = []

    def on_chunk(r):
        shown.append(r.index)
        if r.index == 1:
            control.stop()

    res = LiveLoop(pipe, control, PROMPTS.__getitem__, on_chunk=on_chunk).run(PROMPTS["a"])
    assert res.ended_by == "stop" and shown == [0, 1]


def test_limits_are_configurable():
    c = LiveControl(LiveLimits(max_prompt_chars=10, max_transition_chunks=2))
    with pytest.raises(SteeringError):
        c.set_prompt("a" * 11)
    with pytest.raises(SteeringError):
        c.set_prompt("a", 3)
    assert c.set_prompt("a", 2).applies_from_chunk == 0


def test_blend_end_points_and_padding():
    a, b = PROMPTS["a"], PROMPTS["b"]  # 9 and 7 tokens
    for method in ("linear", "slerp"):
        assert torch.equal(blend_embeddings(a, b, 0.0, method), a)
        assert torch.equal(blend_embeddings(a, b, 1.0, method), pad_to_length(b, 9))
    mid = blend_embeddings(a, b, 0.5, "slerp")
    # slerp keeps the norm between the two norms per token (linear shrinks it for unaligned vectors)
    na, nb, nm = a.norm(dim=-1), b.norm(dim=-1), mid.norm(dim=-1)
    assert torch.allclose(nm[:, :7], (na[:, :7] + nb) / 2, rtol=1e-4)
    assert (blend_embeddings(a, b, 0.5, "linear").norm(dim=-1)[:, :7] < nm[:, :7]).all()
    # padding tokens (zero in b) fall back to linear
    assert torch.allclose(mid[:, 7:], a[:, 7:] * 0.5)
    with pytest.raises(ValueError):
        blend_embeddings(a, b, 0.5, "cubic")
    with pytest.raises(ValueError):
        blend_embeddings(a, b, 1.5)


def test_latent_spool_round_trip(tmp_path):
    from wan_core.live.spool import LatentSpool

    chunks = [torch.randn(1, 16, n, 4, 6) for n in (3, 3, 1)]
    with LatentSpool(tmp_path) as spool:
        assert spool.read() is None
        for c in chunks:
            spool.append(c)
        assert torch.equal(spool.read(), torch.cat(chunks, dim=2))
        with pytest.raises(ValueError):
            spool.append(torch.randn(1, 16, 3, 4, 7))
        path = spool.path
    assert not __import__("os").path.exists(path)
