"""Embedding tables and output heads kept in pinned host memory instead of VRAM.

They are decoded on the GPU at load, like every weight, and copied once into pinned host memory
(never decoded by the CPU). An embedding lookup then reads only the rows of its token ids, in
place over PCIe (unified addressing maps pinned memory into the device's address space); an
output head is copied over in pieces through two small device buffers on a side stream, each
piece's product running while the next piece crosses. The C++ engine does the same for its
host placements (and for gpu-compressed's embedding table).
"""

from __future__ import annotations

import types

import torch

from . import _native

PIECE_BYTES = 128 << 20  # an output head crosses in pieces of at most this many bytes, two buffers deep


def to_pinned(tensor: torch.Tensor) -> torch.Tensor:
    """A pinned host copy of a device tensor (a device-to-host copy of bytes the GPU decoded)."""
    host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    host.copy_(tensor)
    return host


def plain_embedding(module) -> bool:
    """An nn.Embedding whose forward is nn.Embedding's own (no scaling subclass), without max_norm (which rewrites
    the table): a row lookup is then all its forward does."""
    return (
        isinstance(module, torch.nn.Embedding)
        and type(module).forward is torch.nn.Embedding.forward
        and module.max_norm is None
    )


def plain_linear(module) -> bool:
    """An nn.Linear whose forward is nn.Linear's own."""
    return isinstance(module, torch.nn.Linear) and type(module).forward is torch.nn.Linear.forward


def host_embedding(module: torch.nn.Embedding, table: torch.Tensor, device: torch.device) -> None:
    """Makes `module` look its rows up in `table` (pinned host memory): its weight parameter goes, and the table
    stays reachable as module.weight (a host tensor)."""
    rows, dim = table.shape
    row_bytes = dim * table.element_size()
    bad = torch.zeros(1, dtype=torch.int32, device=device)
    rows_at = _native.host_device_pointer(table.data_ptr())

    def forward(self, input_ids):
        ids = input_ids.to(device=device, dtype=torch.int64).contiguous()
        out = torch.empty(*ids.shape, dim, dtype=table.dtype, device=device)
        stream = torch.cuda.current_stream(device).cuda_stream
        _native.gather_host_rows(
            rows_at, rows, row_bytes, ids.data_ptr(), ids.numel(), out.data_ptr(), bad.data_ptr(), stream
        )
        if bad.item():  # a synchronization the size of one lookup; torch's own embedding fails here too
            bad.zero_()
            raise IndexError(f"embedding lookup: a token id outside [0, {rows})")
        return out

    module._parameters.pop("weight", None)
    module.weight = table
    module.forward = types.MethodType(forward, module)


class HostRowsLinear:
    """y = x W^T + b for a W in pinned host memory, copied over in row pieces through two device buffers."""

    def __init__(self, weight: torch.Tensor, bias, device: torch.device, piece_bytes: int = PIECE_BYTES):
        self.weight, self.bias, self.device = weight, bias, device
        rows, cols = weight.shape
        row_bytes = cols * weight.element_size()
        self.piece_rows = max(1, min(rows, piece_bytes // row_bytes))
        self.buffers = [
            torch.empty(self.piece_rows, cols, dtype=weight.dtype, device=device) for _ in range(min(2, rows))
        ]
        self.stream = torch.cuda.Stream(device)
        self.ready = [torch.cuda.Event() for _ in self.buffers]
        self.free = [torch.cuda.Event() for _ in self.buffers]
        self.scratch_bytes = sum(b.numel() * b.element_size() for b in self.buffers)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        rows = self.weight.shape[0]
        compute = torch.cuda.current_stream(self.device)
        out = torch.empty(*x.shape[:-1], rows, dtype=x.dtype, device=self.device)
        for i, first in enumerate(range(0, rows, self.piece_rows)):
            n = min(self.piece_rows, rows - first)
            k = i % len(self.buffers)
            self.stream.wait_event(self.free[k])
            with torch.cuda.stream(self.stream):
                self.buffers[k][:n].copy_(self.weight[first : first + n], non_blocking=True)
            self.ready[k].record(self.stream)
            compute.wait_event(self.ready[k])
            bias = None if self.bias is None else self.bias[first : first + n]
            out[..., first : first + n] = torch.nn.functional.linear(x, self.buffers[k][:n], bias)
            self.free[k].record(compute)
        return out


def host_linear(module: torch.nn.Linear, weight: torch.Tensor, device: torch.device, piece_bytes: int) -> int:
    """Makes `module` stream its weight (pinned host memory) in pieces; returns the device bytes of its buffers."""
    streamed = HostRowsLinear(weight, module.bias, device, piece_bytes)
    module._parameters.pop("weight", None)
    module.weight = weight
    module._codecllm_rows = streamed
    module.forward = types.MethodType(lambda self, x: streamed(x), module)
    return streamed.scratch_bytes
