// An Exp4 tensor's escapes regrouped by row, for the products (exp4_kernel.cu): built on the
// host when a decoder is made, once, from the escape lists every coded file carries, and kept in
// device memory beside the weights (a few bytes a row: 0.13 bit a weight on the random 8B shape).
//
// Why: a product needs the escapes of the rows it multiplies before it can rebuild them. Read
// from the lists, that is two dependent trips to memory (a block's list end, then its entries) at
// the start of every row (batch 1) or tile (batches 2-8); read from this table it is one, of
// fixed size, issued beside a row's first loads (GEMV) or before the wait for the previous
// kernel (batched product). Measured on the H200 (docs/BENCHMARKS.md).
//
// Layout: row r's slots are slots[r * per_row .. (r + 1) * per_row), its escapes first, in
// element order, each (element - origin) << 8 | exponent, where origin (exp4_tile_origin) is
// the start of the escape block holding the first element of r's 16-row tile; then kNoEscape. A
// row with more escapes than slots has kRowOverflow in its first slot: the products read the
// escapes of that row (GEMV) or of its tile (batched product) from the lists, as before.
#pragma once

#include <cstdint>
#include <vector>

#include "codec/exp4_plane.hpp"
#include "codecllm/span.hpp"
#include "cuda/skinny_gemm.hpp"

namespace codecllm::cuda {

constexpr uint32_t kNoEscape = 0xFFFFFFFFu;     // an unused slot: position 0xFFFFFF, never a row's
constexpr uint32_t kRowOverflow = 0xFFFFFFFEu;  // first slot of a row whose escapes do not fit
constexpr uint32_t kMaxSlotsPerRow = 64;        // the most a product warp stages for one row

// Where the positions of a tile's entries count from: the start of the escape block that holds
// the tile's first element, so that a position also finds its block in the lists (a product's
// rare path). Tiles are the batched product's: kSkinnyRows rows.
// U: uint64_t on the host, uint32_t in the products (tensors of fewer than 2^32 elements, where a
// 32-bit division is a dozen instructions and a 64-bit one a call).
template <typename U>
constexpr U exp4_tile_origin(U row, U cols, uint32_t block_symbols) {
  return row / kSkinnyRows * kSkinnyRows * cols / block_symbols * block_symbols;
}

struct Exp4RowSlots {
  uint32_t per_row = 0;  // 0: no table (the tensor's shape does not allow one)
  std::vector<uint32_t> slots;
};

// The table of a tensor of `rows` x `cols` elements whose exponent plane payload is `payload`,
// parsed and validated as `l`. Slots a row: about the mean escapes a row plus three standard
// deviations (a Poisson count), a multiple of 4, at most kMaxSlotsPerRow and at most an eighth
// of the row (at least 4); none for rows so long that a tile's positions pass 24 bits.
Exp4RowSlots exp4_row_slots(ByteSpan payload, const codec::Exp4Layout& l, uint64_t rows, uint64_t cols);

}  // namespace codecllm::cuda
