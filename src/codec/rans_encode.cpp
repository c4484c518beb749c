// rANS plane encoder.  The bitstream is specified in rans.hpp and docs/FORMAT.md ("rANS
// plane"); the decoder in rans_decode.cpp is the reference this file must agree with.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "codec/freq_table.hpp"
#include "codec/rans.hpp"
#include "codecllm/bytes.hpp"
#include "codecllm/error.hpp"

namespace codecllm::codec {
namespace {


// Everything the encoder needs about one symbol, precomputed so the hot loop has no division.
//
// Encoding s from state x (with freq f, cumulative start c, M = 2^p) is
//   x' = (x / f) * M + (x % f) + c  =  x + c + q * (M - f)   with q = x / f.
// After renormalization x <= f * 2^(32-p) - 1 (see encode_chunk), and q is one 64-bit product
// with a rounded-up reciprocal and a shift by a constant: m = ceil(2^(32+p) / f),
// q = (x * m) >> (32 + p).  Exact: write m = (2^(32+p) + d) / f with 0 <= d < f <= 2^p; then
// x*m / 2^(32+p) = x/f + x*d / (f * 2^(32+p)) and x*d < 2^32 * 2^p, so the error term is below
// 1/f and cannot carry floor(x/f) past the next integer (the fractional part of x/f is at most
// (f-1)/f).  No overflow: x * 2^(32+p) / f <= 2^64 - 2^(32+p)/f and x*d/f < x < 2^32 <= 2^(32+p)/f.
// f == 1 (m = 2^(32+p)) and f == M (m = 2^32) are exact as well: q = x.
// (One imul and a constant shift: a 128-bit product with a 2^64 reciprocal costs a two-uop
// mul pinned to rax/rdx plus moves.)
struct EncSymbol {
  uint64_t rcp;   // m
  uint32_t lim;   // x_max - 1 = f * 2^(32-p) - 1; renormalize first while x > lim
  uint16_t bias;  // c (c + f <= M <= 2^15)
  uint16_t cmpl;  // M - f
};
static_assert(sizeof(EncSymbol) == 16, "one 16-byte entry per symbol");

EncSymbol make_enc_symbol(uint32_t freq, uint32_t cum, uint32_t prob_bits) {
  const uint32_t M = 1u << prob_bits;
  EncSymbol s{};
  s.rcp = ((uint64_t{1} << (32 + prob_bits)) + freq - 1) / freq;
  // f == M: x_max = 2^32, so no 32-bit x ever renormalizes; lim = 2^32 - 1 says exactly that.
  s.lim = static_cast<uint32_t>((uint64_t{freq} << (32 - prob_bits)) - 1);
  s.bias = static_cast<uint16_t>(cum);
  s.cmpl = static_cast<uint16_t>(M - freq);
  return s;
}

// Calls f(31), f(30), ..., f(0) with each lane a constant: unrolled at compile time.
template <typename F, size_t... I>
inline void for_lanes_down(F&& f, std::index_sequence<I...>) {
  (f(static_cast<uint32_t>(kRansLanes - 1 - I)), ...);
}

// Encodes symbols[0, n) of one chunk.  Words are written backwards ending at `end` (the
// decoder reads them forwards); returns the first word.  Final states go to x[32].
//
// Invariants (ryg_rans style; f, c: the symbol's frequency and start, M = 2^p, L = 2^16):
//  * Between symbols x lies in [L, 2^32).  It starts at L, which is what the decoder's final
//    state check compares against.
//  * Before coding, x is brought below x_max = ((L >> p) << 16) * f = f * 2^(32-p) by
//    emitting its low 16 bits.  One word always suffices: x >> 16 < 2^16 < 2^(32-p) <= x_max.
//  * After that step x >= f * 2^(16-p): either it was emitted from x >= x_max, and x_max is a
//    multiple of 2^16, or it was not and x >= L = 2^16 >= f * 2^(16-p) (f <= M).  So
//    q = x / f lies in [2^(16-p), 2^(32-p)) and x' = q*M + x%f + c lies in [L, 2^32).
//  * The decoder undoes the steps in reverse: symbol i (lane i % 32, step i / 32) is coded
//    last step first and lane 31 down to 0, so the decoder, running forwards, reads each word
//    right after decoding the symbol whose coding emitted it.
// P = prob_bits is a template parameter so that the reciprocal's shift is a constant.
// With class tables (kClasses), symbol i is coded with table + 256 * classes[i].
template <uint32_t P, bool kClasses>
uint16_t* encode_chunk(const uint8_t* symbols, const uint8_t* classes, uint32_t n, const EncSymbol* table,
                       uint32_t x[kRansLanes], uint16_t* end) {
  for (uint32_t lane = 0; lane < kRansLanes; ++lane) x[lane] = kRansL;
  // ptr[-1] is stored unconditionally and kept only when a word is emitted;
  // the caller leaves one spare slot before the n words a chunk can emit at most.
  uint16_t* ptr = end;
  // Branch-free (emits are data dependent and would mispredict) and without shifts by a
  // variable count (several uops each on x86 without BMI2): `emit` is -1 when a word is
  // emitted, 0 otherwise, and selects with a mask.  (Written as ?:, GCC emits a branch.)
  auto put = [&](uint32_t lane, const uint8_t* sym, const uint8_t* cls) __attribute__((always_inline)) {
    const EncSymbol& s = table[(kClasses ? size_t{cls[lane]} << 8 : 0) + sym[lane]];
    uint32_t v = x[lane];
    const int64_t emit = static_cast<int64_t>(uint64_t{s.lim} - v) >> 63;  // -1 iff v > lim (sign fill)
    ptr[-1] = static_cast<uint16_t>(v);
    ptr += emit;
    v ^= (v ^ (v >> 16)) & static_cast<uint32_t>(emit);
    const auto q = static_cast<uint32_t>((uint64_t{v} * s.rcp) >> (32 + P));
    x[lane] = v + s.bias + q * s.cmpl;  // = q*M + (v - q*f) + cum, exact mod 2^32
  };
  const uint32_t full_steps = n / kRansLanes;
  const uint32_t rest = n % kRansLanes;
  const size_t tail = size_t{full_steps} * kRansLanes;
  for (uint32_t lane = rest; lane-- > 0;) put(lane, symbols + tail, classes + (kClasses ? tail : 0));
  for (uint32_t step = full_steps; step-- > 0;) {
    const uint8_t* sym = symbols + size_t{step} * kRansLanes;
    const uint8_t* cls = kClasses ? classes + size_t{step} * kRansLanes : nullptr;
    // Lanes are independent (but for ptr), so the core overlaps them; unrolled, every
    // x[lane] and sym[lane] is a fixed offset and several states stay in registers.
    for_lanes_down(
        [&](uint32_t lane) __attribute__((always_inline)) { put(lane, sym, cls); },
        std::make_index_sequence<kRansLanes>{});
  }
  return ptr;
}

using EncodeChunkFn = uint16_t* (*)(const uint8_t*, const uint8_t*, uint32_t, const EncSymbol*, uint32_t*, uint16_t*);

template <bool kClasses>
EncodeChunkFn encode_chunk_for(uint32_t prob_bits) {
  static_assert(kMinProbBits == 8 && kMaxProbBits == 15, "one instance per prob_bits");
  static constexpr EncodeChunkFn fns[] = {
      encode_chunk<8, kClasses>,  encode_chunk<9, kClasses>,  encode_chunk<10, kClasses>, encode_chunk<11, kClasses>,
      encode_chunk<12, kClasses>, encode_chunk<13, kClasses>, encode_chunk<14, kClasses>, encode_chunk<15, kClasses>};
  return fns[prob_bits - kMinProbBits];
}

// The first 24 bytes, alike in both layouts.
void put_common_header(uint8_t* h, uint32_t magic, uint32_t prob_bits, uint64_t total, uint32_t cs,
                       uint64_t num_chunks) {
  store_le32(h + 0, magic);
  store_le32(h + 4, prob_bits);
  store_le64(h + 8, total);
  store_le32(h + 16, cs);
  store_le32(h + 20, static_cast<uint32_t>(num_chunks));
}

void check_options(const RansOptions& options, const char* who) {
  if (options.chunk_symbols == 0 || options.chunk_symbols % kRansLanes != 0) {
    throw std::invalid_argument(std::string(who) + ": chunk_symbols " + std::to_string(options.chunk_symbols) +
                                " must be a positive multiple of 32");
  }
  if (options.prob_bits != 0 && (options.prob_bits < kMinProbBits || options.prob_bits > kMaxProbBits)) {
    throw std::invalid_argument(std::string(who) + ": prob_bits " + std::to_string(options.prob_bits) +
                                " out of range [8, 15]");
  }
}

// Encoder tables of one frequency table: entries for its symbols at table[s].
void fill_enc_table(const std::array<uint32_t, 256>& freq, uint32_t prob_bits, EncSymbol* table) {
  uint32_t cum = 0;
  for (uint32_t s = 0; s < 256; ++s) {
    if (freq[s] == 0) continue;
    table[s] = make_enc_symbol(freq[s], cum, prob_bits);
    cum += freq[s];
  }
}

// Codes the chunks of `symbols` after the header and tables already in `out` (data_offset
// bytes, chunk_end table at table_end), appending them and filling the chunk_end table.
// map: nullptr, or the class of each symbol (tables of 256 entries each, one per class).
void append_chunks(ByteSpan symbols, const ClassMap* map, uint32_t cs, uint32_t prob_bits, const EncSymbol* table,
                   uint64_t table_end, uint64_t data_offset, std::vector<uint8_t>& out) {
  const uint64_t total = symbols.size();
  const uint64_t num_chunks = total / cs + (total % cs != 0);
  // One chunk's words at most: one per symbol, plus the spare slot encode_chunk writes into.
  // Uninitialized (new[], not a vector): every word is written before it is read.
  const size_t scratch_words = size_t{std::min<uint64_t>(cs, total)} + 1;
  const std::unique_ptr<uint16_t[]> scratch(new uint16_t[scratch_words]);
  const EncodeChunkFn encode_chunk =
      map != nullptr ? encode_chunk_for<true>(prob_bits) : encode_chunk_for<false>(prob_bits);
  // Each symbol's table, spelled out for one chunk at a time: the chunk coder then indexes it
  // like the symbols.
  std::vector<uint8_t> classes(map != nullptr ? scratch_words : 0);
  uint32_t x[kRansLanes];
  for (uint64_t c = 0; c < num_chunks; ++c) {
    const uint64_t first = c * cs;
    const uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(cs, total - first));
    uint16_t* end = scratch.get() + scratch_words;
    if (map != nullptr) map->tables_of(first, n, classes.data());
    uint16_t* words = encode_chunk(symbols.data() + first, classes.data(), n, table, x, end);
    const size_t num_words = static_cast<size_t>(end - words);
    const size_t chunk_bytes = align_up(size_t{4} * kRansLanes + 2 * num_words, 16);
    const size_t at = out.size();
    if (at - data_offset + chunk_bytes > UINT32_MAX) {
      throw Error("rans_encode: coded plane exceeds the 4 GiB chunk offset range");
    }
    // Appended (states, words, then zero padding) rather than resized and overwritten: a
    // resize would zero-fill every byte first.
    uint8_t states[kChunkStateBytes];
    for (uint32_t lane = 0; lane < kRansLanes; ++lane) store_le32(states + size_t{4} * lane, x[lane]);
    out.insert(out.end(), states, states + kChunkStateBytes);
#if !(defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__)
    for (size_t i = 0; i < num_words; ++i) store_le16(reinterpret_cast<uint8_t*>(words + i), words[i]);
#endif
    const auto* word_bytes = reinterpret_cast<const uint8_t*>(words);
    out.insert(out.end(), word_bytes, word_bytes + 2 * num_words);
    out.resize(at + chunk_bytes, 0);  // zero padding
    store_le32(out.data() + table_end + 4 * c, static_cast<uint32_t>(out.size() - data_offset));
  }
}

}  // namespace

