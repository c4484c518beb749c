// Checkpoints the compressor reads: Hugging Face directories (config.json + one or several
// safetensors files) and llama2.c version-0 checkpoints, converted on the fly to the same
// Hugging Face tensor names and layout so the rest of the pipeline sees one format.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "codecllm/dtype.hpp"
#include "codecllm/span.hpp"

namespace codecllm::model {

// One tensor of a checkpoint. `data` points into a memory map or into storage owned by the
// Checkpoint, and stays valid as long as the Checkpoint lives; it is empty for a tensor made
// on demand (Checkpoint::tensor_data).
struct TensorInfo {
  std::string name;
  DType dtype = DType::Unknown;
  std::string dtype_name;  // as spelled in the file, kept for dtypes the codec does not know
  std::vector<uint64_t> shape;
  ByteSpan data;  // little-endian element bytes, row-major
};

// A tensor's bytes and whatever keeps them alive: `data` is valid as long as `owner` is held.
struct TensorBytes {
  ByteSpan data;
  std::shared_ptr<const void> owner;  // null when data lives in the Checkpoint
};

class Checkpoint {
 public:
  virtual ~Checkpoint() = default;
  // Tensors in a stable order (file order, shard by shard).
  virtual const std::vector<TensorInfo>& tensors() const = 0;
  // Text of the Hugging Face config.json.
  virtual const std::string& config_json() const = 0;
  // Files carried along (name, bytes): tokenizer.json, tokenizer.model, tokenizer.bin,
  // tokenizer_config.json, generation_config.json, special_tokens_map.json, when present.
  virtual const std::vector<std::pair<std::string, std::string>>& extra_files() const = 0;
  // Human-readable origin, e.g. "hf:/path/to/dir" or "llama2c:/path/model.bin".
  virtual const std::string& source() const = 0;
  // The bytes of tensors()[i], for readers that hold them only while they use them (the
  // compressor drops them once the tensor is encoded). A checkpoint that makes tensors on
  // demand overrides it, so that a model larger than RAM never exists in full. Safe to call
  // from several threads at once.
  virtual TensorBytes tensor_data(size_t i) const { return {tensors().at(i).data, nullptr}; }
};

// Opens a Hugging Face directory or a llama2.c .bin (tokenizer.bin is looked for next to it,
// or in the same directory as tok*.bin). Throws codecllm::Error subclasses naming the file.
std::unique_ptr<Checkpoint> open_checkpoint(const std::string& path);

// Opens a Hugging Face directory: config.json plus model.safetensors, or
// model.safetensors.index.json and the shards its weight_map names, or a single *.safetensors.
std::unique_ptr<Checkpoint> open_hf_checkpoint(const std::string& dir);

}  // namespace codecllm::model
