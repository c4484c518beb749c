// The one definition of a Llama-family model's tensors: their names, shapes and which of them a
// config calls for. The CPU and CUDA engines load by it, the synthetic generator makes by it and
// the llama2.c converter writes by it, so a tensor is spelled here and nowhere else.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "format/container.hpp"
#include "model/llama_config.hpp"

namespace codecllm::model {

// What a tensor is for. Per-layer roles are listed in the order of transformers'
// LlamaDecoderLayer modules: attention (each projection followed by its bias), MLP, norms.
enum class TensorRole {
  Embedding,
  Q,
  QBias,
  K,
  KBias,
  V,
  VBias,
  O,
  OBias,
  Gate,
  Up,
  Down,
  AttnNorm,
  FfnNorm,
  FinalNorm,
  LmHead
};

// The seven matmul weights of a layer in the order engines lay them out: q|k|v, o, gate|up,
// down (q, k and v back to back, gate and up too, so that each group is one product).
inline constexpr TensorRole kLayerMatrices[] = {TensorRole::Q,    TensorRole::K,  TensorRole::V,   TensorRole::O,
                                                TensorRole::Gate, TensorRole::Up, TensorRole::Down};
inline constexpr int kNumLayerMatrices = 7;
// How kLayerMatrices form products: {q, k, v}, {o}, {gate, up}, {down}.
inline constexpr int kLayerGroups[] = {3, 1, 2, 1};

struct TensorSpec {
  std::string name;  // as in a Hugging Face checkpoint
  std::vector<uint64_t> shape;
  TensorRole role = TensorRole::Embedding;
  int layer = -1;  // -1 outside the layers
};

bool is_layer_role(TensorRole role);
bool is_norm(TensorRole role);  // norm weights: ones at initialization

// The Hugging Face name of a tensor (`layer` is used by per-layer roles only).
std::string tensor_name(TensorRole role, int layer = -1);
TensorSpec tensor_spec(const LlamaConfig& c, TensorRole role, int layer = -1);

// Every tensor the config calls for, in the order above (embedding, then layer by layer, then
// the final norm and the lm_head): biases only where the config has them, no lm_head when it
// is tied to the embedding.
std::vector<TensorSpec> llama_tensors(const LlamaConfig& c);
// The tensors of one layer, in the same order.
std::vector<TensorSpec> layer_tensors(const LlamaConfig& c, int layer);

// The record of `spec` in `file`; throws codecllm::Error naming the file and the tensor when it
// is missing or has another shape.
const format::TensorRecord& find_tensor(const format::ContainerReader& file, const TensorSpec& spec);

std::string shape_string(const std::vector<uint64_t>& shape);  // "[4096, 14336]"

}  // namespace codecllm::model