std::vector<uint8_t> rans_encode(ByteSpan symbols, const RansOptions& options) {
  return rans_encode(symbols, options, histogram(symbols));
}

std::vector<uint8_t> rans_encode(ByteSpan symbols, const RansOptions& options, const Histogram& symbol_counts) {
  check_options(options, "rans_encode");
  const uint64_t total = symbols.size();
  const uint32_t cs = options.chunk_symbols;
  const uint64_t num_chunks = total / cs + (total % cs != 0);
  if (num_chunks > UINT32_MAX) throw Error("rans_encode: plane has too many chunks");

  Histogram hist = symbol_counts;
  if (total == 0) hist[0] = 1;  // empty plane: a one-symbol table {0: M}, no chunks
  uint32_t min_symbol = 255, max_symbol = 0;
  for (uint32_t s = 0; s < 256; ++s) {
    if (hist[s] == 0) continue;
    min_symbol = std::min(min_symbol, s);
    max_symbol = std::max(max_symbol, s);
  }
  // Default 13 bits: the one-slot floor of rare symbols costs about half of what it does at 12,
  // and a GPU decoder's tables for 2^13 slots (5 bytes each) still fit in shared memory next to
  // its stream buffers; every extra bit doubles them for a few hundredths of a percent.
  const uint32_t prob_bits = options.prob_bits != 0 ? options.prob_bits : kDefaultProbBits;
  const std::array<uint32_t, 256> freq = normalize_frequencies(hist, prob_bits);
  EncSymbol table[256] = {};
  fill_enc_table(freq, prob_bits, table);
  double est_bits = 0;  // for the output reservation only
  for (uint32_t s = min_symbol; s <= max_symbol; ++s)
    if (freq[s] != 0) est_bits += static_cast<double>(hist[s]) * (prob_bits - std::log2(double(freq[s])));

  const uint32_t num_symbols = max_symbol - min_symbol + 1;
  const uint64_t table_end = align_up(sizeof(RansPlaneHeader) + 2 * uint64_t{num_symbols}, 4);
  const uint64_t data_offset = align_up(table_end + 4 * num_chunks, 16);
  std::vector<uint8_t> out(data_offset, 0);
  out.reserve(data_offset + static_cast<size_t>(est_bits / 8 * 1.01) + num_chunks * 160);

  uint8_t* h = out.data();
  put_common_header(h, kRansMagic, prob_bits, total, cs, num_chunks);
  store_le16(h + 24, min_symbol);
  store_le16(h + 26, num_symbols);
  store_le32(h + 28, static_cast<uint32_t>(data_offset));
  for (uint32_t i = 0; i < num_symbols; ++i)
    store_le16(h + sizeof(RansPlaneHeader) + size_t{2} * i, freq[min_symbol + i]);  // M <= 2^15 fits
  append_chunks(symbols, nullptr, cs, prob_bits, table, table_end, data_offset, out);
  return out;
}

