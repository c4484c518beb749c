// engine_logits: the CPU engine driven from the command line, for comparisons with other
// implementations (scripts/check_against_transformers.py) until the CLI has its own command.
//
//   engine_logits MODEL --ids 1,2,3 [--int8] [--threads N] [--cuda PLACEMENT]
//       prints {"describe": ..., "logits": [[vocab floats] for each position]}
//   engine_logits MODEL --perplexity IDS_FILE [--window 512] [--int8] [--threads N]
//       prints {"mean_nll": ..., "count": ..., "perplexity": ..., "seconds": ...}
//
// MODEL is a .cllm file, or a checkpoint (Hugging Face directory, llama2.c .bin) that is
// compressed to a temporary .cllm first, so the whole path from checkpoint to logits is run.
// --cuda runs the CUDA engine with that placement instead (builds with CUDA only).
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "codecllm/error.hpp"
#include "codecllm/placement.hpp"
#include "engine/cpu_engine.hpp"
#ifdef CODECLLM_HAVE_CUDA
#include "engine/cuda_engine.hpp"
#endif
#include "engine/generate.hpp"
#include "model/compress.hpp"

namespace {

using namespace codecllm;

std::vector<int> parse_ids(std::string text) {
  for (char& ch : text)
    if (ch == ',') ch = ' ';
  std::istringstream in(text);
  std::vector<int> ids;
  for (int id; in >> id;) ids.push_back(id);
  if (!in.eof()) throw Error("token ids must be integers separated by commas or spaces");
  return ids;
}

// Deletes a temporary file on the way out, however that is.
struct RemoveOnExit {
  std::string path;
  ~RemoveOnExit() {
    if (!path.empty()) std::remove(path.c_str());
  }
};

int usage() {
  std::cerr << "usage: engine_logits MODEL (--ids 1,2,3 | --perplexity IDS_FILE [--window N]) [--int8] [--threads N] "
               "[--cuda PLACEMENT]\n";
  return 2;
}

int run(int argc, char** argv) {
  if (argc < 2) return usage();
  const std::string model = argv[1];
  std::string ids_text, ppl_file;
  int window = 512;
  bool int8 = false;
  std::string cuda_placement;
  engine::CpuEngineOptions options;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--ids" && has_value) {
      ids_text = argv[++i];
    } else if (a == "--perplexity" && has_value) {
      ppl_file = argv[++i];
    } else if (a == "--window" && has_value) {
      window = std::stoi(argv[++i]);
    } else if (a == "--threads" && has_value) {
      options.threads = unsigned(std::stoul(argv[++i]));
    } else if (a == "--cuda" && has_value) {
      cuda_placement = argv[++i];
    } else if (a == "--int8") {
      int8 = true;
    } else {
      return usage();
    }
  }
  if (ids_text.empty() == ppl_file.empty()) return usage();

  std::string cllm = model;
  RemoveOnExit temporary;
  if (model.size() < 5 || model.compare(model.size() - 5, 5, ".cllm") != 0) {
    cllm = temporary.path = "/tmp/engine_logits-" + std::to_string(::getpid()) + ".cllm";
    model::CompressOptions c;
    c.encode.mode = int8 ? format::TensorMode::Int8 : format::TensorMode::Lossless;
    model::compress_checkpoint(model, cllm, c);
  }
  format::ContainerReader file(cllm);
  std::unique_ptr<engine::Engine> e;
  if (cuda_placement.empty()) {
    e = engine::make_cpu_engine(file, options);
  } else {
#ifdef CODECLLM_HAVE_CUDA
    engine::CudaEngineOptions o;
    o.placement = parse_placement(cuda_placement);
    e = engine::make_cuda_engine(file, o);
#else
    throw Error("--cuda: this build has no CUDA support");
#endif
  }
  nlohmann::json out;
  if (!ids_text.empty()) {
    const std::vector<int> ids = parse_ids(ids_text);
    out["describe"] = e->describe();
    out["logits"] = nlohmann::json::array();
    for (size_t pos = 0; pos < ids.size(); ++pos) {
      const float* logits = e->forward(ids[pos], int(pos));
      out["logits"].push_back(std::vector<float>(logits, logits + e->config().vocab));
    }
  } else {
    std::ifstream in(ppl_file);
    if (!in) throw Error(ppl_file + ": cannot open");
    const std::vector<int> ids = parse_ids(std::string(std::istreambuf_iterator<char>(in), {}));
    const engine::PerplexityResult r = engine::perplexity(*e, ids, window);
    out = {{"mean_nll", r.mean_nll}, {"count", r.count}, {"perplexity", r.perplexity()}, {"seconds", r.seconds}};
  }
  std::cout << out.dump() << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "engine_logits: " << e.what() << "\n";
    return 1;
  }
}
