#include "codec/class_tables.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <utility>
#include <vector>

namespace codecllm::codec {
namespace {

// Classes tried per axis. Eight tables cost about 700 bytes of frequencies; the fits measured
// on trained embeddings and output heads gain little beyond eight.
constexpr uint32_t kTables = 8;
// Class tables must save at least this fraction of the one-table size to be used: they cost a
// slower decode path and a larger header.
constexpr double kMinSaving = 0.005;
// Lloyd passes after the quantile start: on pycode24M two give 10.383 bits per weight, six
// 10.382, at a third of the fitting time.
constexpr int kIterations = 2;
// Columns are counted on every kColumnSampling-th row of tall matrices (see choose_classes).
constexpr uint64_t kColumnSampling = 4;

// Per-unit (row or column) histograms over the plane's symbol range [lo, lo + width).
struct UnitCounts {
  uint32_t lo = 0, width = 0;
  uint64_t units = 0;
  std::vector<uint32_t> counts;  // units x width
  const uint32_t* of(uint64_t u) const { return counts.data() + u * width; }
};

double entropy_cost(const std::vector<uint64_t>& h) {
  uint64_t n = 0;
  for (uint64_t v : h) n += v;
  double bits = 0;
  for (uint64_t v : h)
    if (v != 0) bits -= double(v) * std::log2(double(v) / double(n));
  return bits;
}

// Estimated coded bits of the plane with classes `cls` (tables at 2 bytes per symbol of the
// range plus 4, one byte per class id), from the entropy of each class; the counts are a
// 1 / `sampling` sample of the plane.
double class_cost(const UnitCounts& uc, const std::vector<uint8_t>& cls, uint32_t K, uint64_t sampling) {
  std::vector<std::vector<uint64_t>> h(K, std::vector<uint64_t>(uc.width, 0));
  for (uint64_t u = 0; u < uc.units; ++u)
    for (uint32_t s = 0; s < uc.width; ++s) h[cls[u]][s] += uc.of(u)[s];
  double bits = 8.0 * double(uc.units);
  for (uint32_t k = 0; k < K; ++k) bits += double(sampling) * entropy_cost(h[k]) + 8.0 * (4 + 2 * uc.width);
  return bits;
}

// Lloyd iterations from a split of the units into K quantiles of their mean symbol.
std::vector<uint8_t> fit(const UnitCounts& uc, uint32_t K) {
  std::vector<double> mean(uc.units);
  for (uint64_t u = 0; u < uc.units; ++u) {
    double n = 0, sum = 0;
    for (uint32_t s = 0; s < uc.width; ++s) {
      n += uc.of(u)[s];
      sum += double(uc.of(u)[s]) * s;
    }
    mean[u] = n > 0 ? sum / n : 0;
  }
  std::vector<uint64_t> order(uc.units);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](uint64_t a, uint64_t b) { return mean[a] < mean[b]; });
  std::vector<uint8_t> cls(uc.units);
  for (uint64_t i = 0; i < uc.units; ++i) cls[order[i]] = static_cast<uint8_t>(i * K / uc.units);

  // Each unit's nonzero counts, so that a pass costs units x K x (symbols a unit has).
  std::vector<uint64_t> start(uc.units + 1, 0);
  std::vector<std::pair<uint32_t, uint32_t>> nz;
  for (uint64_t u = 0; u < uc.units; ++u) {
    for (uint32_t s = 0; s < uc.width; ++s)
      if (uc.of(u)[s] != 0) nz.emplace_back(s, uc.of(u)[s]);
    start[u + 1] = nz.size();
  }
  std::vector<double> cost(size_t{K} * uc.width);
  for (int iter = 0; iter < kIterations; ++iter) {
    // Tables from the current classes; a symbol a class has not seen costs as if seen half a time.
    std::vector<double> h(size_t{K} * uc.width, 0.5), n(K, 0.5 * uc.width);
    for (uint64_t u = 0; u < uc.units; ++u) {
      for (uint64_t i = start[u]; i < start[u + 1]; ++i) {
        h[size_t{cls[u]} * uc.width + nz[i].first] += nz[i].second;
        n[cls[u]] += nz[i].second;
      }
    }
    for (uint32_t k = 0; k < K; ++k) {
      for (uint32_t s = 0; s < uc.width; ++s)
        cost[size_t{k} * uc.width + s] = -std::log2(h[size_t{k} * uc.width + s] / n[k]);
    }
    bool moved = false;
    for (uint64_t u = 0; u < uc.units; ++u) {
      double best = 0;
      uint8_t arg = 0;
      for (uint32_t k = 0; k < K; ++k) {
        const double* ck = cost.data() + size_t{k} * uc.width;
        double c = 0;
        for (uint64_t i = start[u]; i < start[u + 1]; ++i) c += nz[i].second * ck[nz[i].first];
        if (k == 0 || c < best) {
          best = c;
          arg = static_cast<uint8_t>(k);
        }
      }
      moved = moved || arg != cls[u];
      cls[u] = arg;
    }
    if (!moved) break;
  }
  return cls;
}

}  // namespace

std::optional<ClassMap> choose_classes(ByteSpan plane, uint64_t rows, uint64_t cols) {
  if (rows < uint64_t{2} * kTables || cols < uint64_t{2} * kTables || rows * cols != plane.size() ||
      cols > UINT32_MAX || rows > UINT32_MAX)
    return std::nullopt;
  uint32_t lo = 255, hi = 0;
  for (uint8_t v : plane) {
    lo = std::min<uint32_t>(lo, v);
    hi = std::max<uint32_t>(hi, v);
  }
  UnitCounts by_row, by_col;
  for (UnitCounts* uc : {&by_row, &by_col}) {
    uc->lo = lo;
    uc->width = hi - lo + 1;
    uc->units = uc == &by_row ? rows : cols;
    uc->counts.assign(uc->units * uc->width, 0);
  }
  // Columns are judged on every kColumnSampling-th row (thousands of samples each on the
  // matrices this is for): the counting is most of this function's time, and the tables are
  // recounted exactly when the plane is coded.
  const uint64_t sampling = rows >= 64 * kColumnSampling ? kColumnSampling : 1;
  const uint8_t* p = plane.data();
  for (uint64_t r = 0; r < rows; ++r, p += cols) {
    uint32_t* rh = by_row.counts.data() + r * by_row.width;
    for (uint64_t c = 0; c < cols; ++c) ++rh[p[c] - lo];
    if (r % sampling != 0) continue;
    uint32_t* ch = by_col.counts.data();
    for (uint64_t c = 0; c < cols; ++c, ch += by_col.width) ++ch[p[c] - lo];
  }
  std::vector<uint64_t> all(by_row.width, 0);
  for (uint64_t r = 0; r < rows; ++r)
    for (uint32_t s = 0; s < by_row.width; ++s) all[s] += by_row.of(r)[s];
  const double one_table = entropy_cost(all);
  std::optional<ClassMap> best;
  double best_bits = one_table * (1.0 - kMinSaving);
  for (ClassAxis axis : {ClassAxis::Rows, ClassAxis::Columns}) {
    const UnitCounts& uc = axis == ClassAxis::Rows ? by_row : by_col;
    std::vector<uint8_t> cls = fit(uc, kTables);
    const double bits = class_cost(uc, cls, kTables, axis == ClassAxis::Rows ? 1 : sampling);
    if (bits < best_bits) {
      best_bits = bits;
      best = ClassMap{axis, static_cast<uint32_t>(cols), kTables, std::move(cls)};
    }
  }
  return best;
}

}  // namespace codecllm::codec
