// Symbol statistics and their quantization to rANS frequencies.
#pragma once

#include <array>
#include <cstdint>

#include "codecllm/span.hpp"

namespace codecllm::codec {

using Histogram = std::array<uint64_t, 256>;

Histogram histogram(ByteSpan symbols);

// Builds a Histogram from several runs of bytes, so that callers can count blocks while they
// are still in L1 right after producing them (split planes, quantized rows).
//
// Eight sub-tables of 32-bit counters: consecutive bytes go to different tables, so runs of
// one value (exponents, int8 values near 0) do not serialize on a single counter through
// store-to-load forwarding, and 8 KiB of tables stay in L1 next to the data.
class HistogramBuilder {
 public:
  void add(const uint8_t* p, size_t n);
  Histogram result() const;

 private:
  void flush();
  // Flushed into `total_` before any 32-bit counter can overflow.
  static constexpr size_t kFlushAfter = size_t{1} << 31;
  alignas(64) uint32_t sub_[8][256] = {};
  size_t pending_ = 0;
  Histogram total_ = {};
};

// Order-0 entropy of a histogram, bits per symbol (0 for empty or single-symbol data).
double entropy_bits(const Histogram& h);

// Frequencies summing to exactly 2^prob_bits, >= 1 for every symbol with a nonzero count,
// 0 otherwise, chosen to minimize the coded size (sum of count * -log2(freq / M)).
// Requires at least one nonzero count and at most 2^prob_bits distinct symbols.
std::array<uint32_t, 256> normalize_frequencies(const Histogram& h, uint32_t prob_bits);

}  // namespace codecllm::codec
