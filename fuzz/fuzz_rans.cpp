// libFuzzer target: arbitrary bytes as a rANS plane payload, either layout (one table, or
// class tables).  The decoder must reject or decode every input without reading outside it
// (ASan) or undefined behaviour (UBSan), and whatever it accepts must survive a re-encode
// round trip.  Seeds: fuzz/corpus/rans/ (small payloads written by rans_encode and
// rans_encode_classes).
#include <cstddef>
#include <cstdint>
#include <vector>

#include "codec/rans.hpp"
#include "codecllm/error.hpp"

using codecllm::ByteSpan;
using codecllm::FormatError;
namespace codec = codecllm::codec;

namespace {

int class_plane(ByteSpan payload) {
  codec::RansClassPlane h;
  try {
    h = codec::rans_parse_class_plane(payload, "fuzz");
  } catch (const FormatError&) {
    return 0;
  }
  if (h.total_symbols > (uint64_t{1} << 22)) return 0;  // keep allocations small
  std::vector<uint8_t> out(h.total_symbols);
  try {
    codec::rans_decode(payload, out, "fuzz");
  } catch (const FormatError&) {
    return 0;
  }
  codec::RansOptions o;
  o.chunk_symbols = h.chunk_symbols;
  const std::vector<uint8_t> again = codec::rans_encode_classes(out, o, h.map);
  std::vector<uint8_t> back(out.size());
  codec::rans_decode(again, back, "fuzz re-encode");
  if (back != out) __builtin_trap();
  return 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const ByteSpan payload(data, size);
  if (codec::rans_is_class_plane(payload)) return class_plane(payload);
  codec::RansPlaneHeader h;
  try {
    h = codec::rans_parse_header(payload, "fuzz");
  } catch (const FormatError&) {
    return 0;
  }
  if (h.total_symbols > (uint64_t{1} << 22)) return 0;  // keep allocations small
  std::vector<uint8_t> out(h.total_symbols);
  try {
    codec::rans_decode(payload, out, "fuzz");
  } catch (const FormatError&) {
    return 0;
  }
  // Accepted: the decoded plane must code and decode back to itself.
  const std::vector<uint8_t> again = codec::rans_encode(out);
  std::vector<uint8_t> back(out.size());
  codec::rans_decode(again, back, "fuzz re-encode");  // throws (and aborts) if inconsistent
  if (back != out) __builtin_trap();
  return 0;
}
