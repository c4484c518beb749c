// perplexity: windowed perplexity of a text under a .cllm model, to compare modes and placements.
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "engine/generate.hpp"
#include "engine_factory.hpp"
#include "format/mapped_file.hpp"
#include "table.hpp"

namespace codecllm::tools {

Command add_perplexity(CLI::App& app) {
  struct Args {
    std::string file, text;
    int window = 512;
    size_t max_tokens = 0;
    bool json = false;
    EngineArgs engine;
  };
  auto a = std::make_shared<Args>();
  app.add_option("FILE", a->file, ".cllm file")->required()->check(CLI::ExistingFile);
  app.add_option("--text", a->text, "UTF-8 text file to score")->required()->check(CLI::ExistingFile);
  app.add_option("--window", a->window, "Context window; windows do not overlap")->check(CLI::Range(2, 1 << 16));
  app.add_option("--max-tokens", a->max_tokens, "Score only the first N tokens (0: all)");
  app.add_flag("--json", a->json, "Print the result as JSON");
  add_engine_options(app, a->engine);
  return [a] {
    LoadedModel loaded = load_model(a->file, a->engine);
    engine::Engine* eng = loaded.engine.get();
    const model::Tokenizer* tok = loaded.tokenizer.get();
    std::string text;
    {
      format::MappedFile m(a->text);
      text.assign(reinterpret_cast<const char*>(m.data()), m.size());
    }
    std::vector<int> ids = tok->encode(text, true);
    if (a->max_tokens > 0 && ids.size() > a->max_tokens) ids.resize(a->max_tokens);
    const bool tty = stderr_is_tty() && !a->json;
    engine::PerplexityResult r = engine::perplexity(*eng, ids, a->window, [&](uint64_t done, uint64_t total) {
      if (tty && done % 512 == 0) std::cerr << "\r\033[Kscored " << done << "/" << total << std::flush;
    });
    if (tty) std::cerr << "\n";
    if (a->json) {
      std::cout << nlohmann::json{{"file", a->file},        {"text", a->text},          {"tokens", ids.size()},
                                  {"predictions", r.count}, {"mean_nll", r.mean_nll},   {"perplexity", r.perplexity()},
                                  {"seconds", r.seconds},   {"engine", eng->describe()}}
                       .dump(2)
                << '\n';
    } else {
      std::cout << a->file << ": " << r.count << " predictions, mean NLL " << fixed(r.mean_nll, 4)
                << " nats, perplexity " << fixed(r.perplexity(), 3) << " (" << fixed(double(r.count) / r.seconds, 0)
                << " tok/s, " << eng->describe() << ")\n";
    }
    return 0;
  };
}

}  // namespace codecllm::tools
