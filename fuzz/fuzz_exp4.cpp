// libFuzzer target: arbitrary bytes as an exp4 plane payload. The parser and decoder must reject
// or decode every input without reading outside it (ASan) or undefined behaviour (UBSan); an
// escape table the parser accepts must be what the GPU kernels trust (every block's escapes
// inside the list, positions inside the block and increasing); the escapes by row the GPU
// products read (cuda/exp4_row_slots.hpp), built from an accepted payload for a few row
// lengths, must list each row's escapes in order inside the row; and a decoded plane must code
// and decode back to itself. Seeds: fuzz/corpus/exp4/ (small payloads written by exp4_encode).
#include <cstddef>
#include <cstdint>
#include <vector>

#include "codec/exp4_plane.hpp"
#include "codec/freq_table.hpp"
#include "codecllm/bytes.hpp"
#include "codecllm/error.hpp"
#include "cuda/exp4_row_slots.hpp"

using codecllm::ByteSpan;
using codecllm::FormatError;
namespace codec = codecllm::codec;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const ByteSpan payload(data, size);
  codec::Exp4Layout l;
  try {
    l = codec::exp4_parse(payload, "fuzz");
  } catch (const FormatError&) {
    return 0;
  }
  const codec::Exp4PlaneHeader& h = l.header;
  uint64_t prev = 0;
  for (uint64_t b = 0; b < h.num_blocks; ++b) {  // what the kernels read without checking
    const uint64_t end = codecllm::load_le32(data + l.escape_end + 4 * b);
    if (end < prev || end > h.escapes || l.escape_at + 2 * end > size || l.escape_exp + end > size) __builtin_trap();
    for (uint64_t k = prev; k < end; ++k)
      if (codecllm::load_le16(data + l.escape_at + 2 * k) >= h.block_symbols) __builtin_trap();
    prev = end;
  }
  if (h.symbols > (uint64_t{1} << 22)) return 0;  // keep allocations small
  for (const uint64_t cols : {uint64_t{1}, uint64_t{64}, uint64_t{200}, h.symbols}) {
    if (cols == 0 || h.symbols % cols != 0) continue;
    const uint64_t rows = h.symbols / cols;
    const codecllm::cuda::Exp4RowSlots t = codecllm::cuda::exp4_row_slots(payload, l, rows, cols);
    if (t.per_row == 0) continue;
    if (t.slots.size() != rows * t.per_row) __builtin_trap();
    for (uint64_t r = 0; r < rows; ++r) {
      const uint32_t* slots = t.slots.data() + r * t.per_row;
      if (slots[0] == codecllm::cuda::kRowOverflow) continue;
      const uint64_t origin = codecllm::cuda::exp4_tile_origin<uint64_t>(r, cols, h.block_symbols);
      uint64_t last = 0;
      for (uint32_t k = 0; k < t.per_row && slots[k] != codecllm::cuda::kNoEscape; ++k) {
        const uint64_t e = origin + (slots[k] >> 8);
        if (e < r * cols || e >= (r + 1) * cols || (k > 0 && e <= last)) __builtin_trap();
        last = e;
      }
    }
  }
  std::vector<uint8_t> out(h.symbols);
  try {
    codec::exp4_decode(payload, out, "fuzz");
  } catch (const FormatError&) {
    return 0;
  }
  const std::vector<uint8_t> again = codec::exp4_encode(out, codec::histogram(out));
  std::vector<uint8_t> back(out.size());
  codec::exp4_decode(again, back, "fuzz re-encode");  // throws (and aborts) if inconsistent
  if (back != out) __builtin_trap();
  return 0;
}
