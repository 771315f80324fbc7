"""``torchrun --nproc_per_node=2`` (gloo, 127.0.0.1): the env:// path the command line uses."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from wan_core.parallel import free_port
from wan_core.parallel.group import _loopback_interface
from wan_core.parallel.launch import init_context_parallel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent(
    """
    import sys, torch
    torch.set_num_threads(1)
    from test_parallel_context import inputs, rollout, tiny_model
    from wan_core.parallel import shutdown
    from wan_core.parallel.launch import cp_wrapper, init_context_parallel

    cp = init_context_parallel(sys.argv[2])
    assert cp.world_size == 2 and cp.device.type == "cpu"
    model = cp_wrapper(sys.argv[2], cp)(tiny_model())
    assert type(model).__name__ == "ContextParallelDiT"
    x, text = inputs()
    out, _ = rollout(model, x, text, "relative")
    if cp.is_main:  # rank 0 writes the result
        torch.save(out, sys.argv[1])
    shutdown()
    """
)


@pytest.mark.timeout(180)
def test_torchrun_two_ranks_ring_equals_single_process(tmp_path):
    from test_parallel_context import inputs, rollout, tiny_model

    script = tmp_path / "cp_rank.py"
    script.write_text(SCRIPT)
    out_path = tmp_path / "out.pt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.path.join(ROOT, "tests")])}
    lo = _loopback_interface()
    if lo is not None:  # keep gloo on the loopback interface
        env.setdefault("GLOO_SOCKET_IFNAME", lo)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={free_port()}",
        str(script),
        str(out_path),
        "ring",
    ]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=170)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    with torch.no_grad():
        ref, _ = rollout(tiny_model(), *inputs(), "relative")
    out = torch.load(out_path, weights_only=True)
    assert out.shape == ref.shape
    assert (out - ref).abs().max() / ref.abs().max() <= 1e-5


def test_cli_refuses_many_processes_without_a_mode(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="2 processes were started .* --context-parallel is none"):
        init_context_parallel("none")
    with pytest.raises(ValueError, match="must be one of"):
        init_context_parallel("stripes")
    monkeypatch.setenv("WORLD_SIZE", "1")
    cp = init_context_parallel("ring")  # one process: nothing to split
    assert not cp.distributed and cp.is_main
