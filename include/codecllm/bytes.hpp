// Little-endian loads and stores of fixed-width integers in byte buffers (every on-disk format
// the project reads or writes is little-endian), and rounding up to an alignment: one definition
// for the codec, the container, the checkpoint readers and the streamer.
#pragma once

#include <cstdint>

namespace codecllm {

inline uint32_t load_le16(const uint8_t* p) { return uint32_t{p[0]} | uint32_t{p[1]} << 8; }
inline uint32_t load_le32(const uint8_t* p) { return load_le16(p) | load_le16(p + 2) << 16; }
inline uint64_t load_le64(const uint8_t* p) { return load_le32(p) | uint64_t{load_le32(p + 4)} << 32; }

inline void store_le16(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}
inline void store_le32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
inline void store_le64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

// v rounded up to a multiple of a (a > 0).
constexpr uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

}  // namespace codecllm
