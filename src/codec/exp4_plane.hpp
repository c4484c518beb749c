// An exponent plane as fixed 4-bit codes, the coding built to be decoded inside the matmul:
// code c < 15 means exponent base + c, and 15 marks an escape, whose exponent is listed
// apart. Fifteen consecutive exponents hold all but about one weight in 4200 of pycode24M's
// matrices (one in 1250 of the random 8B shape, whose 0.1% of outliers sit 20x out), so a
// weight costs 4 + 8 (raw sign_mantissa) = 12.01-12.03 bits, and
// a GPU thread rebuilds 8 weights from one 32-bit word of codes and 8 sign_mantissa bytes with
// a few integer operations (cuda/exp4_kernel.cu), no table and no serial state.
//
// Payload layout (little-endian; docs/FORMAT.md, "Exp4 plane"):
//   Exp4PlaneHeader (32 bytes)
//   codes        ceil(symbols / 2) bytes, zero padded to a multiple of 16: element e's code is
//                the low nibble of byte e / 2 for even e, the high nibble for odd e
//   escape_end   uint32[num_blocks], padded to 16: one past the last escape of each block of
//                block_symbols elements, counted over the whole plane (non-decreasing)
//   escape_at    uint16[escapes], padded to 16: each escape's position inside its block,
//                strictly increasing within a block
//   escape_exp   uint8[escapes]: each escape's exponent byte
#pragma once

#include <cstdint>
#include <vector>

#include "codecllm/span.hpp"
#include "codec/freq_table.hpp"

namespace codecllm::codec {

constexpr uint32_t kExp4Magic = 0x31345845;  // "EX41"
constexpr uint32_t kExp4Escape = 15;         // the code of an escaped exponent
constexpr uint32_t kExp4Window = 15;         // exponents base .. base + 14 have codes
constexpr uint32_t kExp4BlockSymbols = 4096;

struct Exp4PlaneHeader {
  uint32_t magic;          // kExp4Magic
  uint32_t base;           // exponent of code 0; base + 14 <= 255
  uint64_t symbols;        // elements of the plane
  uint32_t block_symbols;  // elements per escape block: a multiple of 16, at most 65536
  uint32_t num_blocks;     // ceil(symbols / block_symbols)
  uint64_t escapes;        // escaped elements
};
static_assert(sizeof(Exp4PlaneHeader) == 32, "Exp4PlaneHeader must be 32 bytes");

// Where each part of a parsed payload lies, in bytes from the payload's start.
struct Exp4Layout {
  Exp4PlaneHeader header;
  uint64_t codes, escape_end, escape_at, escape_exp, total;
};

// The layout a header implies (no validation of the header itself).
Exp4Layout exp4_layout(const Exp4PlaneHeader& h);

// Encodes an exponent plane whose byte counts are `counts` (the window is placed where it
// holds the most elements). Always succeeds; callers keep the raw plane when it is smaller.
std::vector<uint8_t> exp4_encode(ByteSpan plane, const Histogram& counts);

// Parses and validates the header, the payload size and the escape table (escape_end
// non-decreasing and ending at `escapes`; escape_at inside its block and increasing), which
// is all a GPU kernel trusts. Throws FormatError prefixed with `what`.
Exp4Layout exp4_parse(ByteSpan payload, const char* what);

// Decodes the exponent bytes into out (out.size() == symbols), checking that every code 15
// has its escape and every escape its code 15. Throws FormatError prefixed with `what`.
void exp4_decode(ByteSpan payload, MutableByteSpan out, const char* what);

}  // namespace codecllm::codec
