"""A streamed model's forwards on a CUDA stream of high priority.

The blocks' decodes run on the block streamer's side streams. The GPU dispatches the thread
blocks of kernels of equal priority roughly in launch order, so a block's matmuls enqueued while
the next block's decode is running wait until the decode has dispatched nearly all of its thread
blocks: the two serialize, and a step takes the decodes' GPU time plus the matmuls'. Measured on
the H200 (Llama-3-8B shape, 16384-symbol chunks): `gpu-compressed` 26-30 ms a step at batch 1
and 8 where plain transformers took 24-26, about the sum of the two GPU times. On a stream of
higher priority than the side streams the matmuls' thread blocks go first as SMs free up, and
the decodes fill what they leave.

The caller's stream and the forward's are ordered both ways (the forward waits for the caller's
work at entry, the caller for the forward's at exit), so a caller sees no difference but speed.
Tensors a forward allocates belong to its stream's pool in torch's caching allocator; they are
reused only by later forwards, which begin by waiting for everything the caller enqueued.
"""

from __future__ import annotations

import torch


class PriorityStream:
    """Runs every forward of `model` on one high-priority stream of `device` (one device only)."""

    def __init__(self, model: torch.nn.Module, device: torch.device):
        self.device = device
        # Priorities beyond the device's range are clamped to it: this is the highest there is.
        self.stream = torch.cuda.Stream(device, priority=-100)
        # Made once and recorded again each forward (Stream.wait_stream would create an event a call).
        self.entered, self.left = torch.cuda.Event(), torch.cuda.Event()
        self.callers: list[torch.cuda.Stream] = []
        model.register_forward_pre_hook(self._enter)
        # always_call: a forward that raises still hands the caller back its stream.
        model.register_forward_hook(self._exit, always_call=True)

    def _enter(self, module, args):
        caller = torch.cuda.current_stream(self.device)
        self.callers.append(caller)
        if caller != self.stream:
            self.entered.record(caller)
            self.stream.wait_event(self.entered)
            torch.cuda.set_stream(self.stream)

    def _exit(self, module, args, output):
        caller = self.callers.pop()
        if caller != self.stream:
            self.left.record(self.stream)
            caller.wait_event(self.left)
            torch.cuda.set_stream(caller)
