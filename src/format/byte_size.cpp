#include "codecllm/byte_size.hpp"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <limits>

#include "codecllm/error.hpp"

namespace codecllm {

std::string human_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024.0 && u < 4) {
    bytes /= 1024.0;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.2f %s", bytes, units[u]);
  return buf;
}

namespace {

[[noreturn]] void reject(const std::string& text, const std::string& why) {
  throw Error("invalid byte size \"" + text + "\": " + why);
}

// log2 of the unit's multiplier; -1 when the suffix is not a unit.
int unit_shift(std::string unit) {
  for (char& c : unit) c = char(std::tolower(static_cast<unsigned char>(c)));
  if (unit.empty() || unit == "b") return 0;
  const std::string prefixes = "kmgt";
  const size_t p = prefixes.find(unit[0]);
  if (p == std::string::npos) return -1;
  const std::string rest = unit.substr(1);
  return rest.empty() || rest == "b" || rest == "ib" ? 10 * int(p + 1) : -1;
}

}  // namespace

uint64_t parse_byte_size(const std::string& text) {
  const char* const usage = "expected a number with an optional unit, e.g. 123456, 1500MiB, 24GiB, 1.5TiB";
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  size_t i = 0;
  auto skip_spaces = [&] {
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
  };
  skip_spaces();
  if (i < text.size() && text[i] == '-') reject(text, "negative");
  uint64_t whole = 0;
  bool too_large = false;
  size_t digits = 0;
  for (; i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])); ++i, ++digits) {
    const uint64_t d = uint64_t(text[i] - '0');
    too_large = too_large || whole > (kMax - d) / 10;
    if (!too_large) whole = whole * 10 + d;
  }
  // The fraction only adds less than one unit, so long double precision is ample for it.
  long double fraction = 0;
  if (i < text.size() && text[i] == '.') {
    long double scale = 1;
    for (++i; i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])); ++i, ++digits) {
      scale /= 10;
      fraction += scale * (text[i] - '0');
    }
  }
  if (digits == 0) reject(text, usage);
  skip_spaces();
  const size_t unit_begin = i;
  while (i < text.size() && std::isalpha(static_cast<unsigned char>(text[i]))) ++i;
  const int shift = unit_shift(text.substr(unit_begin, i - unit_begin));
  skip_spaces();
  if (shift < 0 || i != text.size()) reject(text, usage);
  const uint64_t unit = uint64_t(1) << shift;
  const auto extra = static_cast<uint64_t>(std::floor(fraction * static_cast<long double>(unit)));
  if (too_large || whole > (kMax - extra) / unit) reject(text, "larger than 2^64 - 1 bytes");
  return whole * unit + extra;
}

}  // namespace codecllm
