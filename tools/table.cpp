#include "table.hpp"

#include <unistd.h>

#include <cstdio>
#include <iomanip>

namespace codecllm::tools {

void Table::print(std::ostream& os) const {
  std::vector<size_t> width(header_.size(), 0);
  for (size_t c = 0; c < header_.size(); ++c) width[c] = header_[c].size();
  for (const auto& r : rows_)
    for (size_t c = 0; c < r.size() && c < width.size(); ++c) width[c] = std::max(width[c], r[c].size());
  auto line = [&](const std::vector<std::string>& r) {
    for (size_t c = 0; c < width.size(); ++c) {
      const std::string& cell = c < r.size() ? r[c] : std::string();
      if (c > 0) os << "  ";
      if (c == 0)
        os << std::left << std::setw(static_cast<int>(width[c])) << cell;
      else
        os << std::right << std::setw(static_cast<int>(width[c])) << cell;
    }
    os << '\n';
  };
  auto rule = [&] {
    size_t total = 0;
    for (size_t w : width) total += w + 2;
    os << std::string(total - 2, '-') << '\n';
  };
  line(header_);
  rule();
  for (const auto& r : rows_) {
    if (r.empty())
      rule();
    else
      line(r);
  }
  os << std::left;
}

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

bool stderr_is_tty() { return ::isatty(2) != 0; }

}  // namespace codecllm::tools
