// Containers of synthetic tensors for the GPU tests, written directly with given encode options.
#pragma once

#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "codec/tensor_codec.hpp"
#include "format/container.hpp"

namespace codecllm::test {

using SyntheticTensor = std::tuple<std::string, DType, std::vector<uint64_t>, std::vector<uint8_t>>;

// A container at `path` holding already encoded tensors (tests may edit their planes first).
inline std::string write_encoded(const std::string& path, std::vector<codec::EncodedTensor> encoded) {
  format::ContainerWriter w(path);
  format::Index idx;
  idx.mode = "test";
  idx.source = "synthetic";
  idx.producer = "test";
  for (codec::EncodedTensor& e : encoded) {
    for (size_t k = 0; k < e.payloads.size(); ++k) e.record.planes[k].offset = w.add_payload(e.payloads[k]);
    idx.tensors.push_back(e.record);
  }
  w.finish(idx);
  return path;
}

// A container of synthetic tensors written directly with the given encode options.
inline std::string write_synthetic(const std::string& dir, const codec::EncodeOptions& options,
                                   const std::vector<SyntheticTensor>& ts) {
  std::vector<codec::EncodedTensor> encoded;
  for (const auto& [name, dtype, shape, bytes] : ts)
    encoded.push_back(codec::encode_tensor(name, dtype, shape, bytes, options));
  return write_encoded(dir + "/s.cllm", std::move(encoded));
}

}  // namespace codecllm::test
