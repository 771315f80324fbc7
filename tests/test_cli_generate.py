"""``python -m wan_core`` on tiny files in the real formats: writes a decodable mp4 with the right frame
count and size, prints per-chunk timing, and fails clearly on a missing file."""

import subprocess
import sys
from pathlib import Path

import pytest
from tiny_models import make_tiny_models

from wan_core.__main__ import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    make_tiny_models(d, families=("t2v",))
    return d


def test_generate_writes_mp4_with_right_frames_and_size(models_dir, tmp_path, capsys):
    av = pytest.importorskip("av")
    out = tmp_path / "fox.mp4"
    rc = main(
        [
            "generate", "--preset", "self-forcing-1.3b", "--prompt", "a red fox running through snow",
            "--models-dir", str(models_dir), "--frames", "21", "--height", "32", "--width", "48",
            "--out", str(out), "--decoder", "taehv", "--prompt-switch", "1:a white wolf",
        ]
    )  # fmt: skip
    assert rc == 0
    text = capsys.readouterr().out
    assert text.count("chunk ") == 2 and "ms" in text and "wrote 21 frames" in text
    with av.open(str(out)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 21 and frames[0].shape == (32, 48, 3)


def test_missing_file_names_file_folder_and_download_command(tmp_path, capsys):
    (tmp_path / "text_encoders").mkdir()
    rc = main(
        ["generate", "--preset", "self-forcing-1.3b", "--prompt", "x", "--models-dir", str(tmp_path), "--out",
         str(tmp_path / "o.mp4")]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2
    assert "self_forcing_dmd.pt" in err and str(tmp_path / "diffusion_models") in err
    assert "--download" in err and "gdhe17/Self-Forcing" in err
    assert not (tmp_path / "o.mp4").exists()


def test_files_and_presets_commands(models_dir, capsys):
    assert main(["presets"]) == 0
    assert "self-forcing-1.3b" in capsys.readouterr().out
    assert main(["files", "--preset", "self-forcing-1.3b", "--models-dir", str(models_dir)]) == 0
    assert main(["files", "--preset", "wan2.2-ti2v-5b", "--models-dir", str(models_dir)]) == 1
    assert "MISSING" in capsys.readouterr().out


def test_bad_switch_syntax_is_a_clear_error(models_dir, capsys):
    rc = main(["generate", "--preset", "self-forcing-1.3b", "--prompt", "x", "--models-dir", str(models_dir),
               "--prompt-switch", "soon:a dog"])  # fmt: skip
    assert rc == 2 and "CHUNK:PROMPT" in capsys.readouterr().err


def test_module_entry_point_runs(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "wan_core", "generate", "--preset", "causvid-1.3b", "--prompt", "x",
         "--models-dir", str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert r.returncode == 2 and "causvid_model.pt" in r.stderr and "tianweiy/CausVid" in r.stderr


def test_readme_command_with_download_fetches_missing_files(models_dir, tmp_path, monkeypatch, capsys):
    """README's main-job command with --download into an empty folder; the Hub is replaced by a local
    stand-in serving the tiny files under their real repo paths (the tests have no internet)."""
    import shutil

    from hub_stand_in import hub_module

    from wan_core.rollout.presets import get_preset

    preset = get_preset("self-forcing-1.3b")
    served = {
        (preset.dit.repo, preset.dit.repo_path): models_dir / "diffusion_models" / "self_forcing_dmd.pt",
        (preset.vae.repo, preset.vae.repo_path): models_dir / "vae" / "wan_2.1_vae.safetensors",
        # the stand-in serves the tiny fp16-layout encoder under the fp8 file's path: same loader
        (preset.text_encoder.repo, preset.text_encoder.repo_path): models_dir
        / "text_encoders"
        / "umt5_xxl_fp16.safetensors",
    }
    fetched = []

    def hf_hub_download(repo_id, filename, local_dir):
        fetched.append((repo_id, filename))
        dest = Path(local_dir) / filename
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(served[(repo_id, filename)], dest)
        return str(dest)

    monkeypatch.setitem(
        sys.modules,
        "huggingface_hub",
        hub_module(hf_hub_download, lambda repo, path: served[(repo, path)].read_bytes()),
    )
    empty = tmp_path / "models"
    out = tmp_path / "out.mp4"
    rc = main(
        ["generate", "--preset", "self-forcing-1.3b", "--prompt", "a red fox running through snow",
         "--models-dir", str(empty), "--download", "--frames", "9", "--height", "32", "--width", "48",
         "--out", str(out)]
    )  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    assert sorted(fetched) == sorted(served)
    assert (empty / "diffusion_models" / "self_forcing_dmd.pt").is_file()
    assert (empty / "text_encoders" / "umt5_xxl_fp8_e4m3fn_scaled.safetensors").is_file()
    assert out.is_file() and "wrote 9 frames" in capsys.readouterr().out


@pytest.mark.timeout(300)
def test_generate_under_torchrun_context_parallel_matches_one_process(models_dir, tmp_path):
    """``torchrun --nproc_per_node=2 -m wan_core generate ... --context-parallel ring`` (gloo, CPU):
    rank 0 writes the video, and it shows the same frames as the single-process run."""
    import os

    np = pytest.importorskip("numpy")
    av = pytest.importorskip("av")
    from wan_core.parallel import free_port

    args = ["generate", "--preset", "self-forcing-1.3b", "--prompt", "a red fox", "--models-dir", str(models_dir),
            "--frames", "21", "--height", "32", "--width", "48", "--decoder", "taehv"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    single, multi = tmp_path / "one.mp4", tmp_path / "two.mp4"
    r1 = subprocess.run([sys.executable, "-m", "wan_core", *args, "--out", str(single)], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=280)  # fmt: skip
    assert r1.returncode == 0, r1.stderr[-3000:]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={free_port()}", "-m", "wan_core", *args,
           "--out", str(multi), "--context-parallel", "ring"]  # fmt: skip
    r2 = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=280)
    assert r2.returncode == 0, r2.stdout[-3000:] + r2.stderr[-3000:]
    assert r2.stdout.count("wrote 21 frames") == 1  # rank 0 only

    def frames(p):
        with av.open(str(p)) as c:
            return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)]).astype(np.int16)

    a, b = frames(single), frames(multi)
    assert a.shape == b.shape == (21, 32, 48, 3)
    assert np.abs(a - b).mean() < 0.5 and np.abs(a - b).max() <= 8


