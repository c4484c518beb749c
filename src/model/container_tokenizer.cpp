#include "model/container_tokenizer.hpp"

#include "codecllm/error.hpp"

namespace codecllm::model {

std::unique_ptr<Tokenizer> load_container_tokenizer(const format::ContainerReader& file, int vocab_size) {
  auto text = [&](const char* name) {
    ByteSpan b = file.blob(name);
    return std::string(reinterpret_cast<const char*>(b.data()), b.size());
  };
  const std::string what = file.path();
  if (file.has_blob("tokenizer.json")) return load_hf_tokenizer_json(text("tokenizer.json"), what + ": tokenizer.json");
  if (file.has_blob("tokenizer.model"))
    return load_sentencepiece_model(text("tokenizer.model"), what + ": tokenizer.model");
  if (file.has_blob("tokenizer.bin"))
    return load_llama2c_tokenizer(text("tokenizer.bin"), vocab_size, what + ": tokenizer.bin");
  throw Error(what +
              ": carries no tokenizer (tokenizer.json, tokenizer.model or tokenizer.bin); "
              "compress from a directory that has one");
}

}  // namespace codecllm::model
