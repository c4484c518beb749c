#include "model/byte_level.hpp"

#include <array>

#include "model/utf8.hpp"

namespace codecllm::model {
namespace {

struct Table {
  std::array<uint32_t, 256> char_of{};  // byte -> code point
  std::array<int, 324> byte_of{};       // code point -> byte, -1 when none (all are < 324)

  Table() {
    byte_of.fill(-1);
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      char_of[b] = printable ? b : next++;
      byte_of[char_of[b]] = static_cast<int>(b);
    }
  }
};

const Table& table() {
  static const Table t;
  return t;
}

}  // namespace

std::string byte_level_encode(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const char b : bytes) utf8::append(&out, table().char_of[static_cast<uint8_t>(b)]);
  return out;
}

std::string byte_level_decode(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size();) {
    const size_t len = utf8::char_len(text, i);
    const uint32_t cp = utf8::decode(text, i);
    if (cp < table().byte_of.size() && table().byte_of[cp] >= 0) {
      out += static_cast<char>(table().byte_of[cp]);
    } else {
      out.append(text.substr(i, len));
    }
    i += len;
  }
  return out;
}

}  // namespace codecllm::model
