// The CPU reference backend: every weight decoded once to float32, plain loops, matmuls split
// over threads. It is the yardstick that faster backends are checked against.
#pragma once

#include <memory>

#include "engine/engine.hpp"
#include "format/container.hpp"

namespace codecllm::engine {

struct CpuEngineOptions {
  unsigned threads = 0;  // 0: all cores
  int max_seq_len = 0;   // KV cache positions; 0: min(max_position_embeddings, 4096)
};

// Reads config.json and the weights of `file`. Throws codecllm::Error naming the file and
// the tensor when a tensor is missing or has the wrong shape. `file` is not used afterwards.
std::unique_ptr<Engine> make_cpu_engine(const format::ContainerReader& file, const CpuEngineOptions& options = {});

}  // namespace codecllm::engine
