"""Malicious pickles for the checked-reader tests: each would set ``ENV_FLAG`` and create a marker file
when unpickled with ``weights_only=False`` (the tests check that neither ever happens)."""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path

import torch

ENV_FLAG = "WANSTREAM_TEST_PAYLOAD_RAN"


class ExecPayload:
    """``exec`` of code that sets the flag and writes the marker."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        code = f"import os; os.environ[{ENV_FLAG!r}] = '1'; open({str(self.marker)!r}, 'w').write('ran')"
        return (exec, (code,))


class SystemPayload:
    """``os.system`` (pickled as ``posix.system``) of a shell command that writes the marker."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


PAYLOADS = {"exec": (ExecPayload, "builtins.exec"), "system": (SystemPayload, "posix.system")}


def plain_pickle(path: Path, payload, protocol: int = 2) -> None:
    path.write_bytes(pickle.dumps({"weight": payload}, protocol=protocol))


def torch_zip(path: Path, state: dict, payload) -> None:
    """A real ``torch.save`` zip of ``state`` with the payload as one more entry."""
    torch.save({**state, "hidden": payload}, path)


def legacy_torch(path: Path, state: dict, payload) -> None:
    torch.save({**state, "hidden": payload}, path, _use_new_zipfile_serialization=False)


def zip_with_evil_data_pkl(path: Path, state: dict, payload) -> None:
    """A valid torch zip of ``state`` whose ``data.pkl`` is replaced by a pickle of the payload."""
    buf = io.BytesIO()
    torch.save(state, buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as out:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("/data.pkl"):
                data = pickle.dumps(payload, protocol=2)
            out.writestr(info, data)


def nested_in_training_dict(path: Path, state: dict, payload) -> None:
    """A Self-Forcing style training dict whose EMA weights hide the payload next to the tensors."""
    torch.save({"generator_ema": {**state, "model.evil": payload}, "generator": state}, path)


SHAPES = {
    "plain_pickle": lambda p, state, payload: plain_pickle(p, payload),
    "plain_pickle_p4": lambda p, state, payload: plain_pickle(p, payload, protocol=4),
    "torch_zip": torch_zip,
    "legacy_torch": legacy_torch,
    "zip_evil_data_pkl": zip_with_evil_data_pkl,
    "in_training_dict": nested_in_training_dict,
}
