#include "model/random_weights.hpp"

#include <cmath>
#include <cstring>

#include "codecllm/error.hpp"

namespace codecllm::model {

namespace {

constexpr uint64_t kGamma = 0x9E3779B97F4A7C15ull;  // SplitMix64's increment

uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

double bf16_value(uint32_t bits) {
  const uint32_t f = bits << 16;
  float v;
  std::memcpy(&v, &f, 4);
  return v;
}

// P(a < |x| < b) / 2 for x ~ N(0, s^2): erf near zero and erfc in the tail, each where it
// keeps its relative precision.
double half_mass(double a, double b, double s) {
  const double k = 1.0 / (s * std::sqrt(2.0));
  if (b <= s) return 0.5 * (std::erf(b * k) - std::erf(a * k));
  return 0.5 * (std::erfc(a * k) - std::erfc(b * k));
}

}  // namespace

RandomBf16::RandomBf16(double sigma, double outlier_fraction) {
  if (!(sigma > 0) || !(outlier_fraction >= 0 && outlier_fraction <= 1))
    throw Error("random weights: sigma must be positive and the outlier fraction in [0, 1]");
  // Rounding to nearest sends x to BF16 value v when x lies between the midpoints to v's
  // neighbours (ties have probability zero). Cells below 1e-16 are left out: 31-bit thresholds
  // over a few thousand entries cannot represent them anyway, and together they weigh < 1e-12.
  constexpr uint32_t kMaxFinite = 0x7F7F;
  std::vector<uint16_t> values;
  std::vector<double> mass;
  for (uint32_t p = 1; p <= kMaxFinite; ++p) {
    const double v = bf16_value(p);
    const double lo = (bf16_value(p - 1) + v) / 2;
    const double hi = p == kMaxFinite ? INFINITY : (v + bf16_value(p + 1)) / 2;
    const double m =
        (1 - outlier_fraction) * half_mass(lo, hi, sigma) + outlier_fraction * half_mass(lo, hi, 20 * sigma);
    if (m < 1e-16) continue;
    values.push_back(static_cast<uint16_t>(p));
    mass.push_back(m);
  }
  // Vose's alias method: each entry keeps its own value with probability `scaled` and gives
  // the rest to one donor that has more than its share.
  const size_t n = values.size();
  double total = 0;
  for (double m : mass) total += m;
  std::vector<double> scaled(n);
  std::vector<size_t> small, large;
  for (size_t j = 0; j < n; ++j) {
    scaled[j] = mass[j] / total * double(n);
    (scaled[j] < 1 ? small : large).push_back(j);
  }
  auto entry = [](uint64_t threshold, uint64_t value, uint64_t alias) { return threshold | value << 32 | alias << 48; };
  table_.resize(n);
  for (size_t j = 0; j < n; ++j) table_[j] = entry(1u << 31, values[j], values[j]);
  while (!small.empty() && !large.empty()) {
    const size_t s = small.back(), l = large.back();
    small.pop_back();
    table_[s] = entry(static_cast<uint64_t>(std::llround(scaled[s] * 0x1p31)), values[s], values[l]);
    scaled[l] -= 1 - scaled[s];
    if (scaled[l] < 1) {
      large.pop_back();
      small.push_back(l);
    }
  }
}

void RandomBf16::fill(uint64_t seed, uint64_t first, uint8_t* out, size_t n) const {
  const uint64_t size = table_.size();
  const uint64_t* table = table_.data();
  uint64_t z = mix64(seed + kGamma) + first * kGamma;  // SplitMix64 state before element `first`
  for (size_t k = 0; k < n; ++k) {
    const uint64_t r = mix64(z += kGamma);
    const uint64_t e = table[((r >> 32) * size) >> 32];  // high 32 bits pick an entry
    const auto low = static_cast<uint32_t>(r);           // low 31 bits choose value or alias
    // A shift, not a branch: the choice is random, so a branch would mispredict half the time.
    const uint32_t alias = (low & 0x7FFFFFFF) >= static_cast<uint32_t>(e);
    const auto bits = static_cast<uint16_t>(e >> (32 + 16 * alias));
    const auto h = static_cast<uint16_t>(bits | (low >> 31) << 15);  // bit 31 is the sign
    std::memcpy(out + 2 * k, &h, 2);                                 // little-endian hosts only
  }
}

std::vector<uint8_t> random_bf16(uint64_t n, double sigma, uint64_t seed, double outlier_fraction) {
  std::vector<uint8_t> out(2 * n);
  RandomBf16(sigma, outlier_fraction).fill(seed, 0, out.data(), n);
  return out;
}

}  // namespace codecllm::model
