#include <iostream>

#include "commands.hpp"
#include "model/compress.hpp"

namespace codecllm::tools {

Command add_decompress(CLI::App& app) {
  struct Args {
    std::string file, out;
  };
  auto a = std::make_shared<Args>();
  app.add_option("FILE", a->file, ".cllm file")->required()->check(CLI::ExistingFile);
  app.add_option("-o,--output", a->out, "Output directory (created if needed)")->required();
  return [a] {
    model::decompress_container(a->file, a->out);
    std::cout << "wrote " << a->out << "/model.safetensors and the carried files\n";
    return 0;
  };
}

}  // namespace codecllm::tools
