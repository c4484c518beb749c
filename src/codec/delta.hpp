// The LEFT predictor for int8 planes: each value is replaced by its difference from the value
// to its left in the same row (mod 256); the first value of a row is kept. Smooth rows turn
// into small residuals that code in fewer bits; the encoder keeps it only where it pays.
#pragma once

#include <cstdint>

#include "codecllm/span.hpp"

namespace codecllm::codec {

void delta_left_encode(ByteSpan in, uint64_t cols, MutableByteSpan out);
void delta_left_decode(MutableByteSpan data, uint64_t cols);  // in place: per-row prefix sum

}  // namespace codecllm::codec
