// llama2.c version-0 ("legacy") checkpoints: a 7 x int32 header, then float32 arrays in a
// fixed order. The reader presents them under Hugging Face Llama names and layout.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "codecllm/span.hpp"
#include "model/checkpoint.hpp"

namespace codecllm::model {

constexpr uint64_t kLlama2cHeaderBytes = 7 * 4;

struct Llama2cConfig {
  uint64_t dim = 0;
  uint64_t hidden_dim = 0;
  uint64_t n_layers = 0;
  uint64_t n_heads = 0;
  uint64_t n_kv_heads = 0;
  uint64_t vocab_size = 0;  // absolute value of the header field
  uint64_t seq_len = 0;
  bool shared_classifier = true;  // header vocab_size > 0: lm_head is the embedding

  uint64_t head_size() const { return dim / n_heads; }
  uint64_t kv_dim() const { return n_kv_heads * head_size(); }
};

// Reads and validates the header of a whole llama2.c file, including that the file size is
// exactly what the header implies. Throws FormatError naming `what`.
Llama2cConfig parse_llama2c_header(ByteSpan file, const std::string& what);

// A Hugging Face config.json (LlamaForCausalLM, float32) describing the same model.
std::string llama2c_hf_config_json(const Llama2cConfig& config);

// Opens a llama2.c .bin. wq/wk rows are permuted from llama2.c's interleaved RoPE order to
// Hugging Face's rotate-half order; other tensors are views into the memory map. A
// tokenizer next to the file (tokenizer.bin, or the only tok*.bin) is carried as
// "tokenizer.bin".
std::unique_ptr<Checkpoint> open_llama2c_checkpoint(const std::string& path);

}  // namespace codecllm::model
