// synth: a random-weight Llama-shaped model compressed straight to .cllm, for measuring
// models larger than the real ones at hand (the uncompressed weights only ever exist in RAM).
#include <iostream>

#include "commands.hpp"
#include "format/mapped_file.hpp"
#include "model/compress.hpp"
#include "model/synthetic.hpp"
#include "table.hpp"

namespace codecllm::tools {

Command add_synth(CLI::App& app) {
  struct Args {
    std::string shape = "tiny", out, mode = "lossless", tokenizer;
    uint64_t seed = 1;
    unsigned threads = 0;
    uint32_t chunk_symbols = codec::kDefaultChunkSymbols;
  };
  auto a = std::make_shared<Args>();
  app.add_option("--shape", a->shape, "tiny, llama2-7b, llama3-8b, llama3-70b");
  app.add_option("-o,--output", a->out, "Output .cllm file")->required();
  app.add_option("--mode", a->mode, "lossless or int8")->check(CLI::IsMember({"lossless", "int8"}));
  app.add_option("--seed", a->seed, "Random seed");
  app.add_option("--threads", a->threads, "Threads (default: all cores)");
  app.add_option("--chunk-symbols", a->chunk_symbols, "rANS chunk size");
  app.add_option("--tokenizer", a->tokenizer, "Tokenizer file to carry (tokenizer.json/.model/.bin)")
      ->check(CLI::ExistingFile);
  return [a] {
    model::LlamaShape shape = model::llama_shape(a->shape);
    std::cerr << "generating random " << a->shape << " weights..." << std::endl;
    auto ckpt = model::make_random_llama(shape, a->seed, a->threads);
    if (!a->tokenizer.empty()) {
      format::MappedFile m(a->tokenizer);
      const std::string name = a->tokenizer.substr(a->tokenizer.find_last_of('/') + 1);
      ckpt->add_file(name, std::string(reinterpret_cast<const char*>(m.data()), m.size()));
    }
    model::CompressOptions o;
    o.threads = a->threads;
    o.encode.mode = a->mode == "int8" ? format::TensorMode::Int8 : format::TensorMode::Lossless;
    o.encode.rans.chunk_symbols = a->chunk_symbols;
    model::CompressResult r = model::compress_checkpoint(*ckpt, a->out, o);
    uint64_t source = 0;
    for (const auto& t : r.tensors) source += t.source_bytes;
    std::cout << "wrote " << a->out << ": " << human_bytes(double(r.file_bytes)) << " from "
              << human_bytes(double(source)) << " of random BF16 weights in " << fixed(r.seconds, 1) << " s\n";
    return 0;
  };
}

}  // namespace codecllm::tools
