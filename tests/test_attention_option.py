"""``--attention`` / ``attention=``: an unknown backend, or one this device cannot run (sage / flash
need CUDA and their package), is refused before any model file is looked up; the command line
offers exactly the backends ``wan_core.attention`` knows."""

from __future__ import annotations

import pytest
import torch

import wan_core.rollout.loading as loading
from wan_core import api
from wan_core.__main__ import build_parser
from wan_core.attention import BACKENDS
from wan_core.rollout.request import VideoRequest


class _Looked(Exception):
    pass


@pytest.fixture
def no_model_files(monkeypatch):
    def looked(*args, **kwargs):
        raise _Looked("a model file was looked up")

    for name in ("resolve_files", "build_pipeline", "encode_text"):
        monkeypatch.setattr(loading, name, looked)


def _request(tmp_path):
    return VideoRequest("self-forcing-1.3b", prompt="a fox", width=48, height=32, frames=9,
                        output=str(tmp_path / "v.mp4"))  # fmt: skip


@pytest.mark.parametrize("backend, why", [("sideways", "unknown attention backend"), ("sage", "CUDA"),
                                          ("flash", "CUDA"), (None, "must be one of")])  # fmt: skip
def test_an_unusable_backend_is_refused_before_any_model_file(tmp_path, no_model_files, backend, why):
    with pytest.raises(ValueError, match=why) as info:
        api.generate_video(_request(tmp_path), models_dir=tmp_path, device="cpu", attention=backend)
    assert str(info.value).startswith(f"attention {backend!r}")
    assert list(tmp_path.iterdir()) == []


def test_a_usable_backend_gets_to_the_model_files(tmp_path, no_model_files):
    for backend in ("auto", "sdpa", "SDPA"):
        with pytest.raises(_Looked):
            api.generate_video(_request(tmp_path), models_dir=tmp_path, device="cpu", attention=backend)


def test_check_attention_resolves_on_the_device():
    assert api.check_attention("auto", torch.device("cpu")) == "sdpa"
    with pytest.raises(ValueError, match="--attention 'flash'"):
        api.check_attention("flash", torch.device("cpu"), option="--attention")


def test_the_cli_offers_exactly_the_backends(capsys):
    assert api.ATTENTION_CHOICES == ("auto", *BACKENDS)
    parser = build_parser()
    base = ["generate", "--preset", "self-forcing-1.3b", "--prompt", "x", "--models-dir", "m"]
    args = parser.parse_args([*base, "--attention", "sdpa"])
    assert args.attention == "sdpa"
    with pytest.raises(SystemExit) as info:
        parser.parse_args([*base, "--attention", "sideways"])
    assert info.value.code == 2 and "invalid choice: 'sideways'" in capsys.readouterr().err
    action = next(a for a in parser._subparsers._group_actions[0].choices["generate"]._actions
                  if a.dest == "attention")  # fmt: skip
    assert tuple(action.choices) == api.ATTENTION_CHOICES
