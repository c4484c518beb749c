"""The block streamer's hand-over logic, on the CPU: its hooks driven as forwards drive them, against a stand-in
for the native BlockHandoff that checks every call against the slots' state. A block's decode may only go into a
slot its last user has released, a block may only run on a decode of itself, each block runs once a forward; fused
forwards (one token) touch no slot; a forward that stops midway is recovered from."""

import pytest
import torch
from codecllm import _streamer
from codecllm._streamer import Block, BlockStreamer


class CheckedHandoff:
    """Records the native calls and checks them against each slot's state: the block decoded into it, whether a
    block computing holds it (from its wait to its release), whether a decode into it is still in flight (until a
    block waits for it, or the device is synchronized)."""

    def __init__(self, nslots, blocks):
        self.holds = {}
        self.running = dict.fromkeys(range(nslots), False)
        self.in_flight = dict.fromkeys(range(nslots), False)
        self.ran = []  # handles waited for, in order
        self.slot = {b.handle: b.rank % nslots for b in blocks}
        self.calls = 0

    def enqueue(self, h):
        s = self.slot[h]
        assert not self.running[s], f"block {h} decoded into slot {s} while a block computes from it"
        assert not self.in_flight[s], f"block {h} decoded into slot {s} while another decode into it is in flight"
        self.holds[s] = h
        self.in_flight[s] = True
        self.calls += 1

    def before(self, release, enqueue, wait, stream):
        assert stream == 7, "the compute stream is the forward's"
        if release >= 0:
            self.running[self.slot[release]] = False
        if enqueue >= 0:
            self.enqueue(enqueue)
        if wait >= 0:
            s = self.slot[wait]
            assert self.holds.get(s) == wait, f"block {wait} ran on another block's weights"
            self.running[s], self.in_flight[s] = True, False
            self.ran.append(wait)
        self.calls += 1

    def synchronize(self):
        self.in_flight = dict.fromkeys(self.in_flight, False)


@pytest.fixture
def streamer(monkeypatch):
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: type("S", (), {"cuda_stream": 7})())
    made = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: made[-1].handoff.synchronize())

    def make(blocks=6, slots=2, fused=False, refill_after_forward=False):
        s = object.__new__(BlockStreamer)
        made.append(s)
        s.device = torch.device("cpu")
        s.blocks = [Block(i, "gpu-compressed", None, [], [], [], 0, rank=i, handle=i) for i in range(blocks)]
        s.streamed = s.blocks
        s.nslots = slots
        s.handoff = CheckedHandoff(slots, s.blocks)
        s.forwards = 0
        s.last_ran = None
        s.fused = fused
        s.fusing = False
        s.refill_after_forward = refill_after_forward
        s.refill_due = False
        s.check = lambda: None
        s._current_stream()
        for r in range(slots):
            s._enqueue(s.streamed[r])
        return s

    return make


def forward(s, tokens, stop=None, end=True):
    """The hooks of one forward over the blocks (up to `stop`, as a forward that raised midway); end: the model's
    own forward hook runs after the head (a forward of the blocks alone has none)."""
    hidden = torch.zeros(1, tokens, 8)
    for b in s.blocks[:stop]:
        s._before(b, (hidden,), {})
    if stop is None:
        s._release(s.blocks[-1])
        if end:
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
    calls = s.handoff.calls
    for _ in range(3):
        forward(s, tokens=1)  # generation at batch 1: fused products
        assert s.fusing
    assert s.handoff.calls == calls
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


def test_tokens_are_counted_from_the_first_tensor_argument():
    assert _streamer._tokens((torch.zeros(2, 3, 8),), {}) == 6
    assert _streamer._tokens((), {"hidden_states": torch.zeros(1, 1, 8)}) == 1


@pytest.mark.parametrize("slots", [1, 2, 3])
def test_refill_after_forward_waits_for_the_end_of_the_forward(streamer, slots):
    s = streamer(slots=slots, refill_after_forward=True)
    forward(s, tokens=5, end=False)
    assert not any(b.pending for b in s.blocks[:slots]), "the next forward's decodes wait for end_forward"
    s.end_forward()
    assert all(b.pending for b in s.blocks[:slots])
    for _ in range(3):
        forward(s, tokens=5)
    forward(s, tokens=5, end=False)  # the blocks alone, without the model's hook: the first block refills
    forward(s, tokens=5)
    assert s.handoff.ran == list(range(6)) * 6
