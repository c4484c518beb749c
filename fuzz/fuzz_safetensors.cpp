// Fuzzes the safetensors header parser: any input must either parse into tensors whose
// byte ranges lie inside the input and match their shapes, or raise FormatError.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "codecllm/error.hpp"
#include "model/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace codecllm;
  try {
    const model::SafetensorsFile file = model::parse_safetensors(ByteSpan(data, size), "fuzz");
    uint8_t sum = 0;
    for (const model::TensorInfo& t : file.tensors) {
      if (t.data.size() != 0 && (t.data.begin() < data + file.data_start || t.data.end() > data + size)) {
        std::abort();
      }
      uint64_t bytes = dtype_size(t.dtype);
      for (uint64_t d : t.shape) bytes *= d;  // cannot overflow: the parser checked it
      if (t.dtype != DType::Unknown && bytes != t.data.size()) std::abort();
      // Read every byte so AddressSanitizer sees any range outside the input.
      for (uint8_t b : t.data) sum = static_cast<uint8_t>(sum + b);
    }
    volatile uint8_t sink = sum;
    (void)sink;
  } catch (const FormatError&) {
    // Rejected input: the expected outcome for most mutations.
  }
  return 0;
}
