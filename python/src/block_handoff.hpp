// The CUDA side of the Python block streamer (codecllm/_streamer.py): the actions of its
// BlockPipeline (block_pipeline.hpp), which decides when each happens. Measured on the H200
// (scripts/device/python_profile.py, Llama-3-8B shape, batch 1): the streamer's hooks took ~85 us
// of CPU a block when each event record, stream wait, copy and decode was its own torch or
// binding call, in a generate() that is bound by the CPU (~0.7 ms a block for transformers' own
// Python); here they are plain CUDA runtime calls.
//
// The decodes (a side stream's wait, the decode's launches, its event records) are made by a
// LaunchThread (launch_thread.hpp), off the thread that runs the model; that thread makes only
// the compute stream's event record and wait, after the decode they wait for was enqueued.
//
// Blocks take turns in `slots` scratch slots. For each slot, `ready` is recorded on a side stream
// when a block's decode into it is done (the compute waits for it) and `free` on the compute
// stream when the block using it has all its kernels enqueued (the next decode into it waits
// for it). Host blocks first copy their compressed range from pinned memory into one of `stages`
// staging buffers, guarded the same way by `stage_free`.
//
// A handoff belongs to the device current when it is made (its streams and events are that
// device's); each call makes that device current for its CUDA calls and restores the caller's,
// so that blocks of one model on several devices are handed over from one thread.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "block_pipeline.hpp"
#include "codecllm/error.hpp"
#include "cuda/cuda_check.hpp"
#include "cuda/gpu_decoder.hpp"
#include "launch_thread.hpp"

namespace codecllm::python {

// Makes `device` current for a scope (a no-op when it is already), then restores the caller's.
class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    CLLM_CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != device) CLLM_CUDA_CHECK(cudaSetDevice(device));
    switched_ = previous_ != device;
  }
  ~DeviceScope() {
    if (switched_) cudaSetDevice(previous_);
  }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = 0;
  bool switched_ = false;
};

class BlockHandoff {
 public:
  BlockHandoff(int slots, int streams, int stages)
      : ready_(slots), free_(slots), stage_free_(stages), streams_(streams), scratch_(size_t(streams), nullptr) {
    CLLM_CUDA_CHECK(cudaGetDevice(&device_));
    for (auto* list : {&ready_, &free_, &stage_free_})
      for (cudaEvent_t& e : *list) CLLM_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    for (cudaStream_t& s : streams_) CLLM_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    launches_ = std::make_unique<LaunchThread>([d = device_] { CLLM_CUDA_CHECK(cudaSetDevice(d)); },
                                               [this](int b) { issue(b); });
  }
  ~BlockHandoff() {
    launches_.reset();  // its last decodes enqueued, its thread ended
    int previous = 0;
    cudaGetDevice(&previous);
    cudaSetDevice(device_);
    for (cudaStream_t s : streams_) cudaStreamSynchronize(s);  // no decode may outlive its events
    for (auto* list : {&ready_, &free_, &stage_free_})
      for (cudaEvent_t e : *list) cudaEventDestroy(e);
    for (cudaStream_t s : streams_) cudaStreamDestroy(s);
    cudaSetDevice(previous);
  }
  BlockHandoff(const BlockHandoff&) = delete;
  BlockHandoff& operator=(const BlockHandoff&) = delete;

  // A streamed block: its decoder (owned by the caller, alive while the handoff is), where its
  // tensors decode to in its slot, and where it decodes from: `comp` on the device, or for a
  // host block a copy of `bytes` from pinned `pinned` into staging buffer `stage` at `comp`.
  int add_block(cuda::GpuDecoder* decoder, std::vector<void*> outputs, int slot, int stream, const void* comp,
                const void* pinned, size_t bytes, int stage) {
    if (slot < 0 || slot >= int(ready_.size()) || stream < 0 || stream >= int(streams_.size()) ||
        (pinned != nullptr && (stage < 0 || stage >= int(stage_free_.size()))))
      throw Error("block streamer: slot, stream or stage out of range");
    if (outputs.size() != decoder->num_tensors()) throw Error("block streamer: one output per tensor expected");
    blocks_.push_back(
        {decoder, std::move(outputs), slot, stream, static_cast<const uint8_t*>(comp), pinned, bytes, stage});
    posted_.push_back(0);
    return int(blocks_.size()) - 1;
  }

