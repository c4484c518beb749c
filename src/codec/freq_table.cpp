// Histograms and their quantization to rANS frequencies (docs/FORMAT.md, "rANS plane").
#include "codec/freq_table.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <queue>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace codecllm::codec {

void HistogramBuilder::add(const uint8_t* p, size_t n) {
  while (n > 0) {
    const size_t m = std::min(n, kFlushAfter - pending_);
    size_t i = 0;
    for (; i + 8 <= m; i += 8) {
      uint64_t w;  // one load for eight bytes
      std::memcpy(&w, p + i, 8);
      for (int k = 0; k < 8; ++k) ++sub_[k][(w >> (8 * k)) & 0xFF];
    }
    for (; i < m; ++i) ++sub_[i % 8][p[i]];
    p += m;
    n -= m;
    pending_ += m;
    if (pending_ == kFlushAfter) flush();
  }
}

void HistogramBuilder::flush() {
  for (auto& t : sub_) {
    for (int s = 0; s < 256; ++s) total_[s] += t[s];
    std::fill(std::begin(t), std::end(t), 0u);
  }
  pending_ = 0;
}

Histogram HistogramBuilder::result() const {
  Histogram h = total_;
  for (const auto& t : sub_)
    for (int s = 0; s < 256; ++s) h[s] += t[s];
  return h;
}

Histogram histogram(ByteSpan symbols) {
  HistogramBuilder b;
  b.add(symbols.data(), symbols.size());
  return b.result();
}

double entropy_bits(const Histogram& h) {
  double total = 0;
  for (uint64_t c : h) total += static_cast<double>(c);
  if (total == 0) return 0;
  double bits = 0;
  for (uint64_t c : h) {
    if (c == 0 || static_cast<double>(c) == total) continue;
    const double p = static_cast<double>(c) / total;
    bits -= p * std::log2(p);
  }
  return bits;
}

namespace {

__extension__ typedef unsigned __int128 u128;  // GCC/Clang; __extension__ silences -Wpedantic

// Coded-size change, in bits, of giving symbol s one more slot (a saving, >= 0) or one fewer
// (a cost, > 0; infinite at f == 1 because present symbols need a slot).  -log2(f/M) is
// convex in f, so both are monotone in f: that makes the greedy steps below optimal.
double add_gain(uint64_t c, uint32_t f) { return static_cast<double>(c) * std::log1p(1.0 / f) / std::log(2.0); }
double sub_cost(uint64_t c, uint32_t f) {
  if (f <= 1) return HUGE_VAL;
  return static_cast<double>(c) * -std::log1p(-1.0 / f) / std::log(2.0);
}

}  // namespace

std::array<uint32_t, 256> normalize_frequencies(const Histogram& h, uint32_t prob_bits) {
  if (prob_bits < 1 || prob_bits > 16) {
    throw std::invalid_argument("normalize_frequencies: prob_bits " + std::to_string(prob_bits) +
                                " out of range [1, 16]");
  }
  const uint32_t M = 1u << prob_bits;
  uint64_t total = 0;
  uint32_t present = 0;
  for (uint64_t c : h) {
    total += c;
    present += c != 0;
  }
  if (present == 0) throw std::invalid_argument("normalize_frequencies: empty histogram");
  if (present > M) {
    throw std::invalid_argument("normalize_frequencies: " + std::to_string(present) + " symbols do not fit in 2^" +
                                std::to_string(prob_bits));
  }

  // Start near the real-valued optimum c*M/total, rounded down; present symbols get >= 1.
  // The 128-bit product keeps this exact for any count.
  std::array<uint32_t, 256> f{};
  uint64_t sum = 0;
  for (int s = 0; s < 256; ++s) {
    if (h[s] == 0) continue;
    const u128 scaled = static_cast<u128>(h[s]) * M / total;
    f[s] = scaled == 0 ? 1u : static_cast<uint32_t>(scaled);  // floor <= M since c <= total
    sum += f[s];
  }

  // Phase 1: reach sum == M.  Rounding down leaves a deficit filled by the best savings; the
  // forced 1s can overshoot, removed where it costs least.  Ties go to the lower symbol so the
  // result is deterministic.
  using Item = std::pair<double, int>;  // (priority, -symbol)
  if (sum < M) {
    std::priority_queue<Item> best;  // largest saving first
    for (int s = 0; s < 256; ++s)
      if (h[s] != 0) best.push({add_gain(h[s], f[s]), -s});
    for (; sum < M; ++sum) {
      const int s = -best.top().second;
      best.pop();
      ++f[s];
      best.push({add_gain(h[s], f[s]), -s});
    }
  } else if (sum > M) {
    std::priority_queue<Item, std::vector<Item>, std::greater<Item>> cheapest;  // lowest cost
    for (int s = 0; s < 256; ++s)
      if (f[s] > 1) cheapest.push({sub_cost(h[s], f[s]), s});
    for (; sum > M; --sum) {  // sum - M <= present - 1 symbols were forced up, so this ends
      const int s = cheapest.top().second;
      cheapest.pop();
      --f[s];
      if (f[s] > 1) cheapest.push({sub_cost(h[s], f[s]), s});
    }
  }

  // Phase 2: moving one slot from j to i pays when gain(i) > cost(j).  For a separable convex
  // objective with a fixed sum, no such pair existing means the allocation is optimal.  Each
  // move strictly lowers the (bounded) objective; the relative margin guards against rounding
  // loops and the cap against anything else.
  // gain[s] and cost[s] cache add_gain and sub_cost of the current f (pure functions of h[s]
  // and f[s], so the same values): a move changes two symbols, and recomputing only those
  // instead of every symbol's, several times per scan, makes small planes' tables cheap.
  double gain[256], cost[256];
  auto update = [&](int s) {
    gain[s] = add_gain(h[s], f[s]);
    cost[s] = sub_cost(h[s], f[s]);
  };
  for (int s = 0; s < 256; ++s)
    if (h[s] != 0) update(s);
  for (uint32_t iter = 0; iter < 4 * M; ++iter) {
    int gi = -1, gi2 = -1, cj = -1, cj2 = -1;  // best and second best of each
    for (int s = 0; s < 256; ++s) {
      if (h[s] == 0) continue;
      const double g = gain[s];
      if (gi < 0 || g > gain[gi]) {
        gi2 = gi;
        gi = s;
      } else if (gi2 < 0 || g > gain[gi2]) {
        gi2 = s;
      }
      const double c = cost[s];
      if (c == HUGE_VAL) continue;
      if (cj < 0 || c < cost[cj]) {
        cj2 = cj;
        cj = s;
      } else if (cj2 < 0 || c < cost[cj2]) {
        cj2 = s;
      }
    }
    if (cj < 0) break;  // every symbol at 1 slot: nothing can move
    // The best pair needs i != j; if the leaders coincide, try each runner-up.
    int i = gi, j = cj;
    if (i == j) {
      const double a = gi2 >= 0 ? gain[gi2] - cost[cj] : -HUGE_VAL;
      const double b = cj2 >= 0 ? gain[gi] - cost[cj2] : -HUGE_VAL;
      if (a == -HUGE_VAL && b == -HUGE_VAL) break;
      if (a >= b) {
        i = gi2;
      } else {
        j = cj2;
      }
    }
    if (!(gain[i] > cost[j] * (1 + 1e-12) + 1e-9)) break;
    ++f[i];
    --f[j];
    update(i);
    update(j);
  }
  return f;
}

}  // namespace codecllm::codec
