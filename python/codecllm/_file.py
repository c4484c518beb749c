"""What a .cllm holds: tensors, modes, sizes, the carried config and tokenizer files."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from . import _native


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple
    dtype: str  # the source dtype, as safetensors spells it ("BF16", "F32", ...)
    mode: str  # "lossless" or "int8"
    elements: int
    decoded_bytes: int
    stored_bytes: int
    planes: tuple = ()  # "role:codec" of each stored plane ("exponent:rans", "sign_mantissa:raw", ...)

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.stored_bytes / self.elements if self.elements else 0.0


class CllmFile:
    """A .cllm file, held open (memory-mapped) while this object lives."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self._file = _native.open_file(self.path)
        self.tensors = [
            TensorInfo(
                t["name"],
                tuple(t["shape"]),
                t["dtype"],
                t["mode"],
                t["elements"],
                t["decoded_bytes"],
                t["stored_bytes"],
                tuple(t["planes"]),
            )
            for t in _native.tensors(self._file)
        ]
        self._by_name = {t.name: t for t in self.tensors}

    @property
    def mode(self) -> str:
        return _native.file_mode(self._file)

    @property
    def source(self) -> str:
        return _native.file_source(self._file)

    @property
    def file_bytes(self) -> int:
        return _native.file_size(self._file)

    @property
    def elements(self) -> int:
        return sum(t.elements for t in self.tensors)

    @property
    def bits_per_weight(self) -> float:
        stored = sum(t.stored_bytes for t in self.tensors)
        return 8.0 * stored / self.elements if self.elements else 0.0

    def tensor(self, name: str) -> TensorInfo:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"{self.path}: no tensor named '{name}'") from None

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    @property
    def blob_names(self) -> list[str]:
        return list(_native.blob_names(self._file))

    def blob(self, name: str) -> bytes:
        return _native.blob(self._file, name)

    @property
    def config(self) -> dict:
        """The Hugging Face config.json the file carries."""
        try:
            return json.loads(self.blob("config.json"))
        except (RuntimeError, ValueError) as e:
            raise ValueError(f"{self.path}: no readable config.json: {e}") from None

    def __repr__(self) -> str:
        return (
            f"CllmFile('{self.path}': {len(self.tensors)} tensors, {self.mode}, "
            f"{self.file_bytes / 2**20:.1f} MiB, {self.bits_per_weight:.2f} bits/weight)"
        )


def open_cllm(path: str | os.PathLike) -> CllmFile:
    """What a .cllm holds (tensors, dtypes, modes, sizes, bits per weight); raises naming the file when it is
    not a valid .cllm."""
    return CllmFile(path)
