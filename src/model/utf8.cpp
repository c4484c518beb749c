#include "model/utf8.hpp"

namespace codecllm::model::utf8 {
namespace {

// Lead-byte forms of the multi-byte sequences: lead & mask == lead bits, then len - 1
// continuation bytes; values below `min` are overlong encodings.
struct Form {
  uint8_t mask, bits;
  size_t len;
  uint32_t min;
};
constexpr Form kForms[] = {{0xE0, 0xC0, 2, 0x80}, {0xF0, 0xE0, 3, 0x800}, {0xF8, 0xF0, 4, 0x10000}};

// Length of the well-formed character at s[i] with its value in *cp, or 0 when ill-formed
// (bad lead byte, truncated, overlong, surrogate or beyond U+10FFFF).
size_t parse(std::string_view s, size_t i, uint32_t* cp) {
  const auto byte = [&](size_t k) { return static_cast<uint8_t>(s[i + k]); };
  if (byte(0) < 0x80) {
    *cp = byte(0);
    return 1;
  }
  for (const Form& f : kForms) {
    if ((byte(0) & f.mask) != f.bits) continue;
    if (s.size() - i < f.len) return 0;
    uint32_t v = byte(0) & static_cast<uint8_t>(~f.mask);
    for (size_t k = 1; k < f.len; ++k) {
      if ((byte(k) & 0xC0) != 0x80) return 0;
      v = v << 6 | (byte(k) & 0x3Fu);
    }
    if (v < f.min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return f.len;
  }
  return 0;
}

}  // namespace

size_t char_len(std::string_view s, size_t i) {
  uint32_t cp = 0;
  const size_t len = parse(s, i, &cp);
  return len == 0 ? 1 : len;
}

uint32_t decode(std::string_view s, size_t i) {
  uint32_t cp = 0;
  return parse(s, i, &cp) == 0 ? kInvalid : cp;
}

void append(std::string* out, uint32_t cp) {
  const auto put = [&](uint32_t b) { out->push_back(static_cast<char>(b)); };
  if (cp < 0x80) {
    put(cp);
    return;
  }
  const size_t len = cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
  put(kForms[len - 2].bits | cp >> (6 * (len - 1)));
  for (size_t k = len - 1; k-- > 0;) put(0x80 | (cp >> (6 * k) & 0x3F));
}

}  // namespace codecllm::model::utf8
