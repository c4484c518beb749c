// Options shared by the commands that run a model, and the engine they select.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "engine/engine.hpp"
#include "format/container.hpp"
#include "model/tokenizer.hpp"

namespace codecllm::tools {

struct EngineArgs {
  std::string device = "auto";  // auto: cuda when a GPU is present and the build has CUDA
  std::string placement = "gpu";
  std::string kv_dtype = "f32";
  unsigned threads = 0;
  int max_seq = 0;
  int batch = 1;
  int prefetch = 2;
  bool no_scratch = false;  // gpu-compressed, batch 1: products straight from compressed weights
  int decode_slots = 0;     // gpu-compressed: decoded-layer scratch slots (0: the engine's default)
  std::string vram_budget;  // auto placement, e.g. "24GiB"; with several GPUs, each one's
  int gpus = 0;             // split the layers across GPUs 0 .. gpus-1
  std::string devices;      // or across these, e.g. "0,2"
};

void add_engine_options(CLI::App& app, EngineArgs& a);
std::unique_ptr<engine::Engine> make_engine(const format::ContainerReader& file, const EngineArgs& a);

// What `run` and `perplexity` both start from: the file, its engine and its tokenizer.
struct LoadedModel {
  std::unique_ptr<format::ContainerReader> file;
  std::unique_ptr<engine::Engine> engine;
  std::unique_ptr<model::Tokenizer> tokenizer;
};
LoadedModel load_model(const std::string& path, const EngineArgs& a);

}  // namespace codecllm::tools
