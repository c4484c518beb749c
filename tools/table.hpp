// Plain-text tables and human-readable sizes for command output.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "codecllm/byte_size.hpp"  // human_bytes, used with these tables

namespace codecllm::tools {

class Table {
 public:
  explicit Table(std::vector<std::string> header) : header_(std::move(header)) {}
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  void separator() { rows_.emplace_back(); }
  // First column left-aligned, the others right-aligned (they hold numbers).
  void print(std::ostream& os) const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

std::string fixed(double v, int decimals);

// True when stderr is a terminal (progress lines are redrawn in place only then).
bool stderr_is_tty();

}  // namespace codecllm::tools
