// Fuzzes the three tokenizer loaders. Byte 0 picks the loader and byte 1 is the vocabulary
// size handed to the tokenizer.bin one; the rest is the file. Any input must either load
// or raise FormatError, and a tokenizer that loads must encode text (invalid UTF-8
// included) into ids inside its vocabulary and decode them back without fault.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "codecllm/error.hpp"
#include "model/tokenizer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace codecllm;
  if (size < 2) return 0;
  const std::string bytes(reinterpret_cast<const char*>(data) + 2, size - 2);
  std::unique_ptr<model::Tokenizer> tok;
  try {
    switch (data[0] % 3) {
      case 0:
        tok = model::load_llama2c_tokenizer(bytes, data[1], "fuzz");
        break;
      case 1:
        tok = model::load_sentencepiece_model(bytes, "fuzz");
        break;
      default:
        tok = model::load_hf_tokenizer_json(bytes, "fuzz");
        break;
    }
  } catch (const FormatError&) {
    return 0;  // rejected input: the expected outcome for most mutations
  }
  for (const std::string text : {"", "Hello, w\xC3\xB6rld 123 <s>\n\t  x", "ab\xFF\xFE \xE2\x96\x81"}) {
    const std::vector<int> ids = tok->encode(text, true);
    int prev = -1;
    for (const int id : ids) {
      if (id < 0 || id >= tok->vocab_size()) std::abort();
      tok->decode_token(prev, id);
      prev = id;
    }
    tok->decode(ids);
  }
  return 0;
}
