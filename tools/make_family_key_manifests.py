"""Write the key -> shape manifests of the new families' released DiT files (``tests/data/keys/``) from
their official module definitions, built at real size on the meta device.

Each family's inference wraps its ``CausalWanModel`` in ``WanDiffusionWrapper`` as ``self.model`` and saves /
loads that wrapper's state dict, so the released generator keys are ``model.<CausalWanModel key>``. The
official code is read from a local copy of each repository (a bare git mirror or a checkout: its files at
``HEAD`` are extracted to a temporary folder); nothing of it is imported by the tests.

    python tools/make_family_key_manifests.py --longlive PATH --reward-forcing PATH --causal-forcing PATH
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import subprocess
import sys
import tarfile
import tempfile
import types
from io import BytesIO
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
KEYS = ROOT / "tests" / "data" / "keys"

# family: (package with modules/causal_model.py, files to extract, config of the released model, manifest)
FAMILIES = {
    "longlive": (
        "wan_5b",
        ["wan_5b", "utils"],
        dict(model_type="ti2v", in_dim=48, out_dim=48, dim=3072, ffn_dim=14336, num_heads=24, num_layers=30),
        "longlive2_5b_generator",
    ),
    "reward_forcing": (
        "wan",
        ["wan", "utils"],
        dict(model_type="t2v", in_dim=16, out_dim=16, dim=1536, ffn_dim=8960, num_heads=12, num_layers=30),
        "reward_forcing_1.3B_generator",
    ),
    "causal_forcing": (
        "wan",
        ["wan", "utils"],
        dict(model_type="t2v", in_dim=16, out_dim=16, dim=1536, ffn_dim=8960, num_heads=12, num_layers=30),
        "causal_forcing_1.3B_generator",
    ),
}


def _extract(repo: Path, paths: list[str], dest: Path) -> str:
    """The repo's files at HEAD under ``paths`` into ``dest``; returns the commit."""
    git = ["git", "-C", str(repo)]
    commit = subprocess.run(
        [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    tar = subprocess.run([*git, "archive", "HEAD", *paths], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(tar)) as t:
        t.extractall(dest, filter="data")
    return commit


@contextlib.contextmanager
def _official_import(root: Path, package: str):
    """Import ``<package>.modules.causal_model`` without the package's ``__init__`` (which loads every
    pipeline), with ``torch.compile`` as the identity (flex attention is compiled at import) and a CPU
    ``torch.cuda.current_device`` (and a stub for one unused, since removed, transformers helper)."""
    saved_path, saved_mods = list(sys.path), dict(sys.modules)
    saved_compile, saved_dev = torch.compile, torch.cuda.current_device
    sys.path.insert(0, str(root))
    for name in (package, f"{package}.modules"):
        sys.modules.pop(name, None)
        mod = types.ModuleType(name)
        mod.__path__ = [str(root / Path(*name.split(".")))]
        sys.modules[name] = mod
    # LongLive's causal_model imports an unused helper that newer transformers no longer have
    stub = types.ModuleType("transformers.models.x_clip.modeling_x_clip")
    stub.x_clip_loss = None
    sys.modules[stub.__name__] = stub
    torch.compile = lambda fn=None, *a, **k: fn if fn is not None else (lambda f: f)
    torch.cuda.current_device = lambda: "cpu"
    try:
        yield importlib.import_module(f"{package}.modules.causal_model")
    finally:
        torch.compile, torch.cuda.current_device = saved_compile, saved_dev
        sys.path[:] = saved_path
        for name in set(sys.modules) - set(saved_mods):  # the official code's modules (not torch's)
            f = getattr(sys.modules[name], "__file__", None) or ""
            if name in (package, f"{package}.modules", stub.__name__) or f.startswith(str(root)):
                del sys.modules[name]
        sys.modules.update({k: v for k, v in saved_mods.items() if k in (package, f"{package}.modules")})


def manifest(repo: Path, family: str) -> tuple[str, list[tuple[str, tuple[int, ...]]], str]:
    package, paths, cfg, name = FAMILIES[family]
    with tempfile.TemporaryDirectory() as tmp:
        commit = _extract(repo, paths, Path(tmp))
        with _official_import(Path(tmp), package) as cm, torch.device("meta"):
            model = cm.CausalWanModel(**cfg)
        rows = [(f"model.{k}", tuple(v.shape)) for k, v in model.state_dict().items()]
    return name, rows, commit


def write(name: str, rows, commit: str, repo_name: str) -> Path:
    params = sum(int(torch.Size(s).numel()) for _, s in rows)
    lines = [
        f"# {name}: {len(rows)} tensors, {params:,} params (official CausalWanModel, {repo_name} @{commit[:7]}; "
        "released generator keys = WanDiffusionWrapper.model.<key>)"
    ]
    lines += [f"{k}\t{list(s)}" for k, s in rows]
    out = KEYS / f"{name}.txt"
    out.write_text("\n".join(lines) + "\n")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--longlive", type=Path, help="NVlabs/LongLive (LongLive 2.0) repository")
    ap.add_argument("--reward-forcing", type=Path, help="JaydenLyh/Reward-Forcing repository")
    ap.add_argument("--causal-forcing", type=Path, help="thu-ml/Causal-Forcing repository")
    args = ap.parse_args(argv)
    todo = [
        (args.longlive, "longlive", "NVlabs/LongLive"),
        (args.reward_forcing, "reward_forcing", "JaydenLyh/Reward-Forcing"),
        (args.causal_forcing, "causal_forcing", "thu-ml/Causal-Forcing"),
    ]
    for repo, family, repo_name in todo:
        if repo is None:
            continue
        name, rows, commit = manifest(repo, family)
        print(f"wrote {write(name, rows, commit, repo_name).relative_to(ROOT)} ({len(rows)} tensors)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
