#include <iostream>

#include "commands.hpp"
#include "model/convert.hpp"

namespace codecllm::tools {

Command add_convert(CLI::App& app) {
  struct Args {
    std::string src, out;
  };
  auto a = std::make_shared<Args>();
  app.add_option("SRC", a->src, "llama2.c checkpoint (.bin, version 0); tokenizer.bin is taken from beside it")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_option("-o,--output", a->out, "Output Hugging Face directory")->required();
  return [a] {
    model::convert_llama2c_to_hf(a->src, a->out);
    std::cout << "wrote " << a->out << " (config.json, model.safetensors, tokenizer.bin)\n";
    return 0;
  };
}

}  // namespace codecllm::tools
