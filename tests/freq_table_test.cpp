// Histograms, entropy, and the quantization of counts to rANS frequencies.
#include "codec/freq_table.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <queue>
#include <random>
#include <stdexcept>
#include <vector>

namespace codecllm::codec {
namespace {

// Coded size in bits of the histogram's symbols under frequencies f (total 2^prob_bits).
double coded_bits(const Histogram& h, const std::array<uint32_t, 256>& f, uint32_t prob_bits) {
  double bits = 0;
  for (int s = 0; s < 256; ++s)
    if (h[s] != 0) bits += static_cast<double>(h[s]) * (prob_bits - std::log2(double(f[s])));
  return bits;
}

double total_count(const Histogram& h) {
  double t = 0;
  for (uint64_t c : h) t += static_cast<double>(c);
  return t;
}

void expect_valid(const Histogram& h, const std::array<uint32_t, 256>& f, uint32_t prob_bits) {
  uint64_t sum = 0;
  for (int s = 0; s < 256; ++s) {
    sum += f[s];
    if (h[s] == 0) {
      EXPECT_EQ(f[s], 0u) << "absent symbol " << s;
    } else {
      EXPECT_GE(f[s], 1u) << "present symbol " << s;
    }
  }
  EXPECT_EQ(sum, uint64_t{1} << prob_bits);
}

// The exact optimum, by the textbook greedy: start every present symbol at 1 and hand out
// the remaining slots one at a time to the largest saving (optimal because the savings of a
// symbol decrease with its frequency).  Slow but obviously right.
double optimal_bits(const Histogram& h, uint32_t prob_bits) {
  std::array<uint32_t, 256> f{};
  std::priority_queue<std::pair<double, int>> q;
  uint32_t used = 0;
  for (int s = 0; s < 256; ++s) {
    if (h[s] == 0) continue;
    f[s] = 1;
    ++used;
    q.push({double(h[s]) * std::log2(2.0), s});
  }
  for (; used < (1u << prob_bits); ++used) {
    const int s = q.top().second;
    q.pop();
    ++f[s];
    q.push({double(h[s]) * std::log2((f[s] + 1.0) / f[s]), s});
  }
  return coded_bits(h, f, prob_bits);
}

// Exponent byte (bits 14..7) histogram of bf16 weights: a mixture of layers with different
// scales (N(0, sigma) for sigma from 0.004 to 0.1) and 0.1% outliers x20, 1e8 samples
// computed from the normal CDF per exponent bucket.  About 40 symbols, heavily skewed.
Histogram bf16_exponent_histogram() {
  Histogram h{};
  const double sigmas[] = {0.004, 0.01, 0.02, 0.05, 0.1};
  const double n = 1e8;
  for (int e = 1; e < 255; ++e) {
    const double lo = std::ldexp(1.0, e - 127), hi = 2 * lo;  // |x| in [lo, hi)
    double p = 0;
    for (double sigma : sigmas) {
      for (double scale : {1.0, 20.0}) {
        const double w = (scale == 1.0 ? 0.999 : 0.001) / 5;
        const double s = sigma * scale;
        p += w * (std::erfc(lo / (s * std::sqrt(2.0))) - std::erfc(hi / (s * std::sqrt(2.0))));
      }
    }
    h[e] = static_cast<uint64_t>(std::llround(p * n));
  }
  return h;
}

TEST(FreqTable, HistogramCounts) {
  std::vector<uint8_t> v = {1, 2, 2, 3, 3, 3, 255, 0, 0};
  const Histogram h = histogram(v);
  EXPECT_EQ(h[0], 2u);
  EXPECT_EQ(h[1], 1u);
  EXPECT_EQ(h[2], 2u);
  EXPECT_EQ(h[3], 3u);
  EXPECT_EQ(h[255], 1u);
  EXPECT_EQ(total_count(h), 9.0);
  EXPECT_EQ(total_count(histogram(ByteSpan())), 0.0);
}

TEST(FreqTable, EntropyValues) {
  Histogram h{};
  EXPECT_EQ(entropy_bits(h), 0.0);  // empty
  h[7] = 1000;
  EXPECT_EQ(entropy_bits(h), 0.0);  // single symbol
  h[9] = 1000;
  EXPECT_NEAR(entropy_bits(h), 1.0, 1e-12);
  h = {};
  h[0] = 2, h[1] = 1, h[2] = 1;
  EXPECT_NEAR(entropy_bits(h), 1.5, 1e-12);
  for (auto& c : h) c = 5;
  EXPECT_NEAR(entropy_bits(h), 8.0, 1e-12);
}

TEST(FreqTable, SingleSymbolGetsEverything) {
  for (uint32_t bits = 8; bits <= 15; ++bits) {
    Histogram h{};
    h[200] = 12345;
    const auto f = normalize_frequencies(h, bits);
    expect_valid(h, f, bits);
    EXPECT_EQ(f[200], 1u << bits);
  }
}

TEST(FreqTable, AllSymbolsAtEightBits) {
  Histogram h{};
  for (int s = 0; s < 256; ++s) h[s] = s == 3 ? 1000000 : 1;
  const auto f = normalize_frequencies(h, 8);
  expect_valid(h, f, 8);
  for (int s = 0; s < 256; ++s) EXPECT_EQ(f[s], 1u);
}

TEST(FreqTable, RejectsBadInput) {
  Histogram h{};
  EXPECT_THROW(normalize_frequencies(h, 12), std::invalid_argument);  // empty
  for (auto& c : h) c = 1;
  EXPECT_THROW(normalize_frequencies(h, 7), std::invalid_argument);  // 256 > 2^7
  EXPECT_THROW(normalize_frequencies(h, 0), std::invalid_argument);
  EXPECT_THROW(normalize_frequencies(h, 17), std::invalid_argument);
}

TEST(FreqTable, RandomHistogramsAreValidAndOptimal) {
  std::mt19937_64 rng(42);
  for (int trial = 0; trial < 400; ++trial) {
    const uint32_t bits = 8 + trial % 8;
    Histogram h{};
    const int present = 1 + static_cast<int>(rng() % 256);
    const int shape = trial % 4;  // uniform, skewed, huge counts, many singletons
    for (int k = 0; k < present; ++k) {
      const int s = static_cast<int>(rng() % 256);
      uint64_t c = 1 + rng() % 1000;
      if (shape == 1) c = 1 + (rng() % 1000000) / (1 + k * k);
      if (shape == 2) c = (rng() >> 20) + 1;  // up to 2^44: the 128-bit scaling path
      if (shape == 3) c = k % 3 == 0 ? 1 + rng() % 100000 : 1;
      h[s] += c;
    }
    const auto f = normalize_frequencies(h, bits);
    expect_valid(h, f, bits);
    const double got = coded_bits(h, f, bits), best = optimal_bits(h, bits);
    EXPECT_LE(got, best * (1 + 1e-9) + 1e-6) << "trial " << trial;
  }
}

// Cost of the best real-valued frequencies under the same floor of one slot per present
// symbol: symbols rarer than that floor are clamped to 1/M and the rest share what is left in
// proportion to their counts (water filling).  The integer optimum can only be worse by the
// rounding to whole slots; the floor itself (rare symbols coded at 1/M) is the price of the
// table resolution, not of the normalization.
double floored_real_bits(const Histogram& h, uint32_t prob_bits) {
  const double M = std::ldexp(1.0, static_cast<int>(prob_bits)), n = total_count(h);
  std::vector<uint64_t> counts;
  for (uint64_t c : h)
    if (c != 0) counts.push_back(c);
  std::sort(counts.begin(), counts.end());
  size_t clamped = 0;
  double clamped_count = 0;
  while (clamped < counts.size()) {
    const double share = (1 - double(clamped + 1) / M) / (n - clamped_count - double(counts[clamped]));
    if (double(counts[clamped]) * share * M >= 1) break;  // would not fall below the floor
    clamped_count += double(counts[clamped++]);
  }
  const double scale = (1 - double(clamped) / M) / (n - clamped_count);
  double bits = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    const double q = i < clamped ? 1 / M : double(counts[i]) * scale;
    bits -= double(counts[i]) * std::log2(q);
  }
  return bits;
}

TEST(FreqTable, Bf16ExponentsNearEntropy) {
  const Histogram h = bf16_exponent_histogram();
  int present = 0;
  for (uint64_t c : h) present += c != 0;
  EXPECT_GE(present, 35);
  const double entropy = entropy_bits(h) * total_count(h);
  for (uint32_t bits = 12; bits <= 15; ++bits) {
    const auto f = normalize_frequencies(h, bits);
    expect_valid(h, f, bits);
    const double got = coded_bits(h, f, bits), floored = floored_real_bits(h, bits);
    std::printf(
        "[ info     ] %d-symbol bf16 exponents, H = %.4f bits, prob_bits %u: +%.4f%% over the "
        "entropy, of which +%.4f%% from the 1-slot floor and +%.4f%% from integer rounding\n",
        present, entropy / total_count(h), bits, 100 * (got / entropy - 1), 100 * (floored / entropy - 1),
        100 * (got - floored) / entropy);
    EXPECT_LE(got, optimal_bits(h, bits) * (1 + 1e-9) + 1e-6);  // exactly optimal
    EXPECT_LT((got - floored) / entropy, 0.0005);               // rounding costs < 0.05%
  }
}

// Without many symbols below 1/M the floor costs nothing and the table lands within 0.05% of
// the entropy at 13 bits: 40 symbols, geometric tails around a peak, none rarer than 1/4096.
TEST(FreqTable, Skewed40SymbolsWithinFiveHundredthsOfAPercent) {
  Histogram h{};
  for (int k = 0; k < 40; ++k) h[100 + k] = static_cast<uint64_t>(1e8 * std::exp(-0.25 * std::abs(k - 28)));
  const double entropy = entropy_bits(h) * total_count(h);
  const auto f = normalize_frequencies(h, 13);
  expect_valid(h, f, 13);
  const double loss = coded_bits(h, f, 13) / entropy - 1;
  std::printf("[ info     ] 40 skewed symbols, H = %.4f bits, prob_bits 13: +%.4f%%\n", entropy / total_count(h),
              100 * loss);
  EXPECT_LT(loss, 0.0005);
}

}  // namespace
}  // namespace codecllm::codec
