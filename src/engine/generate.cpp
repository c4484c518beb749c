#include "engine/generate.hpp"

#include <algorithm>
#include <chrono>

#include "codecllm/error.hpp"

namespace codecllm::engine {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// -log softmax(logits)[target], in double so that long sums stay accurate.
double nll(const float* logits, int vocab, int target) {
  const float max_logit = *std::max_element(logits, logits + vocab);
  double sum = 0.0;
  for (int i = 0; i < vocab; ++i) sum += std::exp(double(logits[i]) - max_logit);
  return std::log(sum) + max_logit - logits[target];
}

}  // namespace

GenerateResult generate(Engine& engine, const std::vector<int>& prompt, const GenerateOptions& options,
                        const TokenCallback& on_token) {
  if (prompt.empty()) throw Error("generate: the prompt is empty (start it with BOS)");
  if (prompt.size() > size_t(engine.max_seq_len())) {
    throw Error("generate: prompt of " + std::to_string(prompt.size()) + " tokens exceeds the " +
                std::to_string(engine.max_seq_len()) + " positions of the KV cache");
  }
  const std::vector<int>& eos = engine.config().eos;
  GenerateResult result;
  result.prompt_tokens = int(prompt.size());

  // One sequence: every slot of a batched engine gets the same tokens, sequence 0 is read.
  std::vector<Sampler> samplers(size_t(engine.batch_size()), Sampler(engine.config().vocab, options.sampling));
  std::vector<int> feed(samplers.size()), picked(samplers.size());
  std::vector<uint8_t> wanted(samplers.size(), 0);
  wanted[0] = 1;
  auto step = [&](int token, int at) {
    std::fill(feed.begin(), feed.end(), token);
    engine.forward_sample(feed.data(), at, samplers.data(), wanted.data(), picked.data());
    return picked[0];
  };

  auto t0 = std::chrono::steady_clock::now();
  for (size_t i = 0; i + 1 < prompt.size(); ++i) engine.forward(prompt[i], int(i));
  // The first token comes from the prompt's last forward, which counts as prefill.
  int next = step(prompt.back(), int(prompt.size()) - 1);
  result.prefill_seconds = seconds_since(t0);
  int pos = int(prompt.size());
  while (int(result.tokens.size()) < options.max_new_tokens) {
    if (options.stop_at_eos && std::find(eos.begin(), eos.end(), next) != eos.end()) {
      result.hit_eos = true;
      break;
    }
    result.tokens.push_back(next);
    if (on_token && !on_token(next)) break;
    if (int(result.tokens.size()) == options.max_new_tokens || pos == engine.max_seq_len()) break;
    t0 = std::chrono::steady_clock::now();  // callbacks (printing) are not timed
    next = step(next, pos++);
    result.decode_seconds += seconds_since(t0);
    ++result.decode_steps;
  }
  return result;
}

BatchGenerateResult generate_batch(Engine& engine, const std::vector<std::vector<int>>& prompts,
                                   const GenerateOptions& options) {
  const int B = engine.batch_size(), vocab = engine.config().vocab;
  if (int(prompts.size()) != B)
    throw Error("generate: " + std::to_string(prompts.size()) + " prompts for an engine of batch " + std::to_string(B));
  size_t longest = 0;
  for (const auto& p : prompts) {
    if (p.empty()) throw Error("generate: a prompt is empty (start it with BOS)");
    longest = std::max(longest, p.size());
  }
  if (longest > size_t(engine.max_seq_len())) {
    throw Error("generate: prompt of " + std::to_string(longest) + " tokens exceeds the " +
                std::to_string(engine.max_seq_len()) + " positions of the KV cache");
  }
  const std::vector<int>& eos = engine.config().eos;
  BatchGenerateResult r;
  r.sequences.resize(B);
  std::vector<Sampler> samplers;
  for (int b = 0; b < B; ++b) {
    SamplerOptions so = options.sampling;
    so.seed += uint64_t(b);
    samplers.emplace_back(vocab, so);
    r.sequences[b].prompt_tokens = int(prompts[b].size());
  }
  std::vector<int> feed(B), picked(B);
  std::vector<bool> done(B, false);
  std::vector<uint8_t> wanted(B);
  for (int b = 0; b < B; ++b) feed[b] = prompts[b][0];
  int active = B;
  for (int pos = 0; active > 0 && pos < engine.max_seq_len(); ++pos) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int b = 0; b < B; ++b) wanted[b] = size_t(pos) + 1 >= prompts[b].size() && !done[b];
    engine.forward_sample(feed.data(), pos, samplers.data(), wanted.data(), picked.data());
    uint64_t sampled = 0;
    for (int b = 0; b < B; ++b) {
      GenerateResult& s = r.sequences[b];
      if (size_t(pos) + 1 < prompts[b].size()) {
        feed[b] = prompts[b][pos + 1];
        continue;
      }
      if (done[b]) continue;
      const int next = picked[b];
      ++sampled;
      if (options.stop_at_eos && std::find(eos.begin(), eos.end(), next) != eos.end()) {
        s.hit_eos = true;
      } else {
        s.tokens.push_back(next);
        feed[b] = next;
      }
      if (s.hit_eos || int(s.tokens.size()) == options.max_new_tokens) {
        done[b] = true;
        --active;
      }
    }
    const double dt = seconds_since(t0);
    ++r.steps;
    if (size_t(pos) < longest) {  // as in generate: a step that consumes prompt tokens is prefill
      r.prefill_seconds += dt;
      ++r.prefill_steps;
    } else {
      r.decode_seconds += dt;
      r.decode_tokens += sampled;
    }
  }
  return r;
}

PerplexityResult perplexity(Engine& engine, const std::vector<int>& ids, int window,
                            const std::function<void(uint64_t, uint64_t)>& progress) {
  if (window <= 0 || window > engine.max_seq_len()) {
    throw Error("perplexity: window " + std::to_string(window) + " must be in 1.." +
                std::to_string(engine.max_seq_len()) + " (the KV cache)");
  }
  const int vocab = engine.config().vocab;
  const auto t0 = std::chrono::steady_clock::now();
  PerplexityResult result;
  const uint64_t total = ids.size() < 2 ? 0 : ids.size() - 1;
  double sum = 0.0;
  // A window restarts at position 0: the positions it writes replace the previous window's in
  // the KV cache, and attention never looks past the current position, so nothing leaks.
  for (size_t start = 0; start < total; start += size_t(window)) {
    const size_t n = std::min(size_t(window), size_t(total - start));
    for (size_t j = 0; j < n; ++j) {
      const int target = ids[start + j + 1];
      if (target < 0 || target >= vocab)
        throw Error("perplexity: token " + std::to_string(target) + " is outside the vocabulary");
      sum += nll(engine.forward(ids[start + j], int(j)), vocab, target);
    }
    result.count += n;
    if (progress) progress(result.count, total);
  }
  result.mean_nll = result.count ? sum / double(result.count) : 0.0;
  result.seconds = seconds_since(t0);
  return result;
}

}  // namespace codecllm::engine
