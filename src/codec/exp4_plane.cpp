#include "codec/exp4_plane.hpp"

#include <cstring>
#include <string>

#include "codecllm/bytes.hpp"
#include "codecllm/error.hpp"

namespace codecllm::codec {
namespace {

[[noreturn]] void fail(const char* what, const std::string& why) {
  throw FormatError(std::string(what) + ": exp4 plane: " + why);
}

// The window of kExp4Window exponents that holds the most elements (the lowest such base).
uint32_t best_base(const Histogram& counts) {
  uint64_t held = 0;
  for (uint32_t e = 0; e < kExp4Window; ++e) held += counts[e];
  uint64_t best = held;
  uint32_t base = 0;
  for (uint32_t b = 1; b + kExp4Window <= 256; ++b) {
    held += counts[b + kExp4Window - 1] - counts[b - 1];
    if (held > best) {
      best = held;
      base = b;
    }
  }
  return base;
}

void write_header(uint8_t* p, const Exp4PlaneHeader& h) {
  store_le32(p, h.magic);
  store_le32(p + 4, h.base);
  store_le64(p + 8, h.symbols);
  store_le32(p + 16, h.block_symbols);
  store_le32(p + 20, h.num_blocks);
  store_le64(p + 24, h.escapes);
}

}  // namespace

Exp4Layout exp4_layout(const Exp4PlaneHeader& h) {
  Exp4Layout l{};
  l.header = h;
  l.codes = sizeof(Exp4PlaneHeader);
  l.escape_end = l.codes + align_up((h.symbols + 1) / 2, 16);
  l.escape_at = l.escape_end + align_up(4 * uint64_t{h.num_blocks}, 16);
  l.escape_exp = l.escape_at + align_up(2 * h.escapes, 16);
  l.total = l.escape_exp + h.escapes;
  return l;
}

std::vector<uint8_t> exp4_encode(ByteSpan plane, const Histogram& counts) {
  const uint64_t n = plane.size();
  const uint32_t base = best_base(counts);
  uint64_t escapes = n;
  for (uint32_t e = base; e < base + kExp4Window; ++e) escapes -= counts[e];
  const uint64_t blocks = (n + kExp4BlockSymbols - 1) / kExp4BlockSymbols;
  if (blocks > UINT32_MAX) throw Error("exp4 plane: too many elements");
  const Exp4Layout l = exp4_layout({kExp4Magic, base, n, kExp4BlockSymbols, uint32_t(blocks), escapes});
  std::vector<uint8_t> out(l.total, 0);
  write_header(out.data(), l.header);
  uint8_t* codes = out.data() + l.codes;
  uint64_t k = 0;  // escapes written
  for (uint64_t b = 0; b < blocks; ++b) {
    const uint64_t first = b * kExp4BlockSymbols, end = std::min<uint64_t>(n, first + kExp4BlockSymbols);
    for (uint64_t e = first; e < end; ++e) {
      const uint32_t x = plane[e];
      uint32_t code = x - base;  // wraps for x < base: escaped below
      if (code >= kExp4Window) {
        code = kExp4Escape;
        store_le16(out.data() + l.escape_at + 2 * k, uint32_t(e - first));
        out[l.escape_exp + k] = uint8_t(x);
        ++k;
      }
      codes[e / 2] |= uint8_t(code << (4 * (e % 2)));
    }
    store_le32(out.data() + l.escape_end + 4 * b, uint32_t(k));
  }
  return out;
}

Exp4Layout exp4_parse(ByteSpan payload, const char* what) {
  if (payload.size() < sizeof(Exp4PlaneHeader)) fail(what, "payload shorter than its header");
  const uint8_t* p = payload.data();
  Exp4PlaneHeader h{load_le32(p), load_le32(p + 4), load_le64(p + 8), load_le32(p + 16), load_le32(p + 20),
                    load_le64(p + 24)};
  if (h.magic != kExp4Magic) fail(what, "bad magic");
  if (h.base + kExp4Window > 256) fail(what, "base exponent " + std::to_string(h.base) + " leaves the byte range");
  if (h.block_symbols == 0 || h.block_symbols % 16 != 0 || h.block_symbols > 65536)
    fail(what, "block size " + std::to_string(h.block_symbols) + " is not a multiple of 16 up to 65536");
  if (h.symbols > (uint64_t{1} << 48)) fail(what, "implausible symbol count");
  if (h.num_blocks != (h.symbols + h.block_symbols - 1) / h.block_symbols) fail(what, "block count does not match");
  if (h.escapes > h.symbols) fail(what, "more escapes than symbols");
  const Exp4Layout l = exp4_layout(h);
  if (l.total != payload.size())
    fail(what, "payload is " + std::to_string(payload.size()) + " bytes, its header implies " + std::to_string(l.total));
  uint64_t prev = 0;
  for (uint32_t b = 0; b < h.num_blocks; ++b) {
    const uint64_t end = load_le32(p + l.escape_end + 4 * uint64_t{b});
    const uint64_t block_len = std::min<uint64_t>(h.block_symbols, h.symbols - uint64_t{b} * h.block_symbols);
    if (end < prev || end > h.escapes || end - prev > block_len) fail(what, "escape table is inconsistent");
    for (uint64_t k = prev; k < end; ++k) {
      const uint32_t at = load_le16(p + l.escape_at + 2 * k);
      if (at >= block_len || (k > prev && at <= load_le16(p + l.escape_at + 2 * (k - 1))))
        fail(what, "escape positions are out of order or outside their block");
    }
    prev = end;
  }
  if (prev != h.escapes) fail(what, "escape table does not end at the escape count");
  return l;
}

void exp4_decode(ByteSpan payload, MutableByteSpan out, const char* what) {
  const Exp4Layout l = exp4_parse(payload, what);
  const Exp4PlaneHeader& h = l.header;
  if (out.size() != h.symbols) fail(what, "decoded size differs from the plane's");
  const uint8_t* p = payload.data();
  uint64_t k = 0;  // next escape
  for (uint64_t b = 0; b < h.num_blocks; ++b) {
    const uint64_t first = b * h.block_symbols, end = std::min<uint64_t>(h.symbols, first + h.block_symbols);
    const uint64_t escapes_end = load_le32(p + l.escape_end + 4 * b);
    for (uint64_t e = first; e < end; ++e) {
      const uint32_t code = (p[l.codes + e / 2] >> (4 * (e % 2))) & 0xF;
      if (code != kExp4Escape) {
        out[e] = uint8_t(h.base + code);
        continue;
      }
      if (k == escapes_end || load_le16(p + l.escape_at + 2 * k) != e - first)
        fail(what, "element " + std::to_string(e) + " is escaped but has no escape entry");
      out[e] = p[l.escape_exp + k++];
    }
    if (k != escapes_end) fail(what, "block " + std::to_string(b) + " lists escapes its codes do not mark");
  }
}

}  // namespace codecllm::codec
