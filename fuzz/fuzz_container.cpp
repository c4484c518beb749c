// Feeds arbitrary bytes to the .cllm parser and, when an index parses, to the CPU decoder of
// every tensor with checksum verification skipped, so hostile payloads reach the codecs.
#include <cstddef>
#include <cstdint>

#include "codec/tensor_codec.hpp"
#include "codecllm/error.hpp"
#include "format/container.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace codecllm;
  ByteSpan file(data, size);
  try {
    format::Index index = format::parse_container(file, "fuzz.cllm");
    for (const auto& t : index.tensors) {
      if (t.decoded_size > (1u << 24)) continue;  // keep each run small
      try {
        codec::decode_tensor(
            t, [&](const format::PlaneRecord& p) { return file.subspan(p.offset, p.size); }, "fuzz.cllm");
      } catch (const Error&) {
      }
    }
  } catch (const Error&) {
  }
  return 0;
}
