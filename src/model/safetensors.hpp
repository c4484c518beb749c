// The safetensors container: an 8-byte little-endian header length, a JSON header naming
// every tensor's dtype, shape and byte range, then the data region. Headers come from
// untrusted files, so parsing validates every field before any byte range is used.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "codecllm/span.hpp"
#include "model/checkpoint.hpp"

namespace codecllm::model {

// Larger headers are refused: real ones are kilobytes, and the JSON parse costs memory.
constexpr uint64_t kMaxSafetensorsHeader = 100ull * 1000 * 1000;

struct SafetensorsFile {
  std::map<std::string, std::string> metadata;  // the "__metadata__" object, if any
  std::vector<TensorInfo> tensors;              // header order; data points into the input
  uint64_t data_start = 0;                      // offset of the data region in the file
};

// Parses and validates a whole safetensors file held in memory. Throws FormatError naming
// `what` (normally the path) and the problem. Unknown dtypes are kept as DType::Unknown with
// their spelling in dtype_name; their byte size cannot be checked against the shape.
SafetensorsFile parse_safetensors(ByteSpan file, const std::string& what);

// Writes tensors in the given order with contiguous data, through OutputFile so that `path`
// appears only once complete. Throws Error on inconsistent tensors (size vs. shape, duplicate
// names) and IoError on write failures.
void write_safetensors(const std::string& path, const std::vector<TensorInfo>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace codecllm::model
