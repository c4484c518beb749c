// Chunked, 32-way interleaved rANS over bytes, laid out so that one GPU warp decodes one chunk
// in lock step (one state per lane) and the CPU decoder is the bit-exact reference.
//
// Parameters (all fixed by this file, recorded per plane in the payload header):
//   state x: 32 bits, normalized interval [L, 2^32) with L = 2^16; I/O unit: 16-bit words,
//   so decoding one symbol needs at most one word.  Probabilities are quantized to a total
//   M = 2^prob_bits (prob_bits in [kMinProbBits, kMaxProbBits]); every present symbol gets a
//   frequency >= 1.
//
// Symbol i of a chunk (0 <= i < n) belongs to lane i % 32 and to step i / 32.  The decoder
// runs steps in order; within a step lanes decode in lane order and those whose state fell
// below L read the next word of the chunk's word stream, in lane order.  Each chunk starts
// with the 32 initial decoder states; after the last step every state must equal L again
// and every word must have been consumed: that is the per-chunk integrity check.
//
// Payload layout of one rANS plane (little-endian; docs/FORMAT.md, "rANS plane"):
//   RansPlaneHeader (32 bytes)
//   uint16 freq[num_symbols]           dense, for symbols min_symbol .. min_symbol+num_symbols-1
//   zero padding to a multiple of 4 bytes
//   uint32 chunk_end[num_chunks]       byte offset of each chunk's end, relative to data start
//   zero padding to a multiple of 16 bytes -> data start
//   chunks: uint32 state[32], uint16 words[...], zero padding to a multiple of 16 bytes
#pragma once

#include <cstdint>
#include <vector>

#include "codec/freq_table.hpp"
#include "codecllm/span.hpp"

namespace codecllm::codec {

constexpr uint32_t kRansLanes = 32;
constexpr uint32_t kChunkStateBytes = 4 * kRansLanes;  // uint32 state[32] at the start of a chunk
constexpr uint32_t kRansL = 1u << 16;
constexpr uint32_t kMinProbBits = 8;
constexpr uint32_t kMaxProbBits = 15;
constexpr uint32_t kDefaultChunkSymbols = 1u << 17;  // docs/FORMAT.md: size vs GPU parallelism
// The Python package's default (docs/FORMAT.md, "Chunk size"): its blocks decode in one launch
// each inside a framework's forward, and its fused products run a warp per chunk, so it trades
// ~2% of an exponent plane's size for eight times the warps.
constexpr uint32_t kStreamingChunkSymbols = 1u << 14;
constexpr uint32_t kDefaultProbBits = 13;            // docs/FORMAT.md: size vs GPU table size
constexpr uint32_t kRansMagic = 0x31534E52;          // "RNS1"

struct RansPlaneHeader {
  uint32_t magic;          // kRansMagic
  uint32_t prob_bits;      // M = 2^prob_bits
  uint64_t total_symbols;  // decoded bytes of the plane
  uint32_t chunk_symbols;  // symbols per chunk; the last chunk may hold fewer (never 0)
  uint32_t num_chunks;     // ceil(total_symbols / chunk_symbols); 0 when total_symbols == 0
  uint16_t min_symbol;     // first symbol with a frequency entry
  uint16_t num_symbols;    // 1..256 entries in the dense frequency table
  uint32_t data_offset;    // byte offset of the chunk data from the start of the payload
};
static_assert(sizeof(RansPlaneHeader) == 32, "RansPlaneHeader must be 32 bytes");

struct RansOptions {
  uint32_t chunk_symbols = kDefaultChunkSymbols;
  uint32_t prob_bits = 0;  // 0: kDefaultProbBits
};

// Encodes a byte plane.  Always succeeds; callers compare the size with the raw size and
// store the plane raw when coding does not pay.
std::vector<uint8_t> rans_encode(ByteSpan symbols, const RansOptions& options = {});
// The same, with the symbol counts the caller already has (histogram(symbols) exactly).
std::vector<uint8_t> rans_encode(ByteSpan symbols, const RansOptions& options, const Histogram& symbol_counts);

// Parses and validates a payload header (sizes, table sums, chunk offsets within the
// payload).  Throws FormatError describing the defect, prefixed with `what`.
RansPlaneHeader rans_parse_header(ByteSpan payload, const char* what);

// Of a payload that rans_parse_header accepted: the frequency of symbol min_symbol + i for
// each of its num_symbols entries, and the byte offset of its chunk_end table.
std::vector<uint32_t> rans_frequencies(ByteSpan payload, const RansPlaneHeader& h);
uint64_t rans_chunk_ends_offset(const RansPlaneHeader& h);

// Decodes a whole plane into out (out.size() must equal total_symbols).  Throws FormatError
// (prefixed with `what`) on any malformed header, out-of-range read, or failed final-state
// check; never reads or writes outside the given spans.  Accepts both layouts (RNS1, RNS2).
void rans_decode(ByteSpan payload, MutableByteSpan out, const char* what);

// ---- Class tables ("RNS2", docs/FORMAT.md "rANS plane with class tables") ----
// The plane is a matrix of `cols` columns, and its rows (or columns) fall into classes whose
// symbol statistics differ (token rows of an embedding of different scales, hidden channels
// of an output head): each class gets its own frequency table, and symbol g is coded with
// table classes[axis == Rows ? g / cols : g % cols].  Chunks, lanes, states and words are
// exactly as in RNS1; only the table of each step differs per symbol.
constexpr uint32_t kRansClassMagic = 0x32534E52;  // "RNS2"
constexpr uint32_t kMaxClassTables = 16;
constexpr uint32_t kRansClassHeaderBytes = 40;

enum class ClassAxis : uint8_t { Rows = 0, Columns = 1 };

struct ClassMap {
  ClassAxis axis = ClassAxis::Rows;
  uint32_t cols = 0;             // row length; total_symbols is a multiple of it
  uint32_t num_tables = 0;       // 2 .. kMaxClassTables
  std::vector<uint8_t> classes;  // one per row (Rows) or column (Columns), each < num_tables

  // out[i] = the table of plane symbol first + i, for i < n: classes[g / cols] (Rows) or
  // classes[g % cols] (Columns).
  void tables_of(uint64_t first, uint64_t n, uint8_t* out) const;
};

// A class-table payload, parsed and validated (sizes, each table summing to M, class ids in
// range, chunk offsets inside the payload).
struct RansClassPlane {
  uint32_t prob_bits = 0;
  uint64_t total_symbols = 0;
  uint32_t chunk_symbols = 0;
  uint32_t num_chunks = 0;
  uint32_t data_offset = 0;
  uint64_t classes_offset = 0;     // byte offset of map.classes in the payload
  uint64_t chunk_ends_offset = 0;  // byte offset of uint32 chunk_end[num_chunks]
  ClassMap map;
  std::vector<std::vector<uint32_t>> freqs;  // per table, 256 entries indexed by symbol
};

// Encodes `symbols` (total a multiple of map.cols) with one normalized table per class.
std::vector<uint8_t> rans_encode_classes(ByteSpan symbols, const RansOptions& options, const ClassMap& map);
bool rans_is_class_plane(ByteSpan payload);
RansClassPlane rans_parse_class_plane(ByteSpan payload, const char* what);

}  // namespace codecllm::codec
