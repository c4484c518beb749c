// Byte counts as people write and read them: "24GiB" on a command line, "9.10 GiB" in output.
#pragma once

#include <cstdint>
#include <string>

namespace codecllm {

// "1.50 GiB", "512 B": binary units, two decimals above bytes.
std::string human_bytes(double bytes);

// Parses "123456" (bytes), "1500MiB", "24 GiB", "24G", "24GB", "1.5TiB". Units are case-insensitive
// and all binary: K/KB/KiB = 2^10, M/MB/MiB = 2^20, G/GB/GiB = 2^30, T/TB/TiB = 2^40, because a
// budget is compared with GPU memory, which vendors size in binary units whatever they call them.
// Fractions are rounded down to whole bytes. Throws codecllm::Error naming the text when it is
// not of that form, is negative or does not fit in 64 bits.
uint64_t parse_byte_size(const std::string& text);

}  // namespace codecllm
