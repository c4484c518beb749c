// Fuzzes the readers of model configs and byte sizes: the engine's config.json parser (the
// config embedded in every .cllm), synth's --config reader, and --vram-budget sizes. Byte 0
// picks the reader; the rest is the text. Any input must parse or raise codecllm::Error; a
// config that parses must give RoPE frequencies without fault.
#include <cstddef>
#include <cstdint>
#include <string>

#include "codecllm/byte_size.hpp"
#include "codecllm/error.hpp"
#include "model/llama_config.hpp"
#include "model/synthetic.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace codecllm;
  if (size < 1) return 0;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    switch (data[0] % 3) {
      case 0: {
        const model::LlamaConfig c = model::parse_llama_config(text, "fuzz");
        if (c.head_dim > 0 && c.head_dim <= 4096) (void)model::rope_inv_freq(c);
        break;
      }
      case 1:
        (void)model::llama_shape_from_config(text, "fuzz");
        break;
      default:
        (void)parse_byte_size(text);
        break;
    }
  } catch (const Error&) {
  }
  return 0;
}
