// The order of a streamed model's block hand-overs (codecllm/_streamer.py), apart from CUDA so
// that the same code runs, and is tested, on any machine: `Actions` carries each step out
// (BlockHandoff on the GPU, a recorder in the tests).
//
// Blocks 0 .. n-1 take turns in `slots` scratch slots, block b in slot b % slots. Block b's
// decode into its slot may start once the block before it in that slot has all its kernels
// enqueued (released); block b may run once its decode is enqueued (pending) and the compute
// stream waits for it. One call a block (`before`) releases the block that ran before it, hands
// its slot to the block `slots` places on, and makes the compute waiting for this block's decode;
// after the last block the slots go to the next forward's first blocks (a refill).
//
// Why this is native code: the per-block calls run inside a generate() that is bound by the
// CPU's Python, so each block's hand-over is one C++ call from a hook that is itself a native
// callable; measured on the H200 (docs/BENCHMARKS.md) the hand-over cost ~40 us of CPU a block
// when its bookkeeping was Python.
#pragma once

#include <algorithm>
#include <string>
#include <vector>

#include "codecllm/error.hpp"

namespace codecllm::python {

// Actions: enqueue(b) (b's decode into its slot, behind the slot's last release), release(b)
// (b's kernels are all enqueued on the compute stream), wait(b) (the compute stream waits for b's
// decode), release_all() (every slot free after what the compute stream holds now) and
// synchronize_device() (the device idle: no decode in flight).
template <class Actions>
class BlockPipeline {
 public:
  BlockPipeline(Actions& actions, int blocks, int slots, bool refill_after_forward)
      : actions_(actions),
        n_(blocks),
        slots_(slots),
        refill_after_forward_(refill_after_forward),
        pending_(size_t(blocks), false),
        released_(size_t(blocks), true) {
    if (blocks < 1 || slots < 1 || slots > blocks)
      throw Error("block pipeline: " + std::to_string(blocks) + " blocks in " + std::to_string(slots) + " slots");
  }

  bool pending(int b) const { return pending_.at(size_t(b)); }

  // The first forward's first decodes.
  void start() {
    for (int r = 0; r < slots_; ++r) enqueue(r);
  }

  // A forward begins (block 0's hook): `paused` when its products run straight from the
  // compressed weights and no slot is touched (fused forwards of one token).
  void begin_forward(bool paused) {
    paused_ = paused;
    if (paused_) return;
    if (refill_due_) refill(false);  // the last forward's end_forward did not run (the blocks alone)
    before(0);
  }

  // Block b is about to run.
  void before(int b) {
    check(b);
    if (paused_) return;
    if (last_ >= 0 && !released_[size_t(last_)]) {  // the block before is enqueued: hand its slot on
      if (last_ == n_ - 1) {
        after_last();
      } else {
        actions_.release(last_);
        hand_on(last_);
      }
    }
    if (!pending_[size_t(b)]) {  // blocks ran out of order (a forward that stopped midway): restart here
      actions_.synchronize_device();
      std::fill(pending_.begin(), pending_.end(), false);
      enqueue(b);
    }
    pending_[size_t(b)] = false;
    released_[size_t(b)] = false;
    last_ = b;
    actions_.wait(b);
  }

  // The last block's kernels are all enqueued: its slot goes on, and unless refills wait for the
  // whole forward, the next forward's first decodes are enqueued behind it.
  void after_last() {
    if (paused_) return;
    actions_.release(n_ - 1);
    hand_on(n_ - 1);
    refill_due_ = true;
    if (!refill_after_forward_) refill(false);
  }

  // The model's whole forward (head included) is enqueued: with refill_after_forward, the next
  // forward's first decodes start after it on the GPU, so they do not slow the head.
  void end_forward() {
    if (refill_due_) refill(true);
  }

 private:
  void check(int b) const {
    if (b < 0 || b >= n_) throw Error("block pipeline: no block " + std::to_string(b));
  }
  void enqueue(int b) {
    actions_.enqueue(b);
    pending_[size_t(b)] = true;
  }
  // Block b's slot goes to the block `slots` places on, if this forward has one.
  void hand_on(int b) {
    released_[size_t(b)] = true;
    if (b + slots_ < n_) enqueue(b + slots_);
  }
  void refill(bool after_forward) {
    refill_due_ = false;
    if (after_forward) actions_.release_all();
    for (int r = 0; r < slots_; ++r)
      if (!pending_[size_t(r)]) enqueue(r);
  }

  Actions& actions_;
  int n_, slots_;
  bool refill_after_forward_;
  std::vector<bool> pending_;   // its decode is enqueued and not yet consumed
  std::vector<bool> released_;  // its slot was handed on since it last ran
  int last_ = -1;               // the block that ran last
  bool refill_due_ = false;     // the last block ran; the next forward's first decodes are not enqueued
  bool paused_ = false;         // this forward touches no slot
};

}  // namespace codecllm::python
