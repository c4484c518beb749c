// Symbol statistics and their quantization to rANS frequencies.
#pragma once

#include <array>
#include <cstdint>

#include "codecllm/span.hpp"

namespace codecllm::codec {

using Histogram = std::array<uint64_t, 256>;

Histogram histogram(ByteSpan symbols);

// Order-0 entropy of a histogram, bits per symbol (0 for empty or single-symbol data).
double entropy_bits(const Histogram& h);

// Frequencies summing to exactly 2^prob_bits, >= 1 for every symbol with a nonzero count,
// 0 otherwise, chosen to minimize the coded size (sum of count * -log2(freq / M)).
// Requires at least one nonzero count and at most 2^prob_bits distinct symbols.
std::array<uint32_t, 256> normalize_frequencies(const Histogram& h, uint32_t prob_bits);

}  // namespace codecllm::codec
