"""Record (or check) the golden rollouts of every preset: ``tests/data/rollout_goldens.safetensors``.

The cases, the tiny random models and the runs live in ``tests/rollout_golden_cases.py`` (the test
``tests/test_rollout_goldens.py`` runs the same code and asserts exact equality). Recording runs every
case twice (the two runs must be equal), checks that the cases exercise what they say (a prompt switch
changes the video from its chunk on and nothing before it, relative RoPE differs from absolute once the
window rolled, the image latent is stamped), and writes the tensors (keys ``<case>/<name>``) plus
``rollout_goldens.json`` (cases, presets, shapes, the commit and PyTorch they came from).

    python tools/make_rollout_goldens.py           # record, from the commit the goldens must describe
    python tools/make_rollout_goldens.py --check   # compare a fresh run with the stored file
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import rollout_golden_cases as gc  # noqa: E402
import torch  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

DATA = ROOT / "tests" / "data" / "rollout_goldens.safetensors"
SIDECAR = DATA.with_suffix(".json")
MAX_BYTES = 2_000_000


def _commit() -> str:
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    rev = git("rev-parse", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "wan_core")
    return rev + (" (wan_core modified)" if dirty else "")


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max())


def run_all() -> dict[str, dict[str, torch.Tensor]]:
    out = {}
    for name in gc.CASES:
        t0 = time.perf_counter()
        first, second = gc.run_case(name), gc.run_case(name)
        bad = [k for k in first if not torch.equal(first[k], second[k])]
        if bad or first.keys() != second.keys():
            raise SystemExit(f"{name}: two runs differ ({bad}): not deterministic, nothing written")
        out[name] = first
        print(f"  {name:42s} {len(first):3d} tensors  {(time.perf_counter() - t0) / 2:6.2f} s")
    return out


def _check(cond: bool, what: str) -> None:
    print(f"  {'ok ' if cond else 'BAD'} {what}")
    if not cond:
        raise SystemExit(f"sanity check failed: {what}")


def sanity(res: dict[str, dict[str, torch.Tensor]]) -> None:
    """The cases exercise what they claim (so equal goldens mean something)."""

    def chunks(name, prefix=""):
        r = res[name]
        n = sum(1 for k in r if k.startswith(prefix + "chunk"))
        return [r[f"{prefix}chunk{i}"] for i in range(n)]

    def split(a, b, at):
        """a and b equal before chunk ``at``, different from it on."""
        same = all(torch.equal(x, y) for x, y in zip(a[:at], b[:at]))
        diff = min(_diff(x, y) for x, y in zip(a[at:], b[at:]))
        return same and diff > 1e-4

    ws, rel = chunks("self-forcing/window-sink"), chunks("self-forcing/relative-rope")
    _check(_diff(ws[-1], rel[-1]) > 1e-4, "relative RoPE differs from absolute once the window rolled")
    _check(max(_diff(x, y) for x, y in zip(ws[:3], rel[:3])) < 1e-4, "... and agrees before it rolls")
    pub = chunks("longlive/published")
    _check(split(pub, chunks("longlive/switch-before-roll"), 2), "LongLive switch at 2: video changes from 2")
    _check(split(pub, chunks("longlive/switch-after-roll"), 5), "LongLive switch at 5: video changes from 5")
    _check(
        _diff(chunks("longlive/switch-after-roll")[-1], chunks("longlive/switch-relative-rope")[-1]) > 1e-4,
        "LongLive switch: relative RoPE differs from absolute",
    )
    _check(
        split(chunks("krea/first-frame"), chunks("krea/switch"), 3), "Krea switch at 3: video changes from 3"
    )
    a, b = chunks("self-forcing/context-pass-last", "a/"), chunks("self-forcing/context-pass-last", "b/")
    _check(_diff(a[0], b[0]) > 1e-4, "second video on a kept pipeline is another video")
    with gc.deterministic():
        vae21, vae22 = gc._vae21(), gc._vae22()
        z = vae21.encode_chunk(gc._image(1)[:, :, None], vae21.new_encode_cache())
        z22 = vae22.encode_chunk(gc._image(3, gc.TI2V_H, gc.TI2V_W)[:, :, None], vae22.new_encode_cache())
    _check(
        torch.equal(chunks("self-forcing/image-mask-inject")[0][:, :, :1], z),
        "mask_inject keeps the image latent",
    )
    _check(torch.equal(chunks("wan2.2-ti2v-5b/image")[0][:, :, :1], z22), "TI2V latent 0 is the image latent")
    fr = res["krea/reencode"]
    _check(all(f"frames{i}" in fr for i in range(4)), "Krea reencode keeps decoded frames")
    covered = {c.preset for c in gc.CASES.values()}
    from wan_core.rollout import PRESETS

    _check(set(PRESETS) <= covered, f"every preset has a case (missing: {sorted(set(PRESETS) - covered)})")


def record() -> int:
    print("running every case twice:")
    t0 = time.perf_counter()
    res = run_all()
    print(f"  total {time.perf_counter() - t0:.1f} s (both runs)")
    print("sanity:")
    sanity(res)
    flat = {f"{name}/{k}": v.contiguous() for name, r in res.items() for k, v in r.items()}
    commit = _commit()
    meta = {"commit": commit, "torch": torch.__version__, "command": "python tools/make_rollout_goldens.py"}
    meta["cases"] = json.dumps(list(res))
    DATA.parent.mkdir(parents=True, exist_ok=True)
    save_file(flat, str(DATA), metadata=meta)
    side = {
        **{k: v for k, v in meta.items() if k != "cases"},
        "about": "golden rollouts of every preset on tiny random weights (CPU, fp32); see "
        "tests/rollout_golden_cases.py",
        "cases": {
            name: {
                "preset": gc.CASES[name].preset,
                "what": gc.CASES[name].what,
                "tensors": {k: "x".join(map(str, v.shape)) + f" {v.dtype}" for k, v in r.items()},
            }
            for name, r in res.items()
        },
    }
    SIDECAR.write_text(json.dumps(side, indent=1) + "\n")
    size = DATA.stat().st_size
    print(f"wrote {DATA.relative_to(ROOT)} ({size / 1e6:.2f} MB, {len(flat)} tensors, {len(res)} cases)")
    if size > MAX_BYTES:
        print(f"warning: over {MAX_BYTES / 1e6:.0f} MB; shrink the cases")
        return 1
    return 0


def check() -> int:
    stored = load_file(str(DATA))
    with safe_open(str(DATA), framework="pt") as f:
        stored_cases = json.loads(f.metadata()["cases"])
    bad = 0
    for name in gc.CASES:
        got = gc.run_case(name)
        want = {k[len(name) + 1 :]: v for k, v in stored.items() if k.startswith(name + "/")}
        if got.keys() != want.keys():
            print(f"  DIFF {name}: keys {sorted(got)} vs stored {sorted(want)}")
            bad += 1
            continue
        diffs = {k: _diff(got[k], want[k]) for k in got if not torch.equal(got[k], want[k])}
        print(f"  {'ok  ' if not diffs else 'DIFF'} {name}" + (f": {diffs}" if diffs else ""))
        bad += bool(diffs)
    stale = set(stored_cases) - set(gc.CASES)
    if stale:
        print(f"  stored cases no longer defined: {sorted(stale)}")
    return 1 if bad or stale else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare a fresh run with the stored file")
    args = ap.parse_args(argv)
    return check() if args.check else record()


if __name__ == "__main__":
    raise SystemExit(main())
