"""Downloads against a local stand-in of the Hub (``tests/integration/fake_hf_hub.py`` on 127.0.0.1)
with the installed huggingface_hub: a file reaches its name only complete and checked against the
Hub's size / sha256; failures say what happened and what to do; the manual command works pasted."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "integration"))

from fake_hf_hub import COMMIT, FakeHub  # noqa: E402

from wan_core.rollout import model_download  # noqa: E402
from wan_core.rollout.hub_command import hub_cli  # noqa: E402
from wan_core.rollout.loading import resolve_files  # noqa: E402
from wan_core.rollout.model_files import MissingModelFileError, ensure_model_file  # noqa: E402
from wan_core.rollout.presets import get_preset  # noqa: E402

SPEC = get_preset("self-forcing-1.3b").dit
DATA = bytes(range(256)) * 64


@pytest.fixture()
def hub(monkeypatch, tmp_path):
    from huggingface_hub import constants

    fake = FakeHub()
    monkeypatch.setattr(constants, "ENDPOINT", fake.url)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", fake.url + "/{repo_id}/resolve/{revision}/{filename}"
    )
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    yield fake
    fake.close()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_is_checked_then_renamed_and_leaves_nothing_else(hub, tmp_path):
    hub.add(SPEC.repo, SPEC.repo_path, DATA)
    lines = []
    got = ensure_model_file(tmp_path, SPEC, download=True, log=lines.append)
    assert got == tmp_path / "diffusion_models" / SPEC.name and got.read_bytes() == DATA
    assert _leftovers(tmp_path / "diffusion_models") == [SPEC.name]  # no staging folder
    import hashlib

    assert any(COMMIT in ln and hashlib.sha256(DATA).hexdigest() in ln for ln in lines), lines
    assert ("HEAD", f"/{SPEC.repo}/resolve/main/{SPEC.repo_path}") in hub.requests


@pytest.mark.parametrize("served", [bytes(len(DATA)), DATA[: len(DATA) // 2]], ids=["altered", "cut"])
def test_a_download_that_does_not_match_the_hub_is_never_kept(hub, tmp_path, served):
    hub.add(SPEC.repo, SPEC.repo_path, DATA)
    hub.tamper[(SPEC.repo, SPEC.repo_path)] = served
    with pytest.raises(MissingModelFileError) as e:
        ensure_model_file(tmp_path, SPEC, download=True, log=lambda *_: None)
    msg = str(e.value)
    assert msg.startswith("download failed") and "Nothing was kept" in msg, msg
    assert "--download" not in msg and "<tmp>" not in msg
    assert _leftovers(tmp_path / "diffusion_models") == []


@pytest.mark.parametrize(
    ("status", "fix"),
    [(404, "not in gdhe17/Self-Forcing"), (401, "login"), (503, "server error (503)")],
)
def test_failed_download_says_what_happened_and_what_to_do(hub, tmp_path, status, fix):
    hub.add(SPEC.repo, SPEC.repo_path, DATA)
    hub.fail[(SPEC.repo, SPEC.repo_path)] = status
    with pytest.raises(MissingModelFileError) as e:
        ensure_model_file(tmp_path, SPEC, download=True, log=lambda *_: None)
    msg = str(e.value)
    assert "download failed" in msg and fix in msg and "What happened:" in msg, msg
    assert "re-run with --download" not in msg  # it was a --download that failed
    assert SPEC.download_command(tmp_path) in msg
    assert _leftovers(tmp_path / "diffusion_models") == []


def test_unreachable_hub_is_explained(monkeypatch, tmp_path):
    from huggingface_hub import constants

    hub = FakeHub()
    url = hub.url
    hub.close()  # nothing listens there any more
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}"
    )
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(MissingModelFileError, match="could not be reached"):
        ensure_model_file(tmp_path, SPEC, download=True, log=lambda *_: None)


def test_read_only_models_folder_is_explained(hub, tmp_path, monkeypatch):
    hub.add(SPEC.repo, SPEC.repo_path, DATA)
    folder = tmp_path / "diffusion_models"
    folder.mkdir()
    folder.chmod(0o555)
    if os.geteuid() == 0:  # root writes anywhere: stand in for the kernel's answer
        real = os.access
        monkeypatch.setattr(
            model_download.os, "access", lambda p, m: False if Path(p) == folder else real(p, m)
        )
    try:
        with pytest.raises(MissingModelFileError) as e:
            ensure_model_file(tmp_path, SPEC, download=True, log=lambda *_: None)
    finally:
        folder.chmod(0o755)
    msg = str(e.value)
    assert f"cannot write to {folder}" in msg and "read-only" in msg and "writable models folder" in msg
    assert hub.requests == []  # refused before anything was fetched
    # a models folder that cannot be created at all (a file is in the way)
    (tmp_path / "blocked").write_text("x")
    with pytest.raises(MissingModelFileError, match=r"(?s)cannot create .*blocked.*a file is in the way"):
        ensure_model_file(tmp_path / "blocked", SPEC, download=True, log=lambda *_: None)


def test_every_missing_file_of_a_preset_is_listed_at_once(tmp_path):
    preset = get_preset("self-forcing-1.3b")
    with pytest.raises(MissingModelFileError) as e:
        resolve_files(preset, tmp_path, decoder="vae", download=False)
    msg = str(e.value)
    assert msg.startswith("3 files are missing")
    for spec in preset.files("vae"):
        assert spec.name in msg and spec.download_command(tmp_path) in msg
    assert msg.count("re-run with --download") == 3


def test_every_failed_download_is_listed_and_successes_are_kept(hub, tmp_path):
    preset = get_preset("self-forcing-1.3b")
    dit, te, vae = preset.files("vae")
    hub.add(dit.repo, dit.repo_path, DATA)
    with pytest.raises(MissingModelFileError) as e:
        resolve_files(preset, tmp_path, decoder="vae", download=True, log=lambda *_: None)
    msg = str(e.value)
    assert msg.startswith("2 of 3 downloads failed") and te.name in msg and vae.name in msg
    assert (tmp_path / "diffusion_models" / dit.name).read_bytes() == DATA


def test_manual_command_is_for_the_installed_hub_and_works_pasted(hub, tmp_path):
    version = tuple(int(x) for x in metadata.version("huggingface_hub").split(".")[:2])
    cli, install = hub_cli()
    assert install == "" and Path(shlex.split(cli)[0]).name == (
        "hf" if version >= (0, 34) else "huggingface-cli"
    )
    models = tmp_path / "my models"  # a space: the command must quote it
    cmd = SPEC.download_command(models)
    assert "<" not in cmd and str(models / "diffusion_models" / SPEC.name) in shlex.split(
        cmd.split(" && ")[1]
    )
    hub.add(SPEC.repo, SPEC.repo_path, DATA)
    env = dict(os.environ, HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf_home"), HF_HUB_DISABLE_XET="1")
    env.pop("HF_HUB_OFFLINE", None)
    r = subprocess.run(["bash", "-c", cmd], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (models / "diffusion_models" / SPEC.name).read_bytes() == DATA
    assert _leftovers(models / "diffusion_models") == [SPEC.name]


def test_a_killed_runs_staging_is_cleared_by_the_next_download(hub, tmp_path):
    hub.add(SPEC.repo, SPEC.repo_path, DATA)
    stale = tmp_path / "diffusion_models" / ".download" / SPEC.name / SPEC.repo_path
    stale.parent.mkdir(parents=True)
    stale.write_bytes(DATA[:100])  # what a SIGKILL mid-download leaves
    assert ensure_model_file(tmp_path, SPEC, download=True, log=lambda *_: None).read_bytes() == DATA
    assert _leftovers(tmp_path / "diffusion_models") == [SPEC.name]


def test_a_pinned_revision_is_what_is_fetched_and_checked(hub, tmp_path):
    from dataclasses import replace

    hub.add(SPEC.repo, SPEC.repo_path, DATA)
    pinned = replace(SPEC, revision=COMMIT)
    assert f"/resolve/{COMMIT}/" in pinned.url and f"--revision {COMMIT}" in pinned.download_command(tmp_path)
    assert ensure_model_file(tmp_path, pinned, download=True, log=lambda *_: None).read_bytes() == DATA
    assert ("GET", f"/{SPEC.repo}/resolve/{COMMIT}/{SPEC.repo_path}") in hub.requests
    assert not any("/resolve/main/" in path for _, path in hub.requests)
    gone = replace(SPEC, revision="f" * 40, name="other.pt")
    with pytest.raises(MissingModelFileError, match=f"(?s)download failed.*not in {SPEC.repo} at f{{40}}"):
        ensure_model_file(tmp_path, gone, download=True, log=lambda *_: None)


def test_the_file_is_fetched_at_the_commit_its_metadata_named(hub, tmp_path):
    """A spec at ``main``: the metadata is read at ``main``, the file at the commit that answer named
    (a push to ``main`` in between cannot swap in bytes other than the ones checked)."""
    other = "fedcba9876543210fedcba9876543210fedcba98"
    hub.add(SPEC.repo, SPEC.repo_path, DATA, commit=other)
    assert SPEC.revision in (None, "main")
    assert ensure_model_file(tmp_path, SPEC, download=True, log=lambda *_: None).read_bytes() == DATA
    gets = [path for method, path in hub.requests if method == "GET"]
    assert gets == [f"/{SPEC.repo}/resolve/{other}/{SPEC.repo_path}"], hub.requests
