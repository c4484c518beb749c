// The CUDA engine's weights: loaded from a .cllm, in the model's 16-bit type, each layer placed
// (cuda::WeightStreamer moves its bytes), and how each of its products runs decided once, here,
// at load. A step reads layer(l) and runs what it finds.
//
// Dtype policy: the model's 16-bit type is that of its final norm: BF16 (F32 tensors rounded to
// it as they decode) or F16. int8-mode matrices stay int8 in VRAM where the batch-1 GEMV takes
// them (W8A16: every layer matrix, or the lm_head), else they are dequantized to the 16-bit type.
//
// Products, per layer and placement: over decoded weights (a Gpu layer's own buffer or a slot);
// at batch 1 on lossless BF16 gpu-compressed layers, over exponent bytes decoded into the slot
// and sign/mantissa bytes read from the compressed copy (SplitGemv); with
// products_from_compressed, straight from the compressed copy (FromCompressed, no slot).
#pragma once

#include <cuda_runtime.h>

#include <memory>
#include <string>
#include <vector>

#include "cuda/device_memory.hpp"
#include "cuda/gpu_decoder.hpp"
#include "cuda/weight_streamer.hpp"
#include "engine/cuda_engine.hpp"
#include "engine/cuda_kernels.cuh"
#include "engine/cuda_products.hpp"
#include "engine/engine.hpp"
#include "engine/placement_plan.hpp"
#include "format/container.hpp"
#include "model/llama_tensors.hpp"

namespace codecllm::engine {

struct LayerWeights {
  const void* attn_norm = nullptr;
  const void* ffn_norm = nullptr;
  const void *q_bias = nullptr, *k_bias = nullptr, *v_bias = nullptr, *o_bias = nullptr;  // null: none
  Product qkv, o, gate_up, down;
};

class CudaWeights {
 public:
  // Loads into `mem` (the engine's, so that what it already holds counts as fixed bytes in a
  // plan) on `stream`. Throws codecllm::Error naming the file and tensor for a missing or
  // misshapen tensor or one of another type, and when the placement does not fit.
  CudaWeights(const format::ContainerReader& file, const LlamaConfig& config, const CudaEngineOptions& options,
              cuda::DeviceMemory& mem, cudaStream_t stream);
  ~CudaWeights();
  CudaWeights(const CudaWeights&) = delete;
  CudaWeights& operator=(const CudaWeights&) = delete;

  static cuda_kernels::Act model_act(const format::ContainerReader& file, const LlamaConfig& config);
  cuda_kernels::Act act() const { return act_; }
  // The layers held: [first_layer(), first_layer() + num_layers()); layer(l) is local (0 is the
  // first held). The share with layer 0 holds the embedding, the one with the last the final norm
  // and lm_head (null / empty elsewhere).
  int first_layer() const { return first_; }
  int num_layers() const { return count_; }
  bool embeds() const { return embeds_; }
  bool has_head() const { return has_head_; }
  const void* embedding() const { return embed_; }  // [vocab][hidden], 16-bit, device or pinned host
  const void* final_norm() const { return final_norm_; }
  const LayerWeights& layer(int l) const { return layers_[l]; }
  cuda::WeightStreamer& streamer() { return *streamer_; }
  // The lm_head's product; when lm_head_on_host(), its rows stream through the decode slots
  // (lm_head_piece makes the product of one piece).
  const Product& lm_head() const { return lm_head_; }
  bool lm_head_on_host() const { return lm_head_on_host_; }
  uint64_t lm_head_row_bytes() const;
  Product lm_head_piece(const uint8_t* rows, uint64_t first_row, uint64_t count) const;
  // dense_product at the engine's batch and choice of batched kernels.
  Product dense(const void* w, const float* scales, int in, int out) const {
    return dense_product(w, scales, in, out, opt_.batch, opt_.own_batch_products);
  }
  // Whether every layer lives decoded in VRAM (no decode runs beside the products).
  bool all_gpu() const;

  // The weights' share of the engine's MemoryStats (weights, scratch, pinned, per-step bytes),
  // and the plan's estimate of the engine's device bytes (planned_device_bytes).
  const MemoryStats& memory() const { return memory_; }
  const PlacementPlan& plan() const { return plan_; }
  std::string describe_placement() const;  // "gpu-compressed", "auto (2 gpu, 30 gpu-compressed layers)"
  std::string describe() const;            // ", exponents decoded per layer ..., bf16 weights"

 private:
  const format::TensorRecord& need(const format::ContainerReader& file, const model::TensorSpec& spec);
  void require_act(const format::TensorRecord& r);
  cuda::DecoderOptions decoder_options(cuda::Int8Out int8) const;
  cuda::Int8Out dequantized() const;
  std::vector<void*> decode_resident(const format::ContainerReader& file, const std::vector<model::TensorSpec>& specs,
                                     cuda::Int8Out int8);
  const void* decode_to_host(const format::ContainerReader& file, const model::TensorSpec& spec, cuda::Int8Out int8);
  float* upload_scales(const format::ContainerReader& file, const std::vector<const format::TensorRecord*>& records);
  void load_small_tensors(const format::ContainerReader& file);
  void load_layers(const format::ContainerReader& file);
  bool exponents_only_eligible(const format::ContainerReader& file,
                               const std::vector<std::vector<std::string>>& names) const;
  void make_decoders(const format::ContainerReader& file, const std::vector<std::vector<std::string>>& names,
                     bool exponents_only);
  PlanRequest plan_request(const format::ContainerReader& file, const std::vector<std::vector<std::string>>& names,
                           bool exponents_possible) const;
  void set_products(const std::vector<const format::TensorRecord*>& records);

  std::string path_;
  LlamaConfig cfg_;
  CudaEngineOptions opt_;
  cuda::DeviceMemory& mem_;
  cudaStream_t stream_;
  int first_ = 0, count_ = 0;
  bool embeds_ = true, has_head_ = true;
  cuda_kernels::Act act_ = cuda_kernels::Act::BF16;
  bool rounded_f32_ = false;
  bool int8_layers_ = false;             // every layer matrix int8 in device memory (W8A16 at batch 1)
  bool exponents_only_ = false;          // layers decode BF16 exponents alone (SplitGemv)
  bool products_in_place_ = false;       // gpu-compressed layers' products from the compressed copy
  const float* layer_scales_ = nullptr;  // int8 layers: row scales of every matrix of every layer
  const void *embed_ = nullptr, *final_norm_ = nullptr;
  Product lm_head_;
  bool lm_head_on_host_ = false;
  std::vector<LayerWeights> layers_;
  std::vector<std::unique_ptr<cuda::GpuDecoder>> decoders_;  // per layer; freed after load for Gpu and HostRaw
  std::unique_ptr<cuda::WeightStreamer> streamer_;
  PlacementPlan plan_;
  MemoryStats memory_;
};

}  // namespace codecllm::engine
