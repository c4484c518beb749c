"""codecllm.compress: the CLI's `compress` from Python."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

from . import _native


@dataclass
class CompressSummary:
    path: str
    mode: str
    file_bytes: int
    source_bytes: int
    stored_bytes: int
    elements: int
    seconds: float
    tensors: list = field(default_factory=list)  # one dict per tensor: name, elements, source/stored bytes, int8

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.stored_bytes / self.elements if self.elements else 0.0

    @property
    def ratio(self) -> float:
        return self.stored_bytes / self.source_bytes if self.source_bytes else 0.0

    def __str__(self) -> str:
        return (
            f"{self.path}: {len(self.tensors)} tensors, {self.mode}, {self.source_bytes / 2**20:.1f} MiB -> "
            f"{self.stored_bytes / 2**20:.1f} MiB ({100 * self.ratio:.1f}%, {self.bits_per_weight:.3f} bits/weight) "
            f"in {self.seconds:.1f} s"
        )


def _terminal_bar():
    """A progress bar on stderr when it is a terminal (tqdm's, which transformers brings), else None."""
    if not sys.stderr.isatty():
        return None, None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None, None
    bar = tqdm(total=0, unit="tensor", desc="compress", file=sys.stderr)

    def update(done, total, name):
        bar.total = total
        bar.n = done
        bar.set_postfix_str(name[-40:], refresh=True)

    return bar, update


def compress(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    mode: str = "lossless",
    *,
    threads: int = 0,
    chunk_symbols: int | None = None,
    one_table: bool = False,
    codec: str = "rans",
    zstd_level: int = 3,
    progress=None,
) -> CompressSummary:
    """Compresses a Hugging Face directory (single or sharded safetensors) or a llama2.c .bin into a .cllm.

    mode: "lossless" (bit for bit) or "int8" (per-row symmetric INT8, entropy coded). threads: 0 uses all
    cores. chunk_symbols: rANS symbols per chunk; None takes the package's 16384 (GPU decoders run a warp per
    chunk: on a Llama-3-8B shape, load_model's block decodes kept pace with transformers only with these, and
    fused products need them), ~0.5% larger than the CLI's default of 131072, which 0 takes. codec: "rans" (the default; smallest, fastest GPU decode), "exp4" (BF16 exponents as 4-bit codes, 12
    bits a weight, multiplied without a decode pass at batch 1; larger than rans) or "zstd" (standard Zstd frames, decoded on the GPU by
    nvCOMP where the build has it), zstd_level its level; the CLI's --codec and --zstd-level. progress: None for a bar on a terminal, False for none, or a callable(done, total, tensor_name).
    The output is written under a temporary name and renamed when complete.
    """
    if codec not in ("rans", "exp4", "zstd"):
        raise ValueError(f"codec must be 'rans', 'exp4' or 'zstd', got {codec!r}")
    bar = None
    if progress is None:
        bar, progress = _terminal_bar()
    elif progress is False:
        progress = None
    try:
        if chunk_symbols is None:
            chunk_symbols = _native.streaming_chunk_symbols
        r = _native.compress(
            os.fspath(src), os.fspath(dst), mode, threads, chunk_symbols, one_table, codec, zstd_level, progress
        )
    finally:
        if bar is not None:
            bar.close()
    tensors = list(r["tensors"])
    return CompressSummary(
        path=os.fspath(dst),
        mode=mode,
        file_bytes=r["file_bytes"],
        source_bytes=sum(t["source_bytes"] for t in tensors),
        stored_bytes=sum(t["stored_bytes"] for t in tensors),
        elements=sum(t["elements"] for t in tensors),
        seconds=r["seconds"],
        tensors=tensors,
    )


def decompress(path: str | os.PathLike, out_dir: str | os.PathLike) -> None:
    """Writes a Hugging Face directory (model.safetensors, config.json and the carried files) back from a .cllm:
    lossless tensors byte-identical, int8 ones dequantized to their source dtype."""
    _native.decompress(os.fspath(path), os.fspath(out_dir))
