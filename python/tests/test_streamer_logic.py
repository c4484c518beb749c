"""The block streamer's hand-over logic, on the CPU: its hooks driven as forwards drive them, against a stand-in
for the native BlockHandoff that checks every call against the slots' state. A block's decode may only go into a
slot its last user has released, a block may only run on a decode of itself, each block runs once a forward; fused
forwards (one token) touch no slot; a forward that stops midway is recovered from."""

import functools

import pytest
import torch
from codecllm import _native, _streamer
from codecllm._streamer import Block, BlockStreamer


class CheckedHandoff:
    """The native pipeline with its actions recorded (BlockPipelineTrace), each checked as it comes against each
    slot's state: the block decoded into it, whether a block computing holds it (from its wait to its release),
    whether a decode into it is still in flight (until a block waits for it, or the device is synchronized)."""

    def __init__(self, blocks, slots):
        self.trace = _native.BlockPipelineTrace(blocks, slots)
        self.slots = slots
        self.holds = {}
        self.running = dict.fromkeys(range(slots), False)
        self.in_flight = dict.fromkeys(range(slots), False)
        self.ran = []  # blocks waited for, in order
        self.actions = []  # every action, in order

    def __getattr__(self, name):  # start, begin_forward, before, after_last, end_forward: the trace's, checked
        call = getattr(self.trace, name)

        def checked(*args):
            result = call(*args)
            for action in self.trace.take():
                self.apply(*action)
            return result

        return checked

    def apply(self, action, b, stream):
        self.actions.append((action, b))
        s = b % self.slots
        if action == "enqueue":
            assert not self.running[s], f"block {b} decoded into slot {s} while a block computes from it"
            assert not self.in_flight[s], f"block {b} decoded into slot {s} while another decode into it is in flight"
            self.holds[s] = b
            self.in_flight[s] = True
            return
        if action == "synchronize":
            self.in_flight = dict.fromkeys(self.in_flight, False)
            return
        assert stream == 7, "the compute stream is the forward's"
        if action == "release":
            self.running[s] = False
        elif action == "release_all":
            assert not any(self.running.values()), "every block of the forward released before the refill"
        else:
            assert action == "wait", action
            assert self.holds.get(s) == b, f"block {b} ran on another block's weights"
            self.running[s], self.in_flight[s] = True, False
            self.ran.append(b)


@pytest.fixture
def streamer(monkeypatch):
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: type("S", (), {"cuda_stream": 7})())

    def make(blocks=6, slots=2, fused=False, refill_after_forward=False):
        s = object.__new__(BlockStreamer)
        s.device = torch.device("cpu")
        s.blocks = [Block(i, "gpu-compressed", None, [], [], [], 0, rank=i) for i in range(blocks)]
        s.streamed = s.blocks
        s.nslots = slots
        s.handoff = CheckedHandoff(blocks, slots)
        s.forwards = 0
        s.fused = fused
        s.fusing = False
        s.stream = 0
        s.check = lambda: None
        s.modules = [torch.nn.Identity() for _ in s.blocks]  # torch calls the hooks as it calls a model's
        for m, b in zip(s.modules, s.blocks):
            s._hook(m, b)
        s.handoff.start(refill_after_forward)
        return s

    return make


def forward(s, tokens, stop=None, end=True):
    """One forward over the blocks (up to `stop`, as a forward that raised midway); end: the model's own forward
    hook runs after the head (a forward of the blocks alone has none)."""
    hidden = torch.zeros(1, tokens, 8)
    for m in s.modules[:stop]:
        m(hidden)
    if stop is None and end:
        s.end_forward()


@pytest.mark.parametrize("slots", [1, 2, 3])
def test_every_block_runs_on_its_own_decode_once_a_forward(streamer, slots):
    s = streamer(slots=slots)
    for n in range(4):
        forward(s, tokens=5)
        assert s.handoff.ran == list(range(6)) * (n + 1)


def test_fused_forwards_touch_no_slot_and_decoding_resumes_after(streamer):
    s = streamer(fused=True)
    forward(s, tokens=8)  # the prompt: decoded blocks
    calls = len(s.handoff.actions)
    for _ in range(3):
        forward(s, tokens=1)  # generation at batch 1: fused products
        assert s.fusing
    assert len(s.handoff.actions) == calls
    forward(s, tokens=8)
    assert not s.fusing
    assert s.handoff.ran == list(range(6)) * 2


def test_a_forward_that_stops_midway_is_recovered(streamer):
    s = streamer()
    forward(s, tokens=4)
    forward(s, tokens=4, stop=3)  # raised in block 3
    forward(s, tokens=4)
    forward(s, tokens=4)
    assert s.handoff.ran == list(range(6)) + [0, 1, 2] + list(range(6)) * 2


def test_every_hook_but_the_first_is_the_native_call(streamer):
    s = streamer()
    first, *rest = s.modules
    assert first._forward_pre_hooks and all(
        isinstance(h, functools.partial) and h.args == (b,)
        for b, m in enumerate(rest, start=1)
        for h in m._forward_pre_hooks.values()
    )
    assert len(s.modules[-1]._forward_hooks) == 1


def test_tokens_are_counted_from_the_first_tensor_argument():
    assert _streamer._tokens((torch.zeros(2, 3, 8),), {}) == 6
    assert _streamer._tokens((), {"hidden_states": torch.zeros(1, 1, 8)}) == 1


@pytest.mark.parametrize("slots", [1, 2, 3])
def test_refill_after_forward_waits_for_the_end_of_the_forward(streamer, slots):
    s = streamer(slots=slots, refill_after_forward=True)
    forward(s, tokens=5, end=False)
    assert not any(s.handoff.trace.pending(r) for r in range(slots)), "the next forward's decodes wait for end_forward"
    s.end_forward()
    assert all(s.handoff.trace.pending(r) for r in range(slots))
    # on the GPU behind the head: every slot released on the compute stream, then the first decodes
    assert s.handoff.actions[-slots - 1 :] == [("release_all", -1)] + [("enqueue", r) for r in range(slots)]
    for _ in range(3):
        forward(s, tokens=5)
    forward(s, tokens=5, end=False)  # the blocks alone, without the model's hook: the first block refills
    forward(s, tokens=5)
    assert s.handoff.ran == list(range(6)) * 6
