"""Just-in-time decoding of decoder blocks on the GPU.

Each block's linear weights are one GpuDecoder over the block's compressed byte range, which
lives in VRAM (gpu-compressed) or in pinned host RAM (host). Each block always decodes into the
same one of a few scratch slots allocated once, so its modules' weights are views set once.
Before a block runs (a forward pre-hook), the block before it has been enqueued: its slot is
handed to the block `slots` places later, whose decode is enqueued on a side stream behind an
event, and the compute stream waits for this block's decode. After the last block (its one
forward hook) the first ones are decoded again for the next forward. When which hand-over
happens is the native BlockPipeline's (python/src/block_pipeline.hpp), each step's CUDA calls the
native BlockHandoff's (block_handoff.hpp; the decodes' made by a thread of its own,
launch_thread.hpp), and every block's hook but the first is the native call itself: a
generate() is bound by the CPU's Python, where a Python hook with its bookkeeping cost tens of
microseconds a block. The first block's hook, once a forward, looks up the forward's stream in
Python. Slots, staging buffers, streams and events are made once: a step allocates nothing.

With fused products (every streamed block gpu-compressed, every weight one the decode-GEMV
kernels take), a forward of one token decodes nothing: each linear layer multiplies straight
from the compressed weights in VRAM (GpuDecoder.gemv), as the C++ engine does at batch 1, and
the slots serve only forwards of several tokens. The mode is chosen per forward, at its first
block, from the number of tokens the block receives.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from . import _native

ALIGN = 256  # each tensor's place in a slot starts 256-byte aligned, as the C++ streamer's groups do
CHECK_EVERY = 64  # forwards between integrity checks of the decoders (each synchronizes)


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


@dataclass
class Block:
    index: int
    placement: str  # "gpu", "gpu-compressed" or "host"
    decoder: object
    modules: list  # the modules whose .weight the block's tensors are, in decoder order
    shapes: list
    offsets: list
    layout_bytes: int
    rank: int = -1  # among streamed blocks
    host_rank: int = -1  # among host blocks
    pinned: torch.Tensor | None = None  # host: the compressed range in pinned RAM
    stage: torch.Tensor | None = None  # host: its staging buffer on the device
    resident: torch.Tensor | None = None  # gpu: the decoded weights
    views: list = field(default_factory=list)  # streamed: weight views into its slot
    pointers: list = field(default_factory=list)  # streamed: where its tensors go in its slot


def block_layout(decoder) -> tuple:
    """Where each of a block's decoded tensors lies in a slot (each 256-byte aligned), and the slot's size: what a
    plan counts and what the streamer allocates."""
    offsets, size = [], 0
    for j in range(decoder.num_tensors):
        offsets.append(size)
        size = _align(size + decoder.output_bytes(j))
    return offsets, size


def _tokens(args, kwargs) -> int:
    """The tokens a block's forward receives: the rows of its first tensor argument (its hidden states)."""
    for a in (*args, *kwargs.values()):
        if isinstance(a, torch.Tensor) and a.dim() >= 2:
            return a.numel() // a.shape[-1]
    return 0


