// Fuzzes the readers of model configs and byte sizes: the engine's config.json parser (the
// config embedded in every .cllm), synth's --config reader, --vram-budget sizes, and the
// llama2.c checkpoint reader (its header becomes a config, the config the tensor table). Byte 0
// picks the reader; the rest is the input. Any input must parse or raise codecllm::Error; a
// config that parses must give RoPE frequencies and its tensor table without fault.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "codecllm/byte_size.hpp"
#include "codecllm/error.hpp"
#include "model/checkpoint.hpp"
#include "model/llama2c.hpp"
#include "model/llama_config.hpp"
#include "model/llama_tensors.hpp"
#include "model/synthetic.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace codecllm;
  if (size < 1) return 0;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    switch (data[0] % 4) {
      case 0: {
        const model::LlamaConfig c = model::parse_llama_config(text, "fuzz");
        if (c.head_dim > 0 && c.head_dim <= 4096) (void)model::rope_inv_freq(c);
        if (c.layers <= 4096) (void)model::llama_tensors(c);
        break;
      }
      case 1:
        (void)model::llama_shape_from_config(text, "fuzz");
        break;
      case 2:
        (void)parse_byte_size(text);
        break;
      default: {  // the reader maps a file: the input goes through one
        static const std::string path = "/tmp/fuzz_config-" + std::to_string(::getpid()) + ".bin";
        if (FILE* f = std::fopen(path.c_str(), "wb")) {
          std::fwrite(text.data(), 1, text.size(), f);
          std::fclose(f);
        }
        const auto ckpt = model::open_llama2c_checkpoint(path);
        for (const auto& t : ckpt->tensors()) (void)t.data.size();
        break;
      }
    }
  } catch (const Error&) {
  }
  return 0;
}