  // The blocks are all added (their handles 0 .. n-1 in the order they run, block b in slot
  // b % slots): the first decodes are enqueued, and the hooks' calls below may begin.
  void start(bool refill_after_forward) {
    for (size_t b = 0; b < blocks_.size(); ++b)
      if (blocks_[b].slot != int(b % ready_.size()))
        throw Error("block streamer: block " + std::to_string(b) + " out of its slot");
    pipeline_.emplace(*this, int(blocks_.size()), int(ready_.size()), refill_after_forward);
    pipeline_->start();
  }
  // The pipeline's steps (block_pipeline.hpp), on the forward's compute stream (torch's handle).
  void begin_forward(uintptr_t compute, bool paused) {
    compute_ = reinterpret_cast<cudaStream_t>(compute);
    pipeline().begin_forward(paused);
  }
  void before(int b) { pipeline().before(b); }
  void after_last() { pipeline().after_last(); }
  void end_forward() { pipeline().end_forward(); }

  // The pipeline's actions. Block b's decode, on its side stream, behind the last user of its
  // slot (and staging buffer): made by the launch thread.
  void enqueue(int b) { posted_.at(size_t(b)) = launches_->post(b); }
  // Block b's kernels are all enqueued on the compute stream: its slot may be decoded into again
  // after them.
  void release(int b) {
    const DeviceScope on(device_);
    CLLM_CUDA_CHECK(cudaEventRecord(free_[at(b).slot], compute_));
  }
  // Every slot may be decoded into after what the compute stream holds now.
  void release_all() {
    const DeviceScope on(device_);
    for (cudaEvent_t e : free_) CLLM_CUDA_CHECK(cudaEventRecord(e, compute_));
  }
  // The work the compute stream takes next waits for block b's decode (whose ready event the
  // launch thread has recorded by then).
  void wait(int b) {
    launches_->wait_for(posted_.at(size_t(b)));
    const DeviceScope on(device_);
    CLLM_CUDA_CHECK(cudaStreamWaitEvent(compute_, ready_[at(b).slot], 0));
  }
  void synchronize_device() {
    launches_->drain();
    const DeviceScope on(device_);
    CLLM_CUDA_CHECK(cudaDeviceSynchronize());
  }

  // The decoder scratch the decodes on side stream `stream` use (decoders made with
  // external_scratch; at least the largest scratch_bytes() of the blocks on that stream).
  void set_scratch(int stream, uint8_t* scratch) { scratch_.at(size_t(stream)) = scratch; }

  // Every decode enqueued so far has finished.
  void synchronize() {
    launches_->drain();
    const DeviceScope on(device_);
    for (cudaStream_t s : streams_) CLLM_CUDA_CHECK(cudaStreamSynchronize(s));
  }
  int device() const { return device_; }
  cudaStream_t stream(int i) const { return streams_.at(size_t(i)); }

 private:
  // Block b's decode, on the launch thread (enqueue's job).
  void issue(int b) {
    const DeviceScope on(device_);
    const Block& k = at(b);
    cudaStream_t s = streams_[k.stream];
    CLLM_CUDA_CHECK(cudaStreamWaitEvent(s, free_[k.slot], 0));
    if (k.pinned != nullptr) {
      CLLM_CUDA_CHECK(cudaStreamWaitEvent(s, stage_free_[k.stage], 0));
      CLLM_CUDA_CHECK(cudaMemcpyAsync(const_cast<uint8_t*>(k.comp), k.pinned, k.bytes, cudaMemcpyHostToDevice, s));
    }
    k.decoder->decode(k.comp, k.outputs.data(), s, scratch_[size_t(k.stream)]);
    CLLM_CUDA_CHECK(cudaEventRecord(ready_[k.slot], s));
    if (k.pinned != nullptr) CLLM_CUDA_CHECK(cudaEventRecord(stage_free_[k.stage], s));
  }

  struct Block {
    cuda::GpuDecoder* decoder;
    std::vector<void*> outputs;
    int slot, stream;
    const uint8_t* comp;
    const void* pinned;
    size_t bytes;
    int stage;
  };
  const Block& at(int b) const {
    if (b < 0 || b >= int(blocks_.size())) throw Error("block streamer: no block " + std::to_string(b));
    return blocks_[size_t(b)];
  }
  BlockPipeline<BlockHandoff>& pipeline() {
    if (!pipeline_) throw Error("block streamer: not started");
    return *pipeline_;
  }

  int device_ = 0;
  std::vector<cudaEvent_t> ready_, free_, stage_free_;
  std::vector<cudaStream_t> streams_;
  std::vector<uint8_t*> scratch_;  // per side stream
  std::vector<Block> blocks_;
  std::vector<uint64_t> posted_;    // per block: the launch thread's number of its last decode
  cudaStream_t compute_ = nullptr;  // the forward's, from begin_forward
  std::optional<BlockPipeline<BlockHandoff>> pipeline_;
  std::unique_ptr<LaunchThread> launches_;  // made last: its thread calls issue()
};

}  // namespace codecllm::python
