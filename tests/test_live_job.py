"""The Live Sampler's job outside ComfyUI (stand-ins for the server): a prompt queued without a
client_id is refused before any model work (its events would go to every websocket), no live event
is ever sent without a client, and the live pipeline gets the same speed options as the sampler's."""

from __future__ import annotations

import sys
import types
from types import SimpleNamespace

import pytest

from nodes import core_bridge, live_job


class _Untouchable:
    """A model / conditioning stand-in that fails any use: the refusal must come first."""

    def __getattr__(self, name):
        raise AssertionError(f"model work before the refusal: .{name}")


@pytest.fixture
def server(monkeypatch):
    sent = []
    instance = SimpleNamespace(client_id=None, send_sync=lambda event, data, sid: sent.append((event, sid)))
    module = types.ModuleType("server")
    module.PromptServer = SimpleNamespace(instance=instance)
    monkeypatch.setitem(sys.modules, "server", module)
    return instance, sent


def test_a_live_job_queued_without_client_id_is_refused_first(server):
    nothing = _Untouchable()
    with pytest.raises(ValueError, match=r'queued without a client_id.*"client_id".*POST /prompt'):
        live_job.run_live(
            nothing, nothing, nothing, width=64, height=64, preset="self-forcing-1.3b", seed=0,
            max_seconds=0.0, interpolation="linear",
        )  # fmt: skip
    assert server[1] == []


def test_the_queuing_client_id_is_read_from_the_server(server):
    server[0].client_id = "abc"
    assert live_job.queuing_client_id() == "abc"


def test_live_events_are_never_sent_without_a_client(server):
    with pytest.raises(ValueError, match="queuing client"):
        live_job._Events(None, "6", "p", 16.0, 4, None)
    assert server[1] == []


def test_the_live_pipeline_has_the_samplers_speed_options(monkeypatch):
    import wan_core.rollout.pipeline as pipeline_module

    class Made(Exception):
        pass

    made = []

    class Warm:
        def acquire(self, key, factory):
            made.append(factory())
            raise Made

    monkeypatch.setattr(pipeline_module, "StreamingPipeline", lambda *args, **kwargs: (args, kwargs))
    monkeypatch.setattr(live_job.rt, "executing_ids", lambda: ("p", "6"))
    # what Load Wan DiT's speed gives a CUDA GPU without Triton: not all the same, so each one counts
    options = SimpleNamespace(cuda_graphs=True, compile=False, fuse_qkv=True, overlap_decode=True)
    dit = SimpleNamespace(options=options, model=object(), warm=Warm(), device="cpu")
    valid = SimpleNamespace(preset="a preset")
    with pytest.raises(Made):
        live_job._run_in_process(
            dit, SimpleNamespace(image=None), valid, SimpleNamespace(is_taehv=True), [], None, "linear",
            "auto", "client",
        )  # fmt: skip
    args, kwargs = made[0]
    assert args == (dit.model, "a preset")
    assert {k: kwargs[k] for k in ("cuda_graphs", "compile", "fuse_qkv", "overlap_decode")} == vars(options)
    assert (args, kwargs) == core_bridge.pipeline_factory(dit, dit.model, "a preset")()
