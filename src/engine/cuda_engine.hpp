// The CUDA backend: cuBLAS for the matmuls, own kernels for the rest, bfloat16 weights and
// float32 activations. Where the weights live is the placement:
//   gpu             every weight decoded once at load (the uncompressed baseline)
//   gpu-compressed  transformer layers stay compressed in VRAM; each layer is decoded into
//                   one of two scratch buffers on a second stream while the previous layer
//                   computes. Embeddings, lm_head and norms stay decoded.
#pragma once

#include <memory>
#include <string>

#include "engine/engine.hpp"
#include "format/container.hpp"

namespace codecllm::engine {

enum class Placement { Gpu, GpuCompressed };

struct CudaEngineOptions {
  Placement placement = Placement::Gpu;
  int max_seq_len = 0;   // 0: min(max_position_embeddings, 2048)
  bool kv_bf16 = false;  // KV cache in bfloat16 instead of float32
};

Placement parse_placement(const std::string& name);  // "gpu", "gpu-compressed"

// Throws codecllm::Error when there is no CUDA device or a weight is not BF16 (lossless) or
// int8-mode; allocates everything it will use before returning.
std::unique_ptr<Engine> make_cuda_engine(const format::ContainerReader& file, const CudaEngineOptions& options);

}  // namespace codecllm::engine
