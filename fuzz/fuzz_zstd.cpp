// libFuzzer target: arbitrary bytes as a zstd plane payload. The parser and libzstd must reject
// or decode every input without reading outside it (ASan) or undefined behaviour (UBSan); the
// frame table it accepts must lie inside the payload, in order, aligned (what the GPU path
// hands to nvCOMP); and a decoded plane must code and decode back to itself. Seeds:
// fuzz/corpus/zstd/ (small payloads written by zstd_encode).
#include <cstddef>
#include <cstdint>
#include <vector>

#include "codec/zstd_plane.hpp"
#include "codecllm/error.hpp"

using codecllm::ByteSpan;
using codecllm::FormatError;
namespace codec = codecllm::codec;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const ByteSpan payload(data, size);
  codec::ZstdPlaneHeader h;
  try {
    h = codec::zstd_parse_header(payload, "fuzz");
  } catch (const FormatError&) {
    return 0;
  }
  uint64_t end = 0;
  for (const codec::ZstdFrame& f : codec::zstd_frames(payload, h)) {
    if (f.begin < end || f.begin % codec::kZstdFrameAlign != 0 || f.begin + f.size > size || f.size == 0)
      __builtin_trap();  // a table the GPU path would trust
    end = f.begin + f.size;
  }
  if (h.total_bytes > (uint64_t{1} << 22)) return 0;  // keep allocations small
  std::vector<uint8_t> out(h.total_bytes);
  try {
    codec::zstd_decode(payload, out, "fuzz");
  } catch (const FormatError&) {
    return 0;
  }
  const std::vector<uint8_t> again = codec::zstd_encode(out, {1, h.chunk_bytes});
  std::vector<uint8_t> back(out.size());
  codec::zstd_decode(again, back, "fuzz re-encode");  // throws (and aborts) if inconsistent
  if (back != out) __builtin_trap();
  return 0;
}
