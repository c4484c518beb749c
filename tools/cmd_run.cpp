// run: generate text from a prompt, streaming tokens as they come, then a stats line.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "engine/generate.hpp"
#include "engine_factory.hpp"
#include "table.hpp"

namespace codecllm::tools {
namespace {

std::string memory_line(const engine::MemoryStats& m) {
  std::string s = "weights " + human_bytes(double(m.weight_bytes)) + ", KV " + human_bytes(double(m.kv_cache_bytes)) +
                  ", scratch " + human_bytes(double(m.scratch_bytes)) + ", activations " +
                  human_bytes(double(m.activation_bytes));
  if (m.host_pinned_bytes > 0) s += ", pinned host " + human_bytes(double(m.host_pinned_bytes));
  if (m.peak_device_bytes > 0) s += ", peak VRAM measured " + human_bytes(double(m.peak_device_bytes));
  return s;
}

nlohmann::json memory_json(const engine::MemoryStats& m) {
  return {{"weight_bytes", m.weight_bytes},           {"kv_cache_bytes", m.kv_cache_bytes},
          {"scratch_bytes", m.scratch_bytes},         {"activation_bytes", m.activation_bytes},
          {"host_pinned_bytes", m.host_pinned_bytes}, {"streamed_bytes_per_step", m.streamed_bytes_per_step},
          {"peak_device_bytes", m.peak_device_bytes}};
}

struct RunArgs {
  std::string file;
  std::vector<std::string> prompts;
  int n = 128;
  float temperature = 0.0f, top_p = 0.9f;
  uint64_t seed = 0;
  bool json = false;
  EngineArgs engine;

  engine::GenerateOptions generate_options() const {
    engine::GenerateOptions g;
    g.max_new_tokens = n;
    g.sampling.temperature = temperature;
    g.sampling.top_p = top_p;
    g.sampling.seed = seed;
    return g;
  }
};

// The end of a run: the result as JSON (with the engine and its memory) on stdout, or a stats
// line on stderr after the streamed text.
int report(const engine::Engine& eng, bool json, nlohmann::json result, const std::string& stats) {
  const engine::MemoryStats m = eng.memory();
  if (json) {
    result["engine"] = eng.describe();
    result.update(memory_json(m));
    std::cout << result.dump(2) << '\n';
  } else {
    std::cerr << "[" << eng.describe() << "] " << stats << "; " << memory_line(m) << "\n";
  }
  return 0;
}

// Several sequences at once: printed when all are done (interleaved streaming would be
// unreadable), then one stats line for the batch.
int run_batch(engine::Engine& eng, const model::Tokenizer& tok, const RunArgs& a) {
  const int B = eng.batch_size();
  auto prompt_of = [&](int b) -> const std::string& { return a.prompts[size_t(b) % a.prompts.size()]; };
  std::vector<std::vector<int>> prompts(B);
  for (int b = 0; b < B; ++b) prompts[b] = tok.encode(prompt_of(b), true);
  const engine::BatchGenerateResult r = engine::generate_batch(eng, prompts, a.generate_options());
  nlohmann::json seqs = nlohmann::json::array();
  for (int b = 0; b < B; ++b) {
    seqs.push_back({{"prompt", prompt_of(b)},
                    {"tokens", r.sequences[b].tokens},
                    {"text", tok.decode(r.sequences[b].tokens)},
                    {"hit_eos", r.sequences[b].hit_eos}});
    if (!a.json) std::cout << "[" << b << "] " << prompt_of(b) << tok.decode(r.sequences[b].tokens) << "\n";
  }
  return report(eng, a.json,
                {{"batch", B},
                 {"sequences", seqs},
                 {"steps", r.steps},
                 {"prefill_seconds", r.prefill_seconds},
                 {"decode_tokens_per_s", r.decode_tokens_per_s()}},
                std::to_string(r.steps) + " steps, prefill " + std::to_string(r.prefill_steps) + " steps in " +
                    fixed(r.prefill_seconds, 2) + " s, decode " + std::to_string(r.decode_tokens) + " tokens at " +
                    fixed(r.decode_tokens_per_s(), 1) + " tok/s (all sequences)");
}

}  // namespace

Command add_run(CLI::App& app) {
  auto a = std::make_shared<RunArgs>();
  app.add_option("FILE", a->file, ".cllm file")->required()->check(CLI::ExistingFile);
  app.add_option("-p,--prompt", a->prompts, "Prompt text (BOS is added); repeat for several sequences");
  app.add_option("-n,--tokens", a->n, "Tokens to generate")->check(CLI::Range(1, 1 << 20));
  app.add_option("--temperature", a->temperature, "0 for greedy decoding")->check(CLI::Range(0.0f, 10.0f));
  app.add_option("--top-p", a->top_p, "Nucleus sampling threshold")->check(CLI::Range(0.0f, 1.0f));
  app.add_option("--seed", a->seed, "Sampling seed");
  app.add_flag("--json", a->json, "Print the result and stats as JSON instead of streaming text");
  app.add_option("--batch", a->engine.batch,
                 "cuda: sequences decoded together (default: one per prompt; prompts repeat to fill it)")
      ->check(CLI::Range(1, 1024));
  add_engine_options(app, a->engine);
  return [a] {
    if (a->prompts.empty()) a->prompts.emplace_back();
    if (a->engine.batch == 1 && a->prompts.size() > 1) a->engine.batch = int(a->prompts.size());
    LoadedModel loaded = load_model(a->file, a->engine);
    engine::Engine* eng = loaded.engine.get();
    const model::Tokenizer* tok = loaded.tokenizer.get();
    if (eng->batch_size() > 1) return run_batch(*eng, *tok, *a);
    const std::string& text = a->prompts[0];
    std::vector<int> prompt = tok->encode(text, true);
    const engine::GenerateOptions g = a->generate_options();
    int prev = prompt.empty() ? -1 : prompt.back();
    if (!a->json) std::cout << text << std::flush;
    engine::GenerateResult r = engine::generate(*eng, prompt, g, [&](int t) {
      if (!a->json) std::cout << tok->decode_token(prev, t) << std::flush;
      prev = t;
      return true;
    });
    if (!a->json) std::cout << "\n";
    return report(*eng, a->json,
                  {{"prompt_tokens", r.prompt_tokens},
                   {"tokens", r.tokens},
                   {"text", tok->decode(r.tokens)},
                   {"prefill_tokens_per_s", r.prefill_tokens_per_s()},
                   {"decode_tokens_per_s", r.decode_tokens_per_s()}},
                  "prefill " + std::to_string(r.prompt_tokens) + " tokens at " + fixed(r.prefill_tokens_per_s(), 1) +
                      " tok/s, decode " + std::to_string(r.tokens.size()) + " tokens at " +
                      fixed(r.decode_tokens_per_s(), 1) + " tok/s");
  };
}

}  // namespace codecllm::tools
