// Puts each transformer layer's matmul weights in device memory for the compute stream, one
// layer at a time, wherever the layer lives (codecllm/placement.hpp):
//   Gpu            decoded once at load; nothing moves per token (the baseline)
//   GpuCompressed  compressed bytes in VRAM, decoded into a scratch slot before use
//   Host           compressed bytes in pinned host RAM: copied into a staging buffer over
//                  PCIe, then decoded into a scratch slot
//   HostRaw        decoded bytes in pinned host RAM, copied straight into a scratch slot
//                  (plain offload: what a user would do without compression)
// It moves bytes only: what a layer's products read, and how, the caller decides (a decoder's
// options say what a decode writes; products_in_place layers take no slot).
// Copies run on a copy stream, decodes on decode streams (one per slot beyond the first), and
// events order them against the compute stream, so copies, decodes and matmuls of different
// layers overlap. Everything is allocated at construction; a step enqueues work only, which
// lets the caller capture it once as a CUDA graph.
//
// Per step the caller calls begin_step, then for each layer acquire (before its matmuls read
// layer()) and release (after they are enqueued), then end_step. The last copies and decodes
// of a step already fetch the first layers of the next one, so neither PCIe nor the compute
// stream waits for them at the step boundary.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "codecllm/placement.hpp"
#include "cuda/device_memory.hpp"
#include "cuda/gpu_decoder.hpp"
#include "format/container.hpp"

namespace codecllm::cuda {

// One layer as the streamer takes it.
struct StreamedLayer {
  Placement home = Placement::Gpu;  // Gpu, GpuCompressed, Host or HostRaw
  // Plans the layer's decode; owned by the caller. Gpu and HostRaw layers use it during the
  // streamer's construction only (their decode at load), so the caller may free it afterwards.
  GpuDecoder* decoder = nullptr;
  // GpuCompressed only: the caller's products read the resident compressed copy itself
  // (GpuDecoder::decode_gemv), so the layer takes no slot and nothing moves for it.
  bool products_in_place = false;
};

// Where each tensor of a layer lies in a layer buffer (a slot, or a Gpu layer's own): tensors
// of one group (consecutive entries of `groups`, e.g. {3, 1, 2, 1}) back to back, so that one
// matmul covers q, k and v together; groups start 256-byte aligned.
struct SlotLayout {
  std::vector<uint64_t> offsets;  // per tensor
  uint64_t layer_bytes = 0;       // one layer buffer
};
// The layout of the decoder's outputs (the same for every layer of a model).
SlotLayout slot_layout(const GpuDecoder& decoder, const std::vector<int>& groups);

struct StreamerOptions {
  int prefetch_depth = 2;  // staging buffers: how many Host layers' copies may run ahead of their decode
  // Layer-sized scratch buffers: 1 serializes decode and compute of streamed layers; 2 lets
  // the next layer decode during this one's matmuls; n >= 3 lets the next n - 1 decode at once
  // (each on its own stream).
  int decode_slots = 2;
};

class WeightStreamer {
 public:
  // Every layer's outputs must fit `layout` (made from one of them). Errors name `path`.
  WeightStreamer(const std::string& path, std::vector<StreamedLayer> layers, SlotLayout layout,
                 const StreamerOptions& options, cudaStream_t load_stream);
  ~WeightStreamer();
  WeightStreamer(const WeightStreamer&) = delete;
  WeightStreamer& operator=(const WeightStreamer&) = delete;

  int num_layers() const { return static_cast<int>(layers_.size()); }
  Placement home(int l) const { return layers_[l].home; }
  // Where tensor i of layer l is, valid for kernels enqueued between acquire(l) and release(l);
  // the same address at every step. Not for layers whose products run in place.
  uint8_t* tensor(int l, int i) const { return layer_base(l) + layout_.offsets[i]; }
  uint64_t layer_bytes() const { return layout_.layer_bytes; }  // one layer buffer
  uint64_t streamed_bytes(int l) const;                         // bytes moved over PCIe per use of layer l

  // Fills the first staging buffers and decodes the first step's carried layers (synchronous;
  // call once at load, before the first begin_step).
  void prefetch();
  void begin_step(cudaStream_t compute);
  void acquire(int l, cudaStream_t compute);
  void release(int l, cudaStream_t compute);
  // Streams `rows` rows of row_bytes each from pinned host memory through the decode slots, in
  // slot-sized pieces, calling consume(piece, first_row, piece_rows) on the compute stream for
  // each: for a weight read once a step that VRAM does not keep (the lm_head of the host
  // placements). Call after the last release and before end_step.
  void stream_rows(const uint8_t* host, uint64_t rows, uint64_t row_bytes, cudaStream_t compute,
                   const std::function<void(const uint8_t*, uint64_t, uint64_t)>& consume);
  void end_step(cudaStream_t compute);
  // Synchronizes, then reports the first layer whose decode failed its integrity check.
  void check();

  struct Memory {
    uint64_t decoded_weights = 0;     // Gpu layers
    uint64_t compressed_weights = 0;  // GpuCompressed layers
    uint64_t tables = 0;              // decoder tables and descriptors of GpuCompressed and Host layers
    uint64_t scratch = 0;             // decode slots, staging, decoder scratch
    uint64_t host_pinned = 0;         // Host and HostRaw layers
  };
  Memory memory() const { return memory_; }

 private:
  struct Layer {
    Placement home = Placement::Gpu;
    int rank = -1;       // among streamed layers (not Gpu, not products in place), in layer order
    int host_rank = -1;  // among Host layers
    uint8_t* resident = nullptr;
    GpuDecoder* decoder = nullptr;  // null after construction for Gpu and HostRaw layers
    const uint8_t* host = nullptr;  // Host: compressed range; HostRaw: decoded layer
    uint64_t host_bytes = 0;
  };

  uint8_t* layer_base(int l) const;
  void decode_at_load(int l, uint8_t* dst, cudaStream_t stream);
  void copy_to_pinned();
  void enqueue_fetch(int rank, bool slot_used_this_step);
  // GpuCompressed layers among the first `slots` ranks decode at the end of the step before
  // (and at prefetch for the first step): their weights are the same every step, so the next
  // step's first layers decode while this one's last layers and lm_head compute.
  bool carried(int rank) const { return rank < slots_ && layers_[streamed_[rank]].home == Placement::GpuCompressed; }
  void enqueue_host_copy(int host_rank);
  void outputs(uint8_t* base, void** out) const;

  std::string path_;
  DeviceMemory mem_;
  std::vector<Layer> layers_;
  std::vector<int> streamed_;  // layer index of each rank
  std::vector<int> hosted_;    // layer index of each host rank
  SlotLayout layout_;
  int slots_ = 0, stages_ = 0;
  bool prefetched_ = false;
  std::vector<uint8_t*> slot_, stage_;
  // One per layer that may decode at once; a stream's decodes run one after another, so one
  // decoder scratch per stream serves them.
  std::vector<uint8_t*> decoder_scratch_;
  std::vector<cudaEvent_t> slot_ready_, slot_free_, copied_, stage_free_, decode_done_;
  std::vector<cudaStream_t> decode_;
  cudaEvent_t fork_ = nullptr, copy_done_ = nullptr;
  cudaStream_t copy_ = nullptr;
  Memory memory_;
};

}  // namespace codecllm::cuda