std::vector<uint8_t> rans_encode_classes(ByteSpan symbols, const RansOptions& options, const ClassMap& map) {
  check_options(options, "rans_encode_classes");
  const uint64_t total = symbols.size();
  const uint32_t K = map.num_tables;
  if (K < 2 || K > kMaxClassTables || map.cols == 0 || total % map.cols != 0 ||
      map.classes.size() != (map.axis == ClassAxis::Rows ? total / map.cols : map.cols)) {
    throw std::invalid_argument("rans_encode_classes: class map does not fit the plane");
  }
  const uint32_t cs = options.chunk_symbols;
  const uint64_t num_chunks = total / cs + (total % cs != 0);
  if (num_chunks > UINT32_MAX || map.classes.size() > UINT32_MAX) throw Error("rans_encode_classes: plane too large");
  for (uint8_t k : map.classes)
    if (k >= K) throw std::invalid_argument("rans_encode_classes: class id out of range");
  std::vector<Histogram> hist(K, Histogram{});
  for (uint64_t g = 0; g < total; g += map.cols) {
    const uint8_t* row = symbols.data() + g;
    if (map.axis == ClassAxis::Rows) {
      Histogram& h = hist[map.classes[g / map.cols]];
      for (uint32_t c = 0; c < map.cols; ++c) ++h[row[c]];
    } else {
      for (uint32_t c = 0; c < map.cols; ++c) ++hist[map.classes[c]][row[c]];
    }
  }
  const uint32_t prob_bits = options.prob_bits != 0 ? options.prob_bits : kDefaultProbBits;
  std::vector<EncSymbol> table(size_t{K} * 256);
  std::vector<std::array<uint32_t, 256>> freq(K);
  uint64_t tables_bytes = 0;
  std::vector<std::pair<uint32_t, uint32_t>> range(K);  // min symbol, count
  for (uint32_t k = 0; k < K; ++k) {
    if (std::all_of(hist[k].begin(), hist[k].end(), [](uint64_t v) { return v == 0; })) hist[k][0] = 1;
    freq[k] = normalize_frequencies(hist[k], prob_bits);
    fill_enc_table(freq[k], prob_bits, table.data() + size_t{k} * 256);
    uint32_t lo = 255, hi = 0;
    for (uint32_t s = 0; s < 256; ++s) {
      if (freq[k][s] == 0) continue;
      lo = std::min(lo, s);
      hi = std::max(hi, s);
    }
    range[k] = {lo, hi - lo + 1};
    tables_bytes += 4 + 2 * uint64_t{hi - lo + 1};
  }
  const uint64_t classes_at = kRansClassHeaderBytes + tables_bytes;
  const uint64_t table_end = align_up(classes_at + map.classes.size(), 4);
  const uint64_t data_offset = align_up(table_end + 4 * num_chunks, 16);
  if (data_offset > UINT32_MAX) throw Error("rans_encode_classes: class map too large");
  // data_offset >= the header (said explicitly: GCC's overflow warning cannot see it).
  std::vector<uint8_t> out(std::max<uint64_t>(data_offset, kRansClassHeaderBytes), 0);
  uint8_t* h = out.data();
  put_common_header(h, kRansClassMagic, prob_bits, total, cs, num_chunks);
  store_le32(h + 24, map.cols);
  store_le32(h + 28, static_cast<uint32_t>(data_offset));
  h[32] = static_cast<uint8_t>(map.axis);
  h[33] = static_cast<uint8_t>(K);
  store_le32(h + 36, static_cast<uint32_t>(map.classes.size()));
  uint8_t* t = h + kRansClassHeaderBytes;
  for (uint32_t k = 0; k < K; ++k) {
    store_le16(t, range[k].first);
    store_le16(t + 2, range[k].second);
    for (uint32_t i = 0; i < range[k].second; ++i) store_le16(t + 4 + size_t{2} * i, freq[k][range[k].first + i]);
    t += 4 + size_t{2} * range[k].second;
  }
  std::memcpy(h + classes_at, map.classes.data(), map.classes.size());
  append_chunks(symbols, &map, cs, prob_bits, table.data(), table_end, data_offset, out);
  return out;
}

}  // namespace codecllm::codec
