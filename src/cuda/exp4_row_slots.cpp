#include "cuda/exp4_row_slots.hpp"

#include <algorithm>
#include <cmath>

#include "codecllm/bytes.hpp"

namespace codecllm::cuda {
namespace {

// At most an eighth of a row's length (at least 4): the table's words never outnumber the
// bytes of the tensor's codes, whatever a file's escapes (rows of 512 and more are not capped).
uint32_t slots_per_row(uint64_t escapes, uint64_t rows, uint64_t cols) {
  const double mean = double(escapes) / double(rows);
  const auto slots = static_cast<uint64_t>(std::ceil(mean + 3 * std::sqrt(mean) + 3));
  const uint64_t cap = std::max<uint64_t>(4, cols / 8 / 4 * 4);
  return static_cast<uint32_t>(std::min({uint64_t{kMaxSlotsPerRow}, cap, (slots + 3) / 4 * 4}));
}

}  // namespace

Exp4RowSlots exp4_row_slots(ByteSpan payload, const codec::Exp4Layout& l, uint64_t rows, uint64_t cols) {
  Exp4RowSlots t;
  const uint32_t block = l.header.block_symbols;
  // Positions are counted from a tile's origin and must stay below kRowOverflow >> 8.
  if (rows == 0 || cols == 0 || rows * cols != l.header.symbols ||
      uint64_t{kSkinnyRows} * cols + block >= (kRowOverflow >> 8))
    return t;
  t.per_row = slots_per_row(l.header.escapes, rows, cols);
  t.slots.assign(rows * t.per_row, kNoEscape);
  std::vector<uint32_t> used(rows, 0);
  uint64_t k = 0;  // entry of the lists, in element order
  for (uint64_t b = 0; b < l.header.num_blocks; ++b) {
    const uint64_t end = load_le32(payload.data() + l.escape_end + 4 * b);
    for (; k < end; ++k) {
      const uint64_t e = b * block + load_le16(payload.data() + l.escape_at + 2 * k);
      const uint64_t row = e / cols;  // below rows: exp4_parse keeps positions inside their block
      uint32_t* slots = t.slots.data() + row * t.per_row;
      const uint32_t n = used[row]++;
      if (n >= t.per_row) {
        slots[0] = kRowOverflow;
        continue;
      }
      const uint64_t position = e - exp4_tile_origin<uint64_t>(row, cols, block);
      slots[n] = static_cast<uint32_t>(position) << 8 | payload[l.escape_exp + k];
    }
  }
  return t;
}

}  // namespace codecllm::cuda
