"""``bench/gpu_runbook.sh`` is what a session with a GPU runs first; device time is scarce (30 minutes a
session), so a renamed flag or a missing script must fail here, on the CPU, not there."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "bench", "gpu_runbook.sh")


def _text() -> str:
    with open(SCRIPT, encoding="utf-8") as f:
        return f.read()


def _python_commands() -> list[tuple[str, list[str]]]:
    """(script, arguments) of every ``$py <script> ...`` step, arrays expanded, ``$out`` replaced."""
    text = _text()
    arrays = {m.group(1): shlex.split(m.group(2)) for m in re.finditer(r"^\s*(\w+)=\((.*)\)\s*$", text, re.M)}
    commands = []
    for m in re.finditer(r"^\s*step \d+ \$py (.*)$", text, re.M):
        words = []
        for w in shlex.split(m.group(1)):
            arr = re.fullmatch(r"\$\{(\w+)\[@\]\}", w)
            words += arrays[arr.group(1)] if arr else [w.replace("$out", "/tmp/runbook")]
        if words[:2] == ["-m", "pytest"]:
            continue  # the test files are checked below
        commands.append((words[0], words[1:]))
    return commands


def test_runbook_is_valid_bash():
    subprocess.run(["bash", "-n", SCRIPT], check=True)


def test_runbook_has_every_stage_and_rejects_unknown_ones():
    text = _text()
    for stage in ("checks", "main", "levers", "e2e", "fp8", "models", "jobs"):
        assert re.search(rf"^{stage}\)$", text, re.M), stage
    r = subprocess.run(["bash", SCRIPT, "no-such-stage", "/tmp/runbook-test"], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown stage" in r.stderr


def test_gpu_test_files_exist():
    gpu_tests = [f for f in os.listdir(os.path.join(ROOT, "tests")) if re.fullmatch(r"test_.*gpu.*\.py", f)]
    assert "test_rollout_gpu.py" in gpu_tests and "test_rollout_perf_gpu.py" in gpu_tests


@pytest.mark.parametrize("script,args", _python_commands(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_flag_exists(script, args):
    path = os.path.join(ROOT, script)
    assert os.path.isfile(path), f"runbook calls {script}, which does not exist"
    help_text = subprocess.run(
        [sys.executable, path, "--help"], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    for a in args:
        if a.startswith("--"):
            flag = a.split("=", 1)[0]
            assert re.search(rf"{re.escape(flag)}\b", help_text), f"{script} has no option {flag}"
    if script == "bench/bench_ar.py":  # choices and types too
        sys.path.insert(0, ROOT)
        from bench.bench_ar import parse_args

        parse_args([*args, "--device", "cpu"])


def _bench_scripts() -> list[str]:
    bench = os.path.join(ROOT, "bench")
    return sorted(
        f"bench/{f}"
        for f in os.listdir(bench)
        if f.endswith(".py") and "__main__" in open(os.path.join(bench, f), encoding="utf-8").read()
    )


@pytest.mark.parametrize("script", _bench_scripts())
def test_bench_scripts_start_from_the_repository_root(script):
    """``python bench/<script>.py --help`` from the root: imports resolve (``wan_core`` is found)."""
    r = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
