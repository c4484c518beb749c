// Progress and resource use of the long-running commands (compress, synth) on stderr.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "model/compress.hpp"

namespace codecllm::tools {

// One line per tensor written: "[12/291] model.layers.1.mlp.up_proj.weight  112.00 MiB ->
// 40.12 MiB  31 s" (elapsed), redrawn in place when stderr is a terminal; nothing when quiet.
class CompressProgress {
 public:
  explicit CompressProgress(bool quiet);
  ~CompressProgress();  // ends a line drawn in place, so that what follows starts a line
  CompressProgress(const CompressProgress&) = delete;
  CompressProgress& operator=(const CompressProgress&) = delete;
  // The callback for compress_checkpoint; valid while this object lives.
  model::ProgressFn fn();

 private:
  bool quiet_, tty_, drawn_ = false;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

// The most resident memory this process has had, in bytes.
uint64_t peak_rss_bytes();

}  // namespace codecllm::tools
