#include "codec/delta.hpp"

namespace codecllm::codec {

void delta_left_encode(ByteSpan in, uint64_t cols, MutableByteSpan out) {
  for (uint64_t start = 0; start < in.size(); start += cols) {
    uint8_t prev = 0;
    for (uint64_t i = start; i < start + cols && i < in.size(); ++i) {
      out[i] = static_cast<uint8_t>(in[i] - prev);
      prev = in[i];
    }
  }
}

void delta_left_decode(MutableByteSpan data, uint64_t cols) {
  for (uint64_t start = 0; start < data.size(); start += cols) {
    uint8_t acc = 0;
    for (uint64_t i = start; i < start + cols && i < data.size(); ++i) {
      acc = static_cast<uint8_t>(acc + data[i]);
      data[i] = acc;
    }
  }
}

}  // namespace codecllm::codec
