// Random-weight checkpoints of real shapes, built in memory: for benchmarks of models larger
// than the real ones shipped for tests, and for the demo when no real model is around.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model/checkpoint.hpp"

namespace codecllm::model {

// A Checkpoint whose tensors live in memory it owns.
class MemoryCheckpoint : public Checkpoint {
 public:
  MemoryCheckpoint(std::string source, std::string config_json)
      : source_(std::move(source)), config_(std::move(config_json)) {}
  // Adds a tensor, taking its bytes.
  void add(const std::string& name, DType dtype, std::vector<uint64_t> shape, std::vector<uint8_t> bytes);
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

 private:
  std::string source_, config_;
  std::vector<std::unique_ptr<std::vector<uint8_t>>> storage_;
  std::vector<TensorInfo> tensors_;
  std::vector<std::pair<std::string, std::string>> extra_;
};

// BF16 values drawn from N(0, sigma^2), with `outlier_fraction` of them multiplied by 20:
// the statistics of trained transformer weights that matter to the codec.
std::vector<uint8_t> random_bf16(uint64_t n, double sigma, uint64_t seed, double outlier_fraction = 0.001);

struct LlamaShape {
  uint64_t hidden = 4096, intermediate = 14336, layers = 32, heads = 32, kv_heads = 8, vocab = 128256;
  uint64_t max_positions = 8192;
  double rope_theta = 500000.0;
  bool tie_embeddings = false;
};

// A Llama-architecture checkpoint of the given shape with random BF16 weights (norm weights 1).
// Parallel over tensors; memory use is the model's BF16 size.
std::unique_ptr<MemoryCheckpoint> make_random_llama(const LlamaShape& shape, uint64_t seed, unsigned threads = 0);

// A byte-level BPE tokenizer.json with no merges: ids 0-2 are <unk>, <s>, </s> and id 3 + b is
// byte b. Random-weight models carry it so that every command, `run` included, works on them.
std::string byte_tokenizer_json();

// Named shapes: "llama3-8b", "llama2-7b", "llama3-70b", "tiny" (a few MB, for demos and tests).
LlamaShape llama_shape(const std::string& name);

}  // namespace codecllm::model
