#include "engine/sampler.hpp"

#include <algorithm>
#include <cmath>

#include "codecllm/error.hpp"

namespace codecllm::engine {

int argmax(const float* v, int n) {
  int best = 0;
  for (int i = 1; i < n; ++i)
    if (v[i] > v[best]) best = i;
  return best;
}

Sampler::Sampler(int vocab, const SamplerOptions& options)
    // xorshift has a fixed point at 0; mixing in a constant keeps seed 0 usable.
    : vocab_(vocab), options_(options), state_(options.seed ^ 0x9E3779B97F4A7C15ull), probs_(vocab) {
  if (!(options.temperature >= 0.0f)) throw Error("sampling temperature must be >= 0");
  if (!(options.top_p > 0.0f && options.top_p <= 1.0f)) throw Error("top_p must be in (0, 1]");
}

// xorshift64* (Vigna): small, fast, and the same sequence on every platform, unlike
// std:: distributions whose output is implementation-defined.
float Sampler::random_unit() {
  state_ ^= state_ >> 12;
  state_ ^= state_ << 25;
  state_ ^= state_ >> 27;
  const uint64_t r = state_ * 0x2545F4914F6CDD1Dull;
  return float(r >> 40) / 16777216.0f;  // top 24 bits: exact in a float
}

int Sampler::sample(const float* logits) {
  if (options_.temperature == 0.0f) return argmax(logits, vocab_);

  // Softmax of logits / temperature, shifted by the max for stability.
  const float max_logit = logits[argmax(logits, vocab_)];
  double sum = 0.0;
  for (int i = 0; i < vocab_; ++i) {
    probs_[i] = {std::exp((logits[i] - max_logit) / options_.temperature), i};
    sum += probs_[i].first;
  }

  // Nucleus: the most likely tokens, in order, until their mass reaches top_p. Tokens below
  // (1 - top_p) / (vocab - 1) of the mass together hold less than 1 - top_p, so the nucleus
  // never reaches them and only the rest is sorted (as llama2.c does). Ties are ordered by
  // token id so that the result does not depend on the sort implementation.
  int kept = vocab_;
  double mass = sum;
  if (options_.top_p < 1.0f) {
    const double cutoff = (1.0 - options_.top_p) / std::max(vocab_ - 1, 1) * sum;
    int candidates = 0;
    for (int i = 0; i < vocab_; ++i)
      if (probs_[i].first >= cutoff) probs_[candidates++] = probs_[i];
    std::sort(probs_.begin(), probs_.begin() + candidates, [](const auto& a, const auto& b) {
      return a.first > b.first || (a.first == b.first && a.second < b.second);
    });
    mass = 0.0;
    for (kept = 0; kept < candidates && mass < options_.top_p * sum;) mass += probs_[kept++].first;
  }

  const double target = double(random_unit()) * mass;
  double cumulative = 0.0;
  for (int i = 0; i < kept; ++i) {
    cumulative += probs_[i].first;
    if (target < cumulative) return probs_[i].second;
  }
  return probs_[kept - 1].second;  // rounding left target just past the end
}

}  // namespace codecllm::engine
