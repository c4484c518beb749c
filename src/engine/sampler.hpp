// Picks the next token from logits: greedy at temperature 0, otherwise temperature + top-p
// (nucleus) sampling driven by a seeded xorshift generator, so a seed replays exactly.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace codecllm::engine {

struct SamplerOptions {
  float temperature = 0.0f;  // 0: greedy (argmax)
  float top_p = 1.0f;        // keep the smallest set of tokens whose probability reaches top_p
  uint64_t seed = 0;
};

class Sampler {
 public:
  Sampler(int vocab, const SamplerOptions& options);
  int sample(const float* logits);
  const SamplerOptions& options() const { return options_; }
  // The uniform draw sample() would make now (it makes one exactly when temperature > 0),
  // for a sampler elsewhere (the GPU's) that then picks what sample() would pick.
  float draw() { return random_unit(); }

 private:
  float random_unit();  // uniform in [0, 1)

  int vocab_;
  SamplerOptions options_;
  uint64_t state_;
  std::vector<std::pair<float, int>> probs_;  // (probability, token), reused between calls
};

// Index of the largest value; the first one on ties.
int argmax(const float* v, int n);

}  // namespace codecllm::engine
