// Puts each transformer layer's matmul weights in device memory for the compute stream, one
// layer at a time, wherever the layer lives:
//   Device            decoded once at load; nothing moves per token (the baseline)
//   DeviceCompressed  compressed bytes in VRAM, decoded into a scratch slot before use
//   Host              compressed bytes in pinned host RAM: copied into a staging buffer over
//                     PCIe, then decoded into a scratch slot
//   HostRaw           decoded bytes in pinned host RAM, copied straight into a scratch slot
//                     (plain offload: what a user would do without compression)
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

#include "cuda/device_memory.hpp"
#include "cuda/gpu_decoder.hpp"
#include "format/container.hpp"

namespace codecllm::cuda {

enum class LayerHome { Device, DeviceCompressed, Host, HostRaw };

struct StreamerOptions {
  int prefetch_depth = 2;  // staging buffers: how many Host layers' copies may run ahead of their decode
  // Layer-sized scratch buffers: 1 serializes decode and compute of streamed layers; 2 lets
  // the next layer decode during this one's matmuls; n >= 3 lets the next n - 1 decode at once
  // (each on its own stream).
  int decode_slots = 2;
  DecoderOptions decoder;  // for every layer's decoder (the scratch is always shared)
  // DeviceCompressed layers whose every tensor the decoder can multiply straight from its
  // compressed form (GpuDecoder::gemv_ready) are not decoded into slots at all: the caller runs
  // their products with decoder(l).decode_gemv. If any such layer has a tensor that cannot, all
  // of them take the slots as usual (products_from_compressed() says which happened).
  bool products_from_compressed = false;
  // Lossless BF16 matrices decode their exponent bytes alone into the slots
  // (DecoderOptions::bf16_exponents_only), for products that read the sign and mantissa bytes
  // from the resident compressed copy: half the slot size and half the bytes a decode writes.
  // Taken when every layer is DeviceCompressed, products_from_compressed is not, and each
  // tensor of a layer is eligible in every layer or in none (exponents_only(i) says which).
  bool bf16_exponents_only = false;
};

class WeightStreamer {
 public:
  // layer_tensors[l]: the tensor names of layer l (same shapes in every layer). Tensors of one
  // group (consecutive entries of `groups`, e.g. {3, 1, 2, 1}) are laid out back to back in a
  // layer buffer, so one matmul can cover q, k and v together; groups start 256-byte aligned.
  WeightStreamer(const format::ContainerReader& file, const std::vector<std::vector<std::string>>& layer_tensors,
                 const std::vector<int>& groups, const std::vector<LayerHome>& homes, const StreamerOptions& options,
                 cudaStream_t load_stream);
  ~WeightStreamer();
  WeightStreamer(const WeightStreamer&) = delete;
  WeightStreamer& operator=(const WeightStreamer&) = delete;

  int num_layers() const { return static_cast<int>(layers_.size()); }
  LayerHome home(int l) const { return layers_[l].home; }
  bool products_from_compressed() const { return fused_; }
  // Whether the caller runs layer l's products with decoder(l).decode_gemv, over the decoder's
  // resident compressed copy (tensor(l, i) has nothing to point at then).
  bool products_from_compressed(int l) const { return fused_ && layers_[l].home == LayerHome::DeviceCompressed; }
  GpuDecoder& decoder(int l) { return *layers_[l].decoder; }
  // Where tensor i of layer l is, valid for kernels enqueued between acquire(l) and release(l).
  uint8_t* tensor(int l, int i) const { return layer_base(l) + offsets_[i]; }
  uint64_t layer_bytes() const { return layer_bytes_; }  // decoded bytes of one layer
  // Whether tensor i of every layer decodes to its exponents alone; then its sign and mantissa
  // bytes lie at sign_mantissa(l, i), in the resident compressed copy of layer l.
  bool exponents_only(int i) const {
    return !layers_.empty() && layers_[0].decoder && layers_[0].decoder->exponents_only(i);
  }
  const uint8_t* sign_mantissa(int l, int i) const { return layers_[l].decoder->resident_sign_mantissa(i); }
  uint64_t streamed_bytes(int l) const;  // bytes moved over PCIe per use of layer l

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
    uint64_t decoded_weights = 0;     // Device layers
    uint64_t compressed_weights = 0;  // DeviceCompressed layers
    uint64_t scratch = 0;             // decode slots, staging, decoder tables and descriptors
    uint64_t host_pinned = 0;         // Host and HostRaw layers
  };
  Memory memory() const { return memory_; }

 private:
  struct Layer {
    LayerHome home = LayerHome::Device;
    int rank = -1;       // among streamed (non-Device) layers, in layer order
    int host_rank = -1;  // among Host layers
    uint8_t* resident = nullptr;
    std::unique_ptr<GpuDecoder> decoder;
    const uint8_t* host = nullptr;  // Host: compressed range; HostRaw: decoded layer
    uint64_t host_bytes = 0;
  };

  uint8_t* layer_base(int l) const;
  void decode_at_load(int l, uint8_t* dst, cudaStream_t stream);
  void copy_to_pinned();
  void enqueue_fetch(int rank, bool slot_used_this_step);
  // DeviceCompressed layers among the first `slots` ranks decode at the end of the step before
  // (and at prefetch for the first step): their weights are the same every step, so the next
  // step's first layers decode while this one's last layers and lm_head compute.
  bool carried(int rank) const { return rank < slots_ && layers_[streamed_[rank]].home == LayerHome::DeviceCompressed; }
  void enqueue_host_copy(int host_rank);
  void outputs(uint8_t* base, void** out) const;

  std::string path_;
  DeviceMemory mem_;
  std::vector<Layer> layers_;
  std::vector<int> streamed_;  // layer index of each rank
  std::vector<int> hosted_;    // layer index of each host rank
  std::vector<uint64_t> offsets_;
  uint64_t layer_bytes_ = 0;
  int slots_ = 0, stages_ = 0;
  bool fused_ = false, prefetched_ = false;
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
