// The compress / verify / decompress pipelines behind the CLI: checkpoint in, .cllm out, and
// back. Kept out of tools/ so that tests drive exactly what users run.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "codec/tensor_codec.hpp"

namespace codecllm::model {

struct TensorStats {
  std::string name;
  uint64_t elements = 0;
  uint64_t source_bytes = 0;
  uint64_t stored_bytes = 0;  // all payloads of the tensor
  uint64_t coded_bytes = 0;   // payloads of rANS planes only
  double entropy_bytes = 0;   // order-0 bound of those rANS planes
  double seconds = 0;         // encode time (one thread)
  bool int8 = false;
  bool predictor_tried = false;
  bool predictor_used = false;
  std::string note;
};

struct CompressOptions {
  codec::EncodeOptions encode;
  unsigned threads = 0;  // 0: all cores
};

using ProgressFn = std::function<void(size_t done, size_t total, const TensorStats& last)>;

struct CompressResult {
  std::vector<TensorStats> tensors;
  uint64_t file_bytes = 0;
  double seconds = 0;  // wall clock
};

class Checkpoint;

// Writes dst atomically (temporary name, renamed when complete).
CompressResult compress_checkpoint(const std::string& src, const std::string& dst, const CompressOptions& options,
                                   const ProgressFn& progress = nullptr);
CompressResult compress_checkpoint(const Checkpoint& ckpt, const std::string& dst, const CompressOptions& options,
                                   const ProgressFn& progress = nullptr);

struct VerifyResult {
  size_t tensors_checked = 0;
  size_t blobs_checked = 0;
  std::vector<std::string> problems;  // empty when everything matched bit for bit
};

// Decodes every tensor of `file` on the CPU and compares it with `src`: byte for byte in
// lossless mode, with a fresh run of the quantizer in int8 mode.
VerifyResult verify_container(const std::string& file, const std::string& src, unsigned threads = 0,
                              const std::function<void(size_t, size_t)>& progress = nullptr);

// Writes a Hugging Face directory: model.safetensors (lossless tensors byte-identical; int8
// tensors dequantized to their source dtype), config.json and every carried file.
void decompress_container(const std::string& file, const std::string& out_dir);

// "model.layers.3.mlp.up_proj.weight" -> "model.layers.*.mlp.up_proj.weight"
std::string tensor_group(const std::string& name);

// "model.layers.3.mlp.up_proj.weight" -> "model.layers.3": the decoder layer a tensor belongs to
// (the engine's unit of decode), or "" for a tensor of no layer (embeddings, final norm, head).
std::string layer_of(const std::string& name);

}  // namespace codecllm::model
