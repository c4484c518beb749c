// Backend-independent loops over an Engine: text generation and windowed perplexity.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "engine/engine.hpp"
#include "engine/sampler.hpp"

namespace codecllm::engine {

struct GenerateOptions {
  int max_new_tokens = 256;
  SamplerOptions sampling;
  bool stop_at_eos = true;  // eos: any of config().eos
};

struct GenerateResult {
  std::vector<int> tokens;  // generated tokens, without the prompt and without eos
  bool hit_eos = false;
  int prompt_tokens = 0;
  double prefill_seconds = 0;  // forward over the prompt
  double decode_seconds = 0;   // forward + sampling of generated tokens after the first
  int decode_steps = 0;        // forward calls that decode_seconds covers

  double prefill_tokens_per_s() const { return prefill_seconds > 0 ? prompt_tokens / prefill_seconds : 0; }
  double decode_tokens_per_s() const { return decode_seconds > 0 ? decode_steps / decode_seconds : 0; }
};

// Called with each generated token as soon as it is chosen; returning false stops early.
using TokenCallback = std::function<bool(int token)>;

// Runs the prompt from position 0, then samples up to max_new_tokens, stopping at eos or
// when the KV cache is full. Throws codecllm::Error for an empty or too long prompt.
GenerateResult generate(Engine& engine, const std::vector<int>& prompt, const GenerateOptions& options,
                        const TokenCallback& on_token = nullptr);

struct BatchGenerateResult {
  std::vector<GenerateResult> sequences;  // per sequence: its tokens and eos flag (timings unset)
  int steps = 0;                          // forward_batch calls
  int prefill_steps = 0;                  // steps until the longest prompt was consumed
  double prefill_seconds = 0, decode_seconds = 0;
  uint64_t decode_tokens = 0;  // tokens sampled during the decode steps, all sequences together

  double decode_tokens_per_s() const { return decode_seconds > 0 ? double(decode_tokens) / decode_seconds : 0; }
};

// Generates for engine.batch_size() prompts together: one forward_batch per position, each
// sequence fed its own prompt until it runs out, then its own samples (sequence b samples
// with seed + b). A sequence that hits eos or max_new_tokens idles (its slot still computes)
// until every sequence is done.
BatchGenerateResult generate_batch(Engine& engine, const std::vector<std::vector<int>>& prompts,
                                   const GenerateOptions& options);

struct PerplexityResult {
  double mean_nll = 0;  // nats per predicted token
  uint64_t count = 0;   // predicted tokens: ids.size() - 1
  double seconds = 0;
  double perplexity() const { return std::exp(mean_nll); }
};

// Scores ids[1..] given what precedes them, in windows with no overlap: window k feeds
// ids[w*k .. w*k+w-1] at positions 0..w-1 and predicts ids[w*k+1 .. w*k+w], so the context
// restarts every `window` tokens and every token after the first is predicted exactly once
// (pycode24M/README.md, "Validation text"). `progress` gets (done, total) predictions.
PerplexityResult perplexity(Engine& engine, const std::vector<int>& ids, int window = 512,
                            const std::function<void(uint64_t, uint64_t)>& progress = nullptr);

}  // namespace codecllm::engine
