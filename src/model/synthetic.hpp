// Random-weight checkpoints of real shapes: for benchmarks of models larger than the real ones
// shipped for tests, and for the demo when no real model is around. Their tensors are made on
// demand, so a model of any size compresses in the memory of the few tensors being encoded.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model/checkpoint.hpp"
#include "model/random_weights.hpp"  // random_bf16, for callers that add their own tensors

namespace codecllm::model {

// A Checkpoint whose tensors live in memory it owns, or are made each time they are read.
class MemoryCheckpoint : public Checkpoint {
 public:
  // Makes one tensor's bytes, the same ones at every call; called from any thread.
  using Generator = std::function<std::vector<uint8_t>()>;

  MemoryCheckpoint(std::string source, std::string config_json)
      : source_(std::move(source)), config_(std::move(config_json)) {}
  // Adds a tensor, taking its bytes.
  void add(const std::string& name, DType dtype, std::vector<uint64_t> shape, std::vector<uint8_t> bytes);
  // Adds a tensor that `generate` makes whenever tensor_data() asks for it, and that is not
  // kept: its TensorInfo::data stays empty until materialize().
  void add_generated(const std::string& name, DType dtype, std::vector<uint64_t> shape, Generator generate);
  // Makes every generated tensor now, on `threads` threads (0: all cores), and keeps it.
  void materialize(unsigned threads = 0);
  // Adds a carried file, replacing one of the same name.
  void add_file(const std::string& name, std::string bytes) {
    for (auto& [n, b] : extra_)
      if (n == name) return void(b = std::move(bytes));
    extra_.emplace_back(name, std::move(bytes));
  }

  const std::vector<TensorInfo>& tensors() const override { return tensors_; }
  const std::string& config_json() const override { return config_; }
  const std::vector<std::pair<std::string, std::string>>& extra_files() const override { return extra_; }
  const std::string& source() const override { return source_; }
  TensorBytes tensor_data(size_t i) const override;

 private:
  void add_info(const std::string& name, DType dtype, std::vector<uint64_t> shape, ByteSpan data);

  std::string source_, config_;
  std::vector<std::unique_ptr<std::vector<uint8_t>>> storage_;
  std::vector<TensorInfo> tensors_;
  std::vector<Generator> generators_;  // one per tensor; empty for tensors held in storage_
  std::vector<std::pair<std::string, std::string>> extra_;
};

struct LlamaShape {
  uint64_t hidden = 4096, intermediate = 14336, layers = 32, heads = 32, kv_heads = 8, vocab = 128256;
  uint64_t max_positions = 8192;
  double rope_theta = 500000.0;
  bool tie_embeddings = false;
  uint64_t head_dim = 0;  // 0: hidden / heads
};

// A Llama-architecture checkpoint of the given shape with random BF16 weights (norm weights 1),
// each tensor made when it is read (RandomBf16, sigma 0.02, 0.1% outliers; tensor i from seed
// seed * 1000003 + i): memory holds only the tensors being read. Throws codecllm::Error when
// the shape is inconsistent.
std::unique_ptr<MemoryCheckpoint> random_llama(const LlamaShape& shape, uint64_t seed);

// The same with every tensor made now, in parallel on `threads`: the model's BF16 size in RAM.
std::unique_ptr<MemoryCheckpoint> make_random_llama(const LlamaShape& shape, uint64_t seed, unsigned threads = 0);

// A byte-level BPE tokenizer.json with no merges: ids 0-2 are <unk>, <s>, </s> and id 3 + b is
// byte b. Random-weight models carry it so that every command, `run` included, works on them.
std::string byte_tokenizer_json();

// Named shapes: "llama3-8b", "llama2-7b", "llama3-70b", "tiny" (a few MB, for demos and tests).
LlamaShape llama_shape(const std::string& name);

// The shape a Hugging Face config.json describes: hidden_size, intermediate_size,
// num_hidden_layers, num_attention_heads and vocab_size are required; num_key_value_heads,
// head_dim, max_position_embeddings, rope_theta and tie_word_embeddings are read when present.
// Errors name `what`.
LlamaShape llama_shape_from_config(const std::string& config_json, const std::string& what);

}  // namespace codecllm::model
