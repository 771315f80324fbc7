"""Audit: node inputs can only name files inside ComfyUI's model folders (``nodes/model_folders.resolve``
with a stand-in ``folder_paths``), and a missing known file without download is a clear error."""

import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from nodes import model_folders as model_files  # noqa: E402


@pytest.fixture()
def models(tmp_path, monkeypatch):
    root = tmp_path / "models"
    (root / "vae").mkdir(parents=True)
    (root / "vae" / "wan_2.1_vae.safetensors").write_bytes(b"x")
    (tmp_path / "secret.safetensors").write_bytes(b"x")  # outside the model folders

    def get_full_path(folder, name):
        p = root / folder / name  # like ComfyUI: a plain join, no containment check of its own here
        return str(p) if p.is_file() else None

    def get_full_path_or_raise(folder, name):
        p = get_full_path(folder, name)
        if p is None:
            raise FileNotFoundError(f"Model in folder '{folder}' with filename '{name}' not found.")
        return p

    fp = types.ModuleType("folder_paths")
    fp.models_dir = str(root)
    fp.get_full_path = get_full_path
    fp.get_full_path_or_raise = get_full_path_or_raise
    fp.get_filename_list = lambda folder: sorted(p.name for p in (root / folder).glob("*") if p.is_file())
    monkeypatch.setitem(sys.modules, "folder_paths", fp)
    return root


@pytest.mark.parametrize(
    "name",
    [
        "../secret.safetensors",
        "../../secret.safetensors",
        "sub/../../secret.safetensors",
        "..\\secret.safetensors",
        "/etc/passwd",
    ],
)
def test_names_outside_the_model_folder_are_refused(models, name):
    with pytest.raises(ValueError, match=r"Load Wan VAE: .* is not a file name inside models/vae"):
        model_files.resolve("vae", name, download=False, what="Load Wan VAE")


def test_names_inside_resolve_and_missing_known_file_says_how(models):
    got = model_files.resolve("vae", "wan_2.1_vae.safetensors", download=False, what="Load Wan VAE")
    assert Path(got) == models / "vae" / "wan_2.1_vae.safetensors"
    known = model_files.known_files("vae")
    missing = next(k for k in known if k.name != "wan_2.1_vae.safetensors")
    with pytest.raises(FileNotFoundError, match=r"not in models/vae.*Turn on 'download'.*huggingface\.co"):
        model_files.resolve("vae", missing.name, download=False, what="Load Wan VAE")
    with pytest.raises(FileNotFoundError, match="not found"):
        model_files.resolve("vae", "nobody_knows_me.safetensors", download=False, what="Load Wan VAE")
    # the loader's list: present files first, then the known missing ones, no duplicates
    names = model_files.choices("vae", with_none=True)
    assert names[:2] == ["none", "wan_2.1_vae.safetensors"] and len(names) == len(set(names))
