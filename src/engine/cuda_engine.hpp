// The CUDA backend: bfloat16 weights, float32 activations, own kernels for everything but the
// matmuls of more than 8 sequences (cuBLAS). At batch 1, int8-mode matrices stay int8 in device memory and the
// GEMV dequantizes them with their row scales (W8A16): half the bytes of bf16 to hold, decode
// and read. Where each transformer layer's weights live is the placement:
//   gpu             decoded once at load (the uncompressed baseline)
//   gpu-compressed  compressed in VRAM, decoded just in time into reused scratch (at batch 1
//                   BF16 layers decode their exponents alone and the GEMV reads sign and
//                   mantissa in place; on request, multiplied straight from the compressed bytes)
//   host            compressed in pinned host RAM, streamed over PCIe and decoded each token
//   host-raw        decoded in pinned host RAM, streamed each token (plain offload)
//   auto            per layer, the fastest mix that fits --vram-budget (placement_plan.hpp)
// Norms stay decoded in VRAM, and so do embeddings and lm_head except in host and host-raw,
// which keep them in pinned host memory (embedding rows read in place, the lm_head streamed
// through the scratch slots); gpu-compressed keeps an untied embedding table there too. Float32 weights are rounded to
// bf16 as they decode. See cuda/weight_streamer.hpp for how copies, decodes and matmuls of different layers overlap.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "codecllm/placement.hpp"
#include "engine/engine.hpp"
#include "format/container.hpp"

namespace codecllm::engine {

enum class KvDtype { F32, BF16, F16 };

struct CudaEngineOptions {
  Placement placement = Placement::Gpu;
  int max_seq_len = 0;  // 0: min(max_position_embeddings, 2048)
  KvDtype kv_dtype = KvDtype::F32;
  int batch = 1;             // sequences decoded together
  int prefetch_depth = 2;    // host: compressed layers whose copy may run ahead of their decode
  uint64_t vram_budget = 0;  // auto: bytes of device memory the engine may allocate
  bool print_plan = false;   // auto: print the plan to stderr before loading
  // Launch each kernel as a programmatic dependent of the one before (cuda_kernels::Stream);
  // off only to measure what it gains.
  bool overlap_launches = true;
  // gpu-compressed at batch 1: multiply each layer's weights straight from their compressed
  // form (cuda::GpuDecoder::decode_gemv, the same bits as decoding first) where the file allows
  // it, so no layer is decoded into scratch: the least VRAM, but slower than decoding into
  // scratch on the shapes measured (docs/BENCHMARKS.md). Files coded with --codec exp4 always
  // do, at batch 1: that coding exists to be multiplied in place.
  bool products_from_compressed = false;
  // Batches of 2 .. 8: 16-bit products on the project's tensor-core kernel (cuda_gemm.cu), and
  // exp4 layers multiplied straight from their compressed form by its exp4 twin, with the same
  // bits. Off: cuBLAS, exp4 layers decoded into scratch first; only to measure what it gains.
  bool own_batch_products = true;
  // gpu-compressed at batch 1 on BF16 layers: decode only each layer's exponent bytes into the
  // scratch slots, and let the GEMV read the sign and mantissa bytes (stored raw) straight
  // from the compressed copy (cuda::DecoderOptions::bf16_exponents_only): slots of half the
  // size, and 2 bytes fewer written and read per weight. The same bits either way; off only to
  // measure what it gains.
  bool bf16_exponents_only = true;
  // gpu-compressed and auto: layer-sized scratch slots where gpu-compressed layers stream (0:
  // default_compressed_slots in placement_plan.hpp). Each slot beyond the first lets one more
  // layer decode at once, for its size in VRAM.
  int decode_slots = 0;
  // Layers decoded just in time: at most this many decode thread blocks resident on each SM (0:
  // as many as fit), so that a step's own kernels beside a decode find room on every SM
  // (cuda::GpuDecoder::set_blocks_per_sm).
  int decode_blocks_per_sm = 0;
  // Several GPUs of one host: the layers split into contiguous ranges over these devices
  // (engine/device_split.hpp plans them, each device within vram_budget, or within its free
  // memory when that is 0), each range one engine on its device, activations passed on by peer
  // copies. Empty: one device, the current one.
  std::vector<int> devices;
  // One device's share (set by the split for each of its engines): the device (-1: the current
  // one) and the layers [first_layer, end_layer) (end -1: to the last). The share with layer 0
  // embeds the tokens; the one with the last layer holds the final norm and lm_head.
  int device = -1;
  int first_layer = 0, end_layer = -1;
};

// The layers an engine with these options runs: [first, end).
int first_layer(const CudaEngineOptions& o);
int end_layer(const CudaEngineOptions& o, const LlamaConfig& config);

KvDtype parse_kv_dtype(const std::string& name);  // "f32", "bf16", "f16"
const char* kv_dtype_name(KvDtype t);

// With options.devices of two or more: a model split across those GPUs (cuda_split.cpp).
// Throws codecllm::Error when there is no CUDA device, a tensor is neither in the model's
// 16-bit type nor int8-mode, or memory runs out (naming the sizes). Allocates everything it
// will use before returning, except the sampler's scratch (batch x vocab floats a few times
// over), which the first step that samples with a temperature allocates, once.
std::unique_ptr<Engine> make_cuda_engine(const format::ContainerReader& file, const CudaEngineOptions& options);

}  // namespace codecllm::engine
