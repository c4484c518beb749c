// Each subcommand registers its options on the CLI11 app and returns the function that runs
// it. A command reports failures by throwing codecllm::Error; main turns that into a message
// on stderr and exit code 1.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace codecllm::tools {

using Command = std::function<int()>;

Command add_compress(CLI::App& app);
Command add_convert(CLI::App& app);
Command add_decompress(CLI::App& app);
Command add_inspect(CLI::App& app);
Command add_verify(CLI::App& app);
Command add_run(CLI::App& app);
Command add_perplexity(CLI::App& app);
Command add_synth(CLI::App& app);
#ifdef CODECLLM_HAVE_CUDA
Command add_bench_decode(CLI::App& app);
#endif

}  // namespace codecllm::tools
