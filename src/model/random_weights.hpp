// Random BF16 weights with the statistics of trained ones that matter to the codec, fast enough
// for synthetic models of any size (a 70B model is 70e9 values).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace codecllm::model {

// Draws float_to_bf16(x) where x ~ N(0, sigma^2), and x is multiplied by 20 with probability
// outlier_fraction. Sampling a Gaussian and rounding it wastes work: the result is one of a few
// thousand BF16 values, so an alias table over them (probabilities from erfc, in double) gives
// the exact distribution from one 64-bit random number, with no transcendental function and no
// rejection. The random numbers are SplitMix64, a counter-based stream: element k for a seed is
// a hash of (seed, k), so a tensor filled in pieces, on any number of threads, gets the same
// bytes. The table is built with libm's erfc; another libm could move a threshold by one ulp.
class RandomBf16 {
 public:
  RandomBf16(double sigma, double outlier_fraction);
  // Elements [first, first + n) of the stream for `seed`, as 2n bytes of little-endian BF16.
  void fill(uint64_t seed, uint64_t first, uint8_t* out, size_t n) const;

 private:
  // Bits 0-31: threshold; 31 random bits below it take bits 32-47 (a positive BF16 value),
  // others bits 48-63 (its alias). The sign is a random bit of its own.
  std::vector<uint64_t> table_;
};

// n values of RandomBf16(sigma, outlier_fraction) for `seed`, as little-endian bytes.
std::vector<uint8_t> random_bf16(uint64_t n, double sigma, uint64_t seed, double outlier_fraction = 0.001);

}  // namespace codecllm::model
