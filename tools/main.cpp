// codecllm: compress LLM checkpoints into .cllm files, check and inspect them, and run them.
#include <iostream>
#include <map>

#include "codecllm/error.hpp"
#include "commands.hpp"

int main(int argc, char** argv) {
  CLI::App app{"codecllm: entropy-compressed LLM weights, decoded on the GPU just in time"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "codecllm 0.1.0");
  std::map<CLI::App*, codecllm::tools::Command> commands;
  auto add = [&](const char* name, const char* help, codecllm::tools::Command (*make)(CLI::App&)) {
    CLI::App* sub = app.add_subcommand(name, help);
    commands[sub] = make(*sub);
  };
  add("compress", "Compress a checkpoint (HF directory or llama2.c .bin) into a .cllm file",
      codecllm::tools::add_compress);
  add("inspect", "Show what a .cllm file holds", codecllm::tools::add_inspect);
  add("verify", "Decode a .cllm file on the CPU and compare it bit for bit with its source",
      codecllm::tools::add_verify);
  add("decompress", "Write a .cllm file back out as a Hugging Face directory", codecllm::tools::add_decompress);
  add("run", "Generate text with a .cllm model (CPU or CUDA)", codecllm::tools::add_run);
  add("perplexity", "Score a text file with a .cllm model", codecllm::tools::add_perplexity);
  add("synth", "Write a random-weight Llama-shaped .cllm (e.g. --shape llama3-8b) without the source on disk",
      codecllm::tools::add_synth);
  add("convert", "Convert a llama2.c checkpoint into a Hugging Face directory", codecllm::tools::add_convert);
#ifdef CODECLLM_HAVE_CUDA
  add("bench-decode", "Measure GPU decode throughput against a device-to-device copy",
      codecllm::tools::add_bench_decode);
#endif
  CLI11_PARSE(app, argc, argv);
  try {
    for (auto& [sub, run] : commands)
      if (sub->parsed()) return run();
  } catch (const codecllm::Error& e) {
    std::cerr << "codecllm: error: " << e.what() << '\n';
    return 1;
  } catch (const std::bad_alloc&) {
    std::cerr << "codecllm: error: out of memory\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "codecllm: error: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
