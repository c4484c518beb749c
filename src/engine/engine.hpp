// The inference engine interface shared by the CPU reference backend and the CUDA backend.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "engine/sampler.hpp"
#include "model/llama_config.hpp"

namespace codecllm::engine {

// The model description lives with the checkpoints (src/model); the engines only read it.
using model::LlamaConfig;
using model::parse_llama_config;
using model::read_llama_config;
using model::rope_inv_freq;

struct MemoryStats {
  uint64_t weight_bytes = 0;  // weights as held by the backend (decoded or compressed)
  uint64_t kv_cache_bytes = 0;
  uint64_t activation_bytes = 0;
  uint64_t scratch_bytes = 0;                 // decode scratch (compressed placements)
  uint64_t device_bytes = 0;                  // everything the backend allocated on the device, by its own count
  uint64_t peak_device_bytes = 0;             // measured (CUDA: cudaMemGetInfo high-water mark); 0 on CPU
  uint64_t host_pinned_bytes = 0;             // weights held in page-locked host memory (host placements)
  uint64_t streamed_bytes_per_step = 0;       // weight bytes copied host -> device per forward step
  uint64_t matmul_weight_bytes_per_step = 0;  // weight bytes the matmuls read per step (CUDA); 0 if not counted
  uint64_t planned_device_bytes = 0;          // the placement plan's estimate of device_bytes, before load (CUDA)
};

class Engine {
 public:
  virtual ~Engine() = default;
  virtual const LlamaConfig& config() const = 0;
  // Runs `token` at position `pos` (positions 0, 1, 2, ... in order; pos < max sequence
  // length) and returns the logits over the vocabulary, valid until the next call.
  virtual const float* forward(int token, int pos) = 0;
  // Sequences decoded together (the KV cache holds one per sequence). forward() feeds the
  // same token to every sequence and returns the logits of the first.
  virtual int batch_size() const { return 1; }
  // One token per sequence (batch_size() of them), all at position pos; returns the logits,
  // [batch_size()][vocab], valid until the next call.
  virtual const float* forward_batch(const int* tokens, int pos) { return forward(tokens[0], pos); }
  // forward_batch, then the next token of each sequence b with wanted[b] set, picked by
  // samplers[b] (batch_size() of them, one temperature and top_p for all) into next[b]. A
  // backend that samples on its device overrides this: it copies back token ids instead of
  // logits, and makes the same random draws as this host version.
  virtual void forward_sample(const int* tokens, int pos, Sampler* samplers, const uint8_t* wanted, int* next) {
    const float* logits = forward_batch(tokens, pos);
    const size_t vocab = size_t(config().vocab);
    for (int b = 0; b < batch_size(); ++b)
      if (wanted[b]) next[b] = samplers[b].sample(logits + size_t(b) * vocab);
  }
  // Positions the KV cache holds: forward accepts pos < max_seq_len().
  virtual int max_seq_len() const = 0;
  virtual MemoryStats memory() const = 0;
  virtual std::string describe() const = 0;  // e.g. "cpu, 2 threads, f32"
};

}  // namespace codecllm::engine
