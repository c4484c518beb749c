// Class tables for a matrix's coded plane: rows (or columns) whose symbol statistics differ
// are grouped into classes, each coded with its own frequency table (rans.hpp, "RNS2").
// Embedding tables hold token rows of very different scales, and output heads have hidden
// channels (columns) of very different scales; one table per tensor averages them away.
#pragma once

#include <cstdint>
#include <optional>

#include "codec/rans.hpp"
#include "codecllm/span.hpp"

namespace codecllm::codec {

// The row or column classes that code `plane` (rows x cols symbols, row-major) in the fewest
// bits, tables and class ids included, or nothing when they would save less than a small
// fraction over one table. Classes are fitted by Lloyd iterations: each row (column) moves to
// the table that codes it in the fewest bits, then the tables are recounted.
std::optional<ClassMap> choose_classes(ByteSpan plane, uint64_t rows, uint64_t cols);

}  // namespace codecllm::codec
