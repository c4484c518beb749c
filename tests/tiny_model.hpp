// A tiny random Llama model (attention biases on q, k, v and o), built in memory from the
// model's tensor table and compressed like a real one: for the engine tests of both backends.
#pragma once

#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "codec/int8_quant.hpp"
#include "model/compress.hpp"
#include "model/llama_tensors.hpp"
#include "model/synthetic.hpp"
#include "test_util.hpp"

namespace codecllm::test {

inline const std::string kTinyConfig = R"({"model_type": "llama", "hidden_size": 32, "intermediate_size": 48,
  "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 64,
  "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "attention_bias": true, "eos_token_id": 2})";

struct TinyModel {
  std::string drop;     // left out
  std::string reshape;  // given one row too many
  std::string zero;     // tensors whose name holds this: all zeros (a bias not there, in effect)
  std::string config = kTinyConfig;
  DType dtype = DType::F32;  // F32 or BF16
  std::string file = "tiny.cllm";
  model::CompressOptions options{};  // how it is compressed (mode, coder)

  // Replaces `from` in the config (e.g. R"("num_hidden_layers": 2)") with `to`.
  void replace_config(const std::string& from, const std::string& to) {
    const size_t at = config.find(from);
    if (at == std::string::npos) throw std::invalid_argument("tiny model config has no " + from);
    config.replace(at, from.size(), to);
  }
};

// Every tensor the config calls for, random (the same for the same shapes); returns the path.
inline std::string write_tiny_model(const TempDir& dir, const TinyModel& m) {
  const model::LlamaConfig c = model::parse_llama_config(m.config, "tiny");
  model::MemoryCheckpoint ckpt("memory:tiny", m.config);
  uint64_t seed = 1;
  using model::TensorRole;
  for (const model::TensorSpec& t : model::llama_tensors(c)) {
    const TensorRole r = t.role;
    const bool bias =
        r == TensorRole::QBias || r == TensorRole::KBias || r == TensorRole::VBias || r == TensorRole::OBias;
    const double sigma = r == TensorRole::Embedding                                            ? 1.0
                         : r == TensorRole::Q || r == TensorRole::K || r == TensorRole::LmHead ? 0.3
                         : model::is_norm(r) || bias                                           ? 0.1
                                                                                               : 0.2;
    std::vector<uint64_t> shape = t.shape;
    if (t.name == m.drop) continue;
    if (t.name == m.reshape) shape[0] += 1;
    uint64_t n = 1;
    for (uint64_t d : shape) n *= d;
    std::vector<float> v = gaussian(n, sigma, seed++, 0.0);
    const bool zeroed = !m.zero.empty() && t.name.find(m.zero) != std::string::npos;
    for (float& x : v) x = zeroed ? 0.0f : x + (model::is_norm(r) ? 1.0f : 0.0f);
    std::vector<uint8_t> bytes(n * dtype_size(m.dtype));
    for (size_t i = 0; i < n; ++i) {
      if (m.dtype == DType::BF16) {
        const uint16_t h = codec::float_to_bf16(v[i]);
        std::memcpy(&bytes[2 * i], &h, 2);
      } else {
        std::memcpy(&bytes[4 * i], &v[i], 4);
      }
    }
    ckpt.add(t.name, m.dtype, shape, std::move(bytes));
  }
  const std::string path = dir.path() + "/" + m.file;
  model::compress_checkpoint(ckpt, path, m.options);
  return path;
}

inline std::string write_tiny_model(const TempDir& dir) { return write_tiny_model(dir, TinyModel{}); }

}  // namespace codecllm::test