class BlockStreamer:
    def __init__(
        self,
        blocks,
        decoders,
        placements,
        dtype,
        device,
        slots=3,
        prefetch=2,
        fused=False,
        blocks_per_sm=0,
        refill_after_forward=True,
    ):
        """blocks: [(block module, [(tensor name, module owning .weight, shape)])]; decoders: a GpuDecoder over each
        block's tensor names, in that order; placements: per block. fused: forwards of one token multiply straight
        from the compressed weights (raises ValueError naming what cannot). blocks_per_sm: at most that many decode
        thread blocks resident on each SM (0: as many as fit), leaving room for the forward's own kernels.
        refill_after_forward: the next forward's first decodes are enqueued by end_forward() (a hook on the whole
        model, after its head) and start after the head on the GPU, instead of beside it after the last block."""
        self.device = torch.device(device)
        self.dtype = dtype
        self.blocks: list[Block] = []
        load = torch.cuda.current_stream(self.device)
        for i, ((_, linears), dec, placement) in enumerate(zip(blocks, decoders, placements)):
            offsets, size = block_layout(dec)
            self.blocks.append(
                Block(i, placement, dec, [m for _, m, _ in linears], [s for _, _, s in linears], offsets, size)
            )
        self.layout_bytes = max((b.layout_bytes for b in self.blocks), default=0)
        self.streamed = [b for b in self.blocks if b.placement != "gpu"]
        self.hosted = [b for b in self.blocks if b.placement == "host"]
        for r, b in enumerate(self.streamed):
            b.rank = r
        for r, b in enumerate(self.hosted):
            b.host_rank = r
        self.nslots = min(slots, len(self.streamed))
        self.nstages = min(prefetch, len(self.hosted))
        self.slots = [torch.empty(self.layout_bytes, dtype=torch.uint8, device=self.device) for _ in range(self.nslots)]
        max_range = max((b.decoder.range_bytes for b in self.hosted), default=0)
        self.stages = [torch.empty(max_range, dtype=torch.uint8, device=self.device) for _ in range(self.nstages)]
        # With n slots, one holds the block computing and n - 1 may decode at once, each on its side stream with
        # its own decoder scratch (the decoders are made with external_scratch).
        nstreams = max(self.nslots - 1, 1)
        self.handoff = _native.BlockHandoff(max(self.nslots, 1), nstreams, max(self.nstages, 1))
        scratch_bytes = max((b.decoder.scratch_bytes for b in self.blocks), default=0)
        self.scratch = [torch.empty(scratch_bytes, dtype=torch.uint8, device=self.device) for _ in range(nstreams)]
        for i, buffer in enumerate(self.scratch):
            self.handoff.set_scratch(i, buffer.data_ptr() if scratch_bytes else 0)
        self.memory = {
            "decoded_weights": 0,
            "compressed_weights": 0,
            "decoder_tables": 0,
            "pinned_host": 0,
            "scratch": self.nslots * self.layout_bytes + self.nstages * max_range + nstreams * scratch_bytes,
        }
        for b in self.blocks:
            if b.placement == "gpu":
                b.resident = torch.empty(b.layout_bytes, dtype=torch.uint8, device=self.device)
                b.decoder.decode_from_host(
                    self._pointers(b.resident, b), load.cuda_stream, self.scratch[0].data_ptr() if scratch_bytes else 0
                )
                b.decoder.check(load.cuda_stream)
                for m, v in zip(b.modules, self._views(b.resident, b)):
                    m.weight = v
                b.decoder = None  # its tables are freed; the weights stay decoded
                self.memory["decoded_weights"] += b.layout_bytes
            elif b.placement == "gpu-compressed":
                b.decoder.upload_resident(load.cuda_stream)
                self.memory["compressed_weights"] += b.decoder.range_bytes
                self.memory["decoder_tables"] += b.decoder.device_bytes - b.decoder.range_bytes
            else:
                b.pinned = torch.empty(b.decoder.range_bytes, dtype=torch.uint8, pin_memory=True)
                b.decoder.copy_range_to(b.pinned.data_ptr())
                b.stage = self.stages[b.host_rank % self.nstages][: b.decoder.range_bytes]  # made once, not per step
                self.memory["pinned_host"] += b.decoder.range_bytes
                self.memory["decoder_tables"] += b.decoder.device_bytes
            if b.placement != "gpu":
                b.decoder.set_blocks_per_sm(blocks_per_sm)
                slot = self.slots[b.rank % self.nslots]
                b.views = self._views(slot, b)
                b.pointers = self._pointers(slot, b)
                for m, v in zip(b.modules, b.views):
                    m.weight = v  # valid while the block runs: its decode lands there before each run
                host = b.placement == "host"
                self.handoff.add_block(  # its number there: its rank
                    b.decoder,
                    b.pointers,
                    b.rank % self.nslots,
                    b.rank % max(self.nslots - 1, 1),
                    b.stage.data_ptr() if host else b.decoder.resident,
                    b.pinned.data_ptr() if host else 0,
                    b.decoder.range_bytes if host else 0,
                    b.host_rank % self.nstages if host else -1,
                )
                self._hook(blocks[b.index][0], b)
        torch.cuda.synchronize(self.device)
        self.forwards = 0
        self.fused = fused
        self.fusing = False  # this forward's products run straight from the compressed weights
        self.stream = load.cuda_stream  # the forward's compute stream, looked up again at its first block
        if fused:
            self._fuse(blocks)
        if self.streamed:
            self.handoff.start(refill_after_forward)

    def _views(self, buffer, b):
        return [
            buffer[off : off + b.decoder.output_bytes(j)].view(self.dtype).view(shape)
            for j, (off, shape) in enumerate(zip(b.offsets, b.shapes))
        ]

    def _pointers(self, buffer, b):
        return [buffer.data_ptr() + off for off in b.offsets]

    def _fuse(self, blocks):
        """Gives each linear layer of the blocks a forward that, in a fused forward, multiplies straight from the
        compressed weights."""
        if self.dtype != torch.bfloat16:
            raise ValueError(f"fused products take bfloat16 models, not {self.dtype}")
        for b in self.blocks:
            if b.placement != "gpu-compressed":
                raise ValueError(f"fused products need every block gpu-compressed; block {b.index} is {b.placement}")
            for j, (name, m, _) in enumerate(blocks[b.index][1]):
                if not isinstance(m, torch.nn.Linear) or not b.decoder.gemv_ready(j):
                    raise ValueError(
                        f"'{name}' cannot be multiplied straight from its compressed form (a {type(m).__name__}; "
                        "the kernels take nn.Linear matrices of lossless BF16, rows a multiple of 256 long, or "
                        "exp4-coded, rows a multiple of 8)"
                    )
                m.forward = self._fused_forward(m, b.decoder, j)

    def _fused_forward(self, module, decoder, index):
        out_features, bias = module.out_features, module.bias

        def forward(x):
            if not self.fusing:
                return F.linear(x, module.weight, bias)
            if not x.is_contiguous() or x.data_ptr() % 16:  # the kernels read x in 16-byte vectors
                x = x.clone(memory_format=torch.contiguous_format)
            y = x.new_empty((*x.shape[:-1], out_features))
            decoder.gemv(index, x.data_ptr(), y.data_ptr(), self.stream)
            return y if bias is None else y.add_(bias)

        return forward

    def _hook(self, module, b):
        """Block b's hooks: the first block's in Python (once a forward), every other block's the native call."""
        if b.rank == 0:
            module.register_forward_pre_hook(self._begin_forward, with_kwargs=True)
        else:
            module.register_forward_pre_hook(functools.partial(self.handoff.before, b.rank))
        if b.rank == len(self.streamed) - 1:
            module.register_forward_hook(self.handoff.after_last)

    def _begin_forward(self, module, args, kwargs):
        """A forward begins: its compute stream (microseconds a lookup, once a forward), an integrity check every
        CHECK_EVERY forwards, and whether its products run fused (one token each, fused products on)."""
        self.stream = torch.cuda.current_stream(self.device).cuda_stream
        self.forwards += 1
        if self.forwards % CHECK_EVERY == 1:
            self.check()
        self.fusing = self.fused and _tokens(args, kwargs) == 1
        self.handoff.begin_forward(self.stream, self.fusing)

    def end_forward(self):
        """The whole forward is enqueued (a hook on the model, after its head, with refill_after_forward): the next
        forward's first decodes go in now, behind the head on the GPU."""
        self.handoff.end_forward()

    def check(self):
        """Waits for the decodes (and fused products) and raises naming the file, tensor and chunk of the first
        corrupt one."""
        self.handoff.synchronize()
        stream = torch.cuda.current_stream(self.device).cuda_stream
        with torch.cuda.device(self.device):  # the decoders' status words are on the streamer's device
            for b in self.streamed:
                b.decoder.check(stream)
