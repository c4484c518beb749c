#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "model/compress.hpp"
#include "table.hpp"

namespace codecllm::tools {

Command add_verify(CLI::App& app) {
  struct Args {
    std::string file, src;
    unsigned threads = 0;
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  app.add_option("FILE", a->file, ".cllm file")->required()->check(CLI::ExistingFile);
  app.add_option("SRC", a->src, "The checkpoint it was made from (HF directory or llama2.c .bin)")->required();
  app.add_option("--threads", a->threads, "Decoder threads (default: all cores)");
  app.add_flag("--json", a->json, "Print the result as JSON");
  return [a] {
    const bool tty = stderr_is_tty();
    auto progress = [&](size_t done, size_t total) {
      if (tty && !a->json) std::cerr << "\r\033[Kverified " << done << "/" << total << std::flush;
    };
    model::VerifyResult r = model::verify_container(a->file, a->src, a->threads, progress);
    if (tty && !a->json) std::cerr << '\n';
    if (a->json) {
      std::cout << nlohmann::json{{"file", a->file},
                                  {"source", a->src},
                                  {"tensors_checked", r.tensors_checked},
                                  {"blobs_checked", r.blobs_checked},
                                  {"ok", r.problems.empty()},
                                  {"problems", r.problems}}
                       .dump(2)
                << '\n';
    } else {
      for (const auto& p : r.problems) std::cerr << "MISMATCH: " << p << '\n';
      std::cout << (r.problems.empty() ? "OK" : "FAILED") << ": " << r.tensors_checked << " tensors and "
                << r.blobs_checked << " carried files match bit for bit";
      if (!r.problems.empty()) std::cout << ", " << r.problems.size() << " problems";
      std::cout << '\n';
    }
    return r.problems.empty() ? 0 : 1;
  };
}

}  // namespace codecllm::tools
