// A byte plane as standard Zstd frames, one per fixed-size chunk, so that a batched GPU
// decoder (nvCOMP's, cuda/zstd_gpu.cpp) decodes every chunk of a layer at once, and libzstd
// on the CPU is the reference. Frames are made by libzstd with their content size and a
// checksum; nothing here is a Zstd of this project's own.
//
// Payload layout (little-endian; docs/FORMAT.md, "Zstd plane"):
//   ZstdPlaneHeader (24 bytes)
//   uint64 frame_end[num_chunks]   end of each frame, relative to the payload start
//   frames: frame i spans [frame_begin(i), frame_end[i]); each begins 8-byte aligned
//           (zero padding before it), frame_begin(0) = 24 + 8 * num_chunks
// Chunk i decodes to bytes [i * chunk_bytes, min(total, (i + 1) * chunk_bytes)) of the plane.
#pragma once

#include <cstdint>
#include <vector>

#include "codecllm/span.hpp"

namespace codecllm::codec {

constexpr uint32_t kZstdMagic = 0x3154535A;             // "ZST1"
constexpr uint32_t kDefaultZstdChunkBytes = 64 * 1024;  // nvCOMP's recommended chunk size
constexpr uint32_t kMaxZstdChunkBytes = 16u << 20;
constexpr int kDefaultZstdLevel = 3;
constexpr uint32_t kZstdFrameAlign = 8;

struct ZstdPlaneHeader {
  uint32_t magic;        // kZstdMagic
  uint32_t chunk_bytes;  // decoded bytes per chunk (the last may hold fewer), 1..kMaxZstdChunkBytes
  uint64_t total_bytes;  // decoded bytes of the plane
  uint32_t num_chunks;   // ceil(total_bytes / chunk_bytes)
  uint32_t reserved;     // 0
};
static_assert(sizeof(ZstdPlaneHeader) == 24, "ZstdPlaneHeader must be 24 bytes");

struct ZstdOptions {
  int level = kDefaultZstdLevel;
  uint32_t chunk_bytes = kDefaultZstdChunkBytes;
};

// Encodes a plane (always succeeds; callers store it raw when this does not pay).
std::vector<uint8_t> zstd_encode(ByteSpan plane, const ZstdOptions& options = {});

// One frame of a parsed payload: where it lies in the payload and what it decodes to.
struct ZstdFrame {
  uint64_t begin, size;    // in the payload
  uint64_t out, out_size;  // in the plane
};

// Parses and validates the header and frame table (sizes, order, alignment, bounds within the
// payload) without decoding. Throws FormatError prefixed with `what`.
ZstdPlaneHeader zstd_parse_header(ByteSpan payload, const char* what);
std::vector<ZstdFrame> zstd_frames(ByteSpan payload, const ZstdPlaneHeader& h);

// Decodes a whole plane into out (out.size() must equal total_bytes) with libzstd, checking
// every frame's content size, checksum and length. Throws FormatError prefixed with `what`.
void zstd_decode(ByteSpan payload, MutableByteSpan out, const char* what);

}  // namespace codecllm::codec