@pytest.mark.parametrize("choice", ["cpu", "auto"])
def test_text_encoder_device_flag_puts_the_encoder_there(models_dir, tmp_path, monkeypatch, capsys, choice):
    """``--text-encoder-device cpu`` loads and runs UMT5 on the CPU whatever ``--device`` is (small GPUs);
    auto follows ``--device``. ``cpu:0`` stands in for the GPU: a distinct device that still runs here."""
    import torch

    import wan_core.text as text

    real_load_umt5, seen = text.load_umt5, []

    def spy_load_umt5(path, dtype=None, device="cpu"):
        seen.append(torch.device(device))
        return real_load_umt5(path, dtype=dtype, device=device)

    monkeypatch.setattr(text, "load_umt5", spy_load_umt5)
    out = tmp_path / "fox.mp4"
    rc = main(
        ["generate", "--preset", "self-forcing-1.3b", "--prompt", "a red fox", "--models-dir", str(models_dir),
         "--frames", "9", "--height", "32", "--width", "48", "--out", str(out), "--decoder", "taehv",
         "--device", "cpu:0", "--text-encoder-device", choice]
    )  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    assert seen == [torch.device("cpu") if choice == "cpu" else torch.device("cpu:0")]
    text_out = capsys.readouterr().out
    assert f"text encoded on {seen[0]}" in text_out and "wrote 9 frames" in text_out
    assert out.is_file() and out.stat().st_size > 0


def test_text_encoder_device_rejects_other_devices(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--preset", "self-forcing-1.3b", "--prompt", "x", "--models-dir", "m",
              "--text-encoder-device", "cuda:1"])  # fmt: skip
    assert "--text-encoder-device" in capsys.readouterr().err
