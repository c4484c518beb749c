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

// Parse, decode, and for whatever is accepted: the decoded plane must code and decode back to
// itself (re-encoded with the parsed layout's parameters).
template <typename Header, typename Parse, typename Encode>
int round_trip(ByteSpan payload, Parse parse, Encode encode) {
  Header h;
  try {
    h = parse(payload, "fuzz");
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
  const std::vector<uint8_t> again = encode(out, h);
  std::vector<uint8_t> back(out.size());
  codec::rans_decode(again, back, "fuzz re-encode");  // throws (and aborts) if inconsistent
  if (back != out) __builtin_trap();
  return 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const ByteSpan payload(data, size);
  if (codec::rans_is_class_plane(payload)) {
    return round_trip<codec::RansClassPlane>(payload, codec::rans_parse_class_plane,
                                             [](ByteSpan out, const codec::RansClassPlane& h) {
                                               codec::RansOptions o;
                                               o.chunk_symbols = h.chunk_symbols;
                                               return codec::rans_encode_classes(out, o, h.map);
                                             });
  }
  return round_trip<codec::RansPlaneHeader>(payload, codec::rans_parse_header,
                                            [](ByteSpan out, const auto&) { return codec::rans_encode(out); });
}
