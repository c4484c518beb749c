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

// A container of synthetic tensors written directly with the given encode options.
inline std::string write_synthetic(const std::string& dir, const codec::EncodeOptions& options,
                                   const std::vector<SyntheticTensor>& ts) {
  const std::string path = dir + "/s.cllm";
  format::ContainerWriter w(path);
  format::Index idx;
  idx.mode = "test";
  idx.source = "synthetic";
  idx.producer = "test";
  for (const auto& [name, dtype, shape, bytes] : ts) {
    codec::EncodedTensor e = codec::encode_tensor(name, dtype, shape, bytes, options);
    for (size_t k = 0; k < e.payloads.size(); ++k) e.record.planes[k].offset = w.add_payload(e.payloads[k]);
    idx.tensors.push_back(e.record);
  }
  w.finish(idx);
  return path;
}

}  // namespace codecllm::test
