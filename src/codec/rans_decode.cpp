// rANS plane decoder: the bit-exact reference for the GPU decoders.  The bitstream is
// specified in rans.hpp and docs/FORMAT.md ("rANS plane").  Every byte of the payload is
// untrusted: each read is bounds-checked (or covered by a check made before a loop), and any
// defect raises FormatError naming the chunk and what failed.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "codec/rans.hpp"
#include "codecllm/bytes.hpp"
#include "codecllm/error.hpp"

namespace codecllm::codec {
namespace {

constexpr uint64_t kHeaderBytes = sizeof(RansPlaneHeader);

[[noreturn]] void fail(const char* what, const std::string& msg) {
  throw FormatError(std::string(what != nullptr ? what : "rANS plane") + ": rANS " + msg);
}
[[noreturn]] void fail_chunk(const char* what, uint64_t c, const std::string& msg) {
  fail(what, "chunk " + std::to_string(c) + ": " + msg);
}

bool all_zero(const uint8_t* p, uint64_t n) {
  for (uint64_t i = 0; i < n; ++i)
    if (p[i] != 0) return false;
  return true;
}

// Slot -> symbol data for the decoder: x' = freq * (x >> p) + bias with bias = slot - cum.
// freq <= M <= 2^15 and bias < freq fit 16 bits each.
struct DecEntry {
  uint16_t freq;
  uint16_t bias;
};

// Decodes one chunk of n symbols from chunk[0, bytes) (validated by rans_parse_header:
// bytes >= 128, a multiple of 16, inside the payload) into out[0, n).
// With class tables, cls[i] (nullptr: 0) selects the table of symbol i: sym_of and entry hold
// one table of 2^prob_bits slots per class, back to back.
void decode_chunk(const uint8_t* chunk, uint64_t bytes, uint32_t n, uint32_t prob_bits, const uint8_t* sym_of,
                  const DecEntry* entry, const uint8_t* cls, uint8_t* out, uint64_t c, const char* what) {
  uint32_t x[kRansLanes];
  for (uint32_t lane = 0; lane < kRansLanes; ++lane) {
    x[lane] = load_le32(chunk + size_t{4} * lane);
    // The encoder leaves every state in [L, 2^32).  From a state below L a decode step could
    // reach 0, and one refill would no longer restore [L, 2^32): reject it up front.
    if (x[lane] < kRansL) {
      fail_chunk(
          what, c,
          "initial state of lane " + std::to_string(lane) + " is " + std::to_string(x[lane]) + ", below L = 65536");
    }
  }
  const uint8_t* words = chunk + kChunkStateBytes;
  const uint64_t avail = (bytes - kChunkStateBytes) / 2;  // words incl. padding; pos never passes it
  uint64_t pos = 0;
  const uint32_t mask = (1u << prob_bits) - 1;

  // One decode step, with x in [L, 2^32):  slot = x mod M identifies the symbol s (cum <= slot
  // < cum + freq) and x' = freq * (x / M) + slot - cum inverts the encoder exactly.
  // freq * (x >> p) <= freq * (2^(32-p) - 1) and slot - cum < freq, so x' < freq * 2^(32-p)
  // <= 2^32: no overflow.  x' >= freq * 2^(16-p) >= 1, so one 16-bit word brings an x' < L back
  // into [L, 2^32).  `checked` tests the word bound; the fast path relies on >= 32 words left.
  auto step = [&](uint32_t lane, uint8_t* o, bool checked) {
    uint32_t v = x[lane];
    const uint32_t slot = (v & mask) | (cls != nullptr ? uint32_t{cls[(o - out) + lane]} << prob_bits : 0);
    o[lane] = sym_of[slot];
    const DecEntry e = entry[slot];
    v = uint32_t{e.freq} * (v >> prob_bits) + e.bias;
    const bool refill = v < kRansL;
    if (checked) {
      if (refill) {
        if (pos >= avail) {
          fail_chunk(what, c,
                     "word stream exhausted at symbol " + std::to_string(static_cast<uint64_t>(o - out) + lane));
        }
        v = (v << 16) | load_le16(words + 2 * pos);
        ++pos;
      }
    } else {
      // Branch-free (refills are data dependent, so a branch mispredicts often): the word is
      // read either way (in bounds: >= 32 words were left at the start of this step) and
      // masked away unless refilling.  Arithmetic, not ?:, which compilers turn into a branch.
      const uint32_t r = refill;
      v = (v << (r << 4)) | (load_le16(words + 2 * pos) & (0u - r));
      pos += r;
    }
    x[lane] = v;
  };

  const uint32_t full_steps = n / kRansLanes;
  const uint32_t rest = n % kRansLanes;
  for (uint32_t s = 0; s < full_steps; ++s) {
    uint8_t* o = out + uint64_t{s} * kRansLanes;
    if (avail - pos >= kRansLanes) {
      for (uint32_t lane = 0; lane < kRansLanes; ++lane) step(lane, o, false);
    } else {
      for (uint32_t lane = 0; lane < kRansLanes; ++lane) step(lane, o, true);
    }
  }
  uint8_t* o = out + uint64_t{full_steps} * kRansLanes;
  for (uint32_t lane = 0; lane < rest; ++lane) step(lane, o, true);

  // Integrity: decoding ends exactly where encoding began (every state back at L) ...
  for (uint32_t lane = 0; lane < kRansLanes; ++lane) {
    if (x[lane] != kRansL) {
      fail_chunk(what, c,
                 "final state of lane " + std::to_string(lane) + " is " + std::to_string(x[lane]) +
                     ", expected L = 65536 (corrupt data)");
    }
  }
  // ... having consumed every word: only the zero padding to 16 bytes may remain.
  const uint64_t used = kChunkStateBytes + 2 * pos;
  if (align_up(used, 16) != bytes) {
    fail_chunk(
        what, c,
        "decoding consumed " + std::to_string(pos) + " words but the chunk has " + std::to_string(bytes) + " bytes");
  }
  if (!all_zero(chunk + used, bytes - used)) fail_chunk(what, c, "nonzero padding after words");
}

// The fields both layouts share (bytes 4..23): prob_bits in range, chunks of whole steps, and
// as many chunks as the symbols fill.
void check_common_header(uint32_t prob_bits, uint64_t total_symbols, uint32_t chunk_symbols, uint32_t num_chunks,
                         const char* what) {
  if (prob_bits < kMinProbBits || prob_bits > kMaxProbBits) {
    fail(what, "prob_bits " + std::to_string(prob_bits) + " out of range [8, 15]");
  }
  if (chunk_symbols == 0 || chunk_symbols % kRansLanes != 0) {
    fail(what, "chunk_symbols " + std::to_string(chunk_symbols) + " is not a positive multiple of 32");
  }
  if (num_chunks != total_symbols / chunk_symbols + (total_symbols % chunk_symbols != 0)) {
    fail(what, "num_chunks " + std::to_string(num_chunks) + " does not match " + std::to_string(total_symbols) +
                   " symbols in chunks of " + std::to_string(chunk_symbols));
  }
}

// Chunk data starts at the first 16-byte boundary after the chunk_end table, inside the payload.
uint64_t check_data_offset(uint64_t data_offset, uint64_t offsets_end, uint64_t size, const char* what) {
  const uint64_t data = align_up(offsets_end, 16);
  if (data_offset != data)
    fail(what, "data_offset " + std::to_string(data_offset) + " should be " + std::to_string(data));
  if (data > size) {
    fail(what,
         "payload of " + std::to_string(size) + " bytes ends inside its tables (" + std::to_string(data) + " bytes)");
  }
  return data;
}

// Chunks are contiguous from the data start, each a whole number of 16-byte units holding at
// least its 32 states and at most one word per symbol (the encoder's bound), and the last one
// ends exactly at the end of the payload.
void check_chunk_ends(const uint8_t* p, uint64_t size, uint64_t offsets, uint64_t data, uint64_t total_symbols,
                      uint32_t chunk_symbols, uint32_t num_chunks, const char* what) {
  uint64_t prev = 0;
  for (uint64_t c = 0; c < num_chunks; ++c) {
    const uint64_t end = load_le32(p + offsets + 4 * c);
    if (end % 16 != 0) fail_chunk(what, c, "end offset " + std::to_string(end) + " not aligned");
    if (end < prev + kChunkStateBytes) {
      fail_chunk(what, c, "end offset " + std::to_string(end) + " leaves no room for its states");
    }
    const uint64_t n = std::min<uint64_t>(chunk_symbols, total_symbols - c * chunk_symbols);
    const uint64_t max_bytes = kChunkStateBytes + align_up(2 * n, 16);
    if (end - prev > max_bytes) {
      fail_chunk(
          what, c,
          std::to_string(end - prev) + " bytes exceed the " + std::to_string(max_bytes) + " its symbols can produce");
    }
    if (data + end > size) {
      fail_chunk(what, c,
                 "ends at " + std::to_string(data + end) + ", past the payload (" + std::to_string(size) + " bytes)");
    }
    prev = end;
  }
  if (data + prev != size) {
    fail(what, "payload of " + std::to_string(size) + " bytes has " + std::to_string(size - data - prev) +
                   " bytes after the last chunk");
  }
}

}  // namespace

RansPlaneHeader rans_parse_header(ByteSpan payload, const char* what) {
  const uint8_t* p = payload.data();
  const uint64_t size = payload.size();
  if (size < kHeaderBytes) {
    fail(what, "payload of " + std::to_string(size) + " bytes is shorter than its header");
  }
  RansPlaneHeader h{};
  h.magic = load_le32(p + 0);
  h.prob_bits = load_le32(p + 4);
  h.total_symbols = load_le64(p + 8);
  h.chunk_symbols = load_le32(p + 16);
  h.num_chunks = load_le32(p + 20);
  h.min_symbol = static_cast<uint16_t>(load_le16(p + 24));
  h.num_symbols = static_cast<uint16_t>(load_le16(p + 26));
  h.data_offset = load_le32(p + 28);

  if (h.magic != kRansMagic) fail(what, "bad magic " + std::to_string(h.magic));
  check_common_header(h.prob_bits, h.total_symbols, h.chunk_symbols, h.num_chunks, what);
  if (h.num_symbols == 0 || h.num_symbols > 256 || h.min_symbol + h.num_symbols > 256) {
    fail(what, "symbol range [" + std::to_string(h.min_symbol) + ", +" + std::to_string(h.num_symbols) +
                   ") is not within the bytes");
  }
  const uint64_t table_end = kHeaderBytes + 2 * uint64_t{h.num_symbols};
  const uint64_t offsets = rans_chunk_ends_offset(h);
  const uint64_t offsets_end = offsets + 4 * uint64_t{h.num_chunks};
  const uint64_t data = check_data_offset(h.data_offset, offsets_end, size, what);

  // The frequencies must tile [0, M) exactly: every slot then maps to one symbol.  Each entry
  // is <= the sum, so a sum of M also bounds the entries; zero entries (absent symbols inside
  // the range) are allowed.
  uint32_t sum = 0;
  for (uint32_t i = 0; i < h.num_symbols; ++i) sum += load_le16(p + kHeaderBytes + size_t{2} * i);
  if (sum != (1u << h.prob_bits)) {
    fail(what, "frequencies sum to " + std::to_string(sum) + ", not 2^" + std::to_string(h.prob_bits));
  }
  if (!all_zero(p + table_end, offsets - table_end) || !all_zero(p + offsets_end, data - offsets_end)) {
    fail(what, "nonzero header padding");
  }

  check_chunk_ends(p, size, offsets, data, h.total_symbols, h.chunk_symbols, h.num_chunks, what);
  return h;
}

// The chunk_end table follows the frequency table and its padding.
uint64_t rans_chunk_ends_offset(const RansPlaneHeader& h) {
  return align_up(kHeaderBytes + 2 * uint64_t{h.num_symbols}, 4);
}

std::vector<uint32_t> rans_frequencies(ByteSpan payload, const RansPlaneHeader& h) {
  std::vector<uint32_t> freq(h.num_symbols);
  for (uint32_t i = 0; i < h.num_symbols; ++i) freq[i] = load_le16(payload.data() + kHeaderBytes + 2 * size_t{i});
  return freq;
}

void ClassMap::tables_of(uint64_t first, uint64_t n, uint8_t* out) const {
  for (uint64_t g = first; g < first + n;) {  // runs of one row at a time
    const uint64_t run = std::min<uint64_t>(first + n, (g / cols + 1) * cols) - g;
    if (axis == ClassAxis::Rows) {
      std::memset(out + (g - first), classes[g / cols], run);
    } else {
      std::memcpy(out + (g - first), classes.data() + g % cols, run);
    }
    g += run;
  }
}

bool rans_is_class_plane(ByteSpan payload) {
  return payload.size() >= 4 && load_le32(payload.data()) == kRansClassMagic;
}

RansClassPlane rans_parse_class_plane(ByteSpan payload, const char* what) {
  const uint8_t* p = payload.data();
  const uint64_t size = payload.size();
  if (size < kRansClassHeaderBytes) {
    fail(what, "class-table payload of " + std::to_string(size) + " bytes is shorter than its header");
  }
  RansClassPlane h;
  if (load_le32(p) != kRansClassMagic) fail(what, "bad magic " + std::to_string(load_le32(p)));
  h.prob_bits = load_le32(p + 4);
  h.total_symbols = load_le64(p + 8);
  h.chunk_symbols = load_le32(p + 16);
  h.num_chunks = load_le32(p + 20);
  h.map.cols = load_le32(p + 24);
  h.data_offset = load_le32(p + 28);
  const uint8_t axis = p[32];
  h.map.num_tables = p[33];
  const uint64_t entries = load_le32(p + 36);
  check_common_header(h.prob_bits, h.total_symbols, h.chunk_symbols, h.num_chunks, what);
  if (axis > 1 || p[34] != 0 || p[35] != 0) fail(what, "class axis " + std::to_string(axis) + " unknown");
  h.map.axis = static_cast<ClassAxis>(axis);
  if (h.map.num_tables < 2 || h.map.num_tables > kMaxClassTables) {
    fail(what, std::to_string(h.map.num_tables) + " class tables, expected 2.." + std::to_string(kMaxClassTables));
  }
  if (h.map.cols == 0 || h.total_symbols % h.map.cols != 0) {
    fail(what, std::to_string(h.total_symbols) + " symbols are not rows of " + std::to_string(h.map.cols));
  }
  if (entries != (h.map.axis == ClassAxis::Rows ? h.total_symbols / h.map.cols : h.map.cols)) {
    fail(what, std::to_string(entries) + " class ids do not match the plane's rows or columns");
  }
  // Tables: each a uint16 min_symbol, a uint16 count and count uint16 frequencies summing to M.
  uint64_t at = kRansClassHeaderBytes;
  h.freqs.assign(h.map.num_tables, std::vector<uint32_t>(256, 0));
  for (uint32_t k = 0; k < h.map.num_tables; ++k) {
    if (at + 4 > size) fail(what, "class table " + std::to_string(k) + " runs past the payload");
    const uint32_t lo = load_le16(p + at), n = load_le16(p + at + 2);
    if (n == 0 || lo + n > 256) fail(what, "class table " + std::to_string(k) + ": symbol range outside the bytes");
    if (at + 4 + 2 * uint64_t{n} > size) fail(what, "class table " + std::to_string(k) + " runs past the payload");
    uint32_t sum = 0;
    for (uint32_t i = 0; i < n; ++i) sum += h.freqs[k][lo + i] = load_le16(p + at + 4 + size_t{2} * i);
    if (sum != (1u << h.prob_bits)) {
      fail(what, "class table " + std::to_string(k) + ": frequencies sum to " + std::to_string(sum) + ", not 2^" +
                     std::to_string(h.prob_bits));
    }
    at += 4 + 2 * uint64_t{n};
  }
  if (at + entries > size) fail(what, "class ids run past the payload");
  h.classes_offset = at;
  h.map.classes.assign(p + at, p + at + entries);
  for (uint8_t k : h.map.classes)
    if (k >= h.map.num_tables) fail(what, "class id " + std::to_string(k) + " names no table");
  const uint64_t ids_end = at + entries;
  h.chunk_ends_offset = align_up(ids_end, 4);
  const uint64_t offsets_end = h.chunk_ends_offset + 4 * uint64_t{h.num_chunks};
  const uint64_t data = check_data_offset(h.data_offset, offsets_end, size, what);
  if (!all_zero(p + ids_end, h.chunk_ends_offset - ids_end) || !all_zero(p + offsets_end, data - offsets_end)) {
    fail(what, "nonzero header padding");
  }
  check_chunk_ends(p, size, h.chunk_ends_offset, data, h.total_symbols, h.chunk_symbols, h.num_chunks, what);
  return h;
}

namespace {

// Slot tables of one frequency table (symbol-indexed, summing to M: they cover [0, M) exactly).
void fill_slots(const uint32_t* freq_of_symbol, uint32_t first_symbol, uint32_t count, uint8_t* sym_of,
                DecEntry* entry) {
  uint32_t cum = 0;
  for (uint32_t i = 0; i < count; ++i) {
    const uint32_t f = freq_of_symbol[i];
    for (uint32_t k = 0; k < f; ++k) {
      sym_of[cum + k] = static_cast<uint8_t>(first_symbol + i);
      entry[cum + k] = DecEntry{static_cast<uint16_t>(f), static_cast<uint16_t>(k)};
    }
    cum += f;
  }
}

void check_output(uint64_t symbols, uint64_t room, const char* what) {
  if (room != symbols) {
    fail(what, "plane holds " + std::to_string(symbols) + " symbols, output has room for " + std::to_string(room));
  }
}

// Decodes every chunk of a validated payload. With a class map, sym_of and entry hold one table
// per class and each chunk's symbols get their tables spelled out first (chunk-sized scratch).
void decode_chunks(ByteSpan payload, uint64_t data_offset, uint64_t ends_offset, uint64_t total, uint32_t cs,
                   uint32_t num_chunks, uint32_t prob_bits, const uint8_t* sym_of, const DecEntry* entry,
                   const ClassMap* map, MutableByteSpan out, const char* what) {
  const uint8_t* p = payload.data();
  std::vector<uint8_t> cls(map != nullptr ? std::min<uint64_t>(cs, total) : 0);
  uint64_t start = 0;
  for (uint64_t c = 0; c < num_chunks; ++c) {
    const uint64_t end = load_le32(p + ends_offset + 4 * c);
    const uint64_t first = c * cs;
    const auto n = static_cast<uint32_t>(std::min<uint64_t>(cs, total - first));
    if (map != nullptr) map->tables_of(first, n, cls.data());
    decode_chunk(p + data_offset + start, end - start, n, prob_bits, sym_of, entry,
                 map != nullptr ? cls.data() : nullptr, out.data() + first, c, what);
    start = end;
  }
}

void decode_class_plane(ByteSpan payload, MutableByteSpan out, const char* what) {
  const RansClassPlane h = rans_parse_class_plane(payload, what);
  check_output(h.total_symbols, out.size(), what);
  const uint32_t M = 1u << h.prob_bits, K = h.map.num_tables;
  std::vector<uint8_t> sym_of(size_t{K} * M);
  std::vector<DecEntry> entry(size_t{K} * M);
  for (uint32_t k = 0; k < K; ++k) fill_slots(h.freqs[k].data(), 0, 256, &sym_of[size_t{k} * M], &entry[size_t{k} * M]);
  decode_chunks(payload, h.data_offset, h.chunk_ends_offset, h.total_symbols, h.chunk_symbols, h.num_chunks,
                h.prob_bits, sym_of.data(), entry.data(), &h.map, out, what);
}

}  // namespace

void rans_decode(ByteSpan payload, MutableByteSpan out, const char* what) {
  if (rans_is_class_plane(payload)) return decode_class_plane(payload, out, what);
  const RansPlaneHeader h = rans_parse_header(payload, what);
  check_output(h.total_symbols, out.size(), what);
  const uint32_t M = 1u << h.prob_bits;
  std::vector<uint8_t> sym_of(M);
  std::vector<DecEntry> entry(M);
  const std::vector<uint32_t> freq = rans_frequencies(payload, h);
  fill_slots(freq.data(), h.min_symbol, h.num_symbols, sym_of.data(), entry.data());
  decode_chunks(payload, h.data_offset, rans_chunk_ends_offset(h), h.total_symbols, h.chunk_symbols, h.num_chunks,
                h.prob_bits, sym_of.data(), entry.data(), nullptr, out, what);
}

}  // namespace codecllm::codec
