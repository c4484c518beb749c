// The GPU sampler against the host Sampler on the same logits and the same uniform draws:
// greedy must match exactly; temperature and top-p sampling must match except where a draw
// falls within rounding of a boundary between two tokens (sums associate differently), which
// these draws should essentially never hit. Skips without a GPU.
#include "engine/cuda_sampling.cuh"

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <vector>

#include "cuda/cuda_check.hpp"
#include "engine/sampler.hpp"
#include "gpu_test_util.hpp"

namespace codecllm {
namespace {

namespace k = engine::cuda_kernels;

using test::have_gpu;

using test::DeviceBuffer;

// Returns the number of distinct tokens the stochastic settings picked.
int compare_with_host(int vocab, int trials) {
  const int batch = 3;
  struct Setting {
    float temperature, top_p;
  };
  const Setting settings[] = {{0.0f, 1.0f}, {0.8f, 1.0f}, {0.7f, 0.9f}, {1.5f, 0.5f}, {0.2f, 0.95f}};
  int picks = 0, mismatches = 0, distinct_picks = 0;
  {
    std::mt19937 rng{uint32_t(vocab)};
    std::normal_distribution<float> gauss(0.0f, 3.0f);
    const size_t n = size_t(vocab) * batch;
    DeviceBuffer logits(n * sizeof(float)), params(k::sample_params_count(batch) * sizeof(float)),
        tokens(batch * sizeof(int));
    cuda::DeviceMemory mem("the sampler test");
    const k::SampleScratch s = k::allocate_sample_scratch(mem, vocab, batch);
    for (const Setting& st : settings) {
      std::vector<engine::Sampler> host;
      host.reserve(batch);
      for (int b = 0; b < batch; ++b)
        host.emplace_back(vocab, engine::SamplerOptions{st.temperature, st.top_p, 11u + b});
      std::vector<int> seen;
      for (int trial = 0; trial < trials; ++trial) {
        std::vector<float> lg(n);
        for (auto& v : lg) v = gauss(rng);
        for (int b = 0; b < batch; ++b) lg[size_t(b) * vocab + 7] = lg[size_t(b) * vocab + 3];  // a tie
        std::vector<float> p = {st.temperature, st.top_p};
        std::vector<int> expected(batch);
        for (int b = 0; b < batch; ++b) {
          engine::Sampler twin = host[b];  // the same state: its draw is the one sample() makes
          p.push_back(st.temperature > 0 ? twin.draw() : 0.0f);
          expected[b] = host[b].sample(lg.data() + size_t(b) * vocab);
        }
        CLLM_CUDA_CHECK(cudaMemcpy(logits.p, lg.data(), n * sizeof(float), cudaMemcpyHostToDevice));
        CLLM_CUDA_CHECK(cudaMemcpy(params.p, p.data(), p.size() * sizeof(float), cudaMemcpyHostToDevice));
        // Programmatic launch on and off; the greedy pick's two block sizes (alone: nothing beside it).
        const k::Stream stream{nullptr, trial % 2 == 1, trial % 4 < 2};
        if (st.temperature == 0) {
          k::argmax_tokens(static_cast<float*>(logits.p), vocab, batch, static_cast<int*>(tokens.p), stream);
        } else {
          k::sample_tokens(static_cast<float*>(logits.p), vocab, batch, static_cast<float*>(params.p), st.top_p < 1, s,
                           static_cast<int*>(tokens.p), stream);
        }
        std::vector<int> got(batch);
        CLLM_CUDA_CHECK(cudaMemcpy(got.data(), tokens.p, batch * sizeof(int), cudaMemcpyDeviceToHost));
        for (int b = 0; b < batch; ++b) {
          ++picks;
          if (st.temperature == 0) {
            EXPECT_EQ(got[b], expected[b]) << "greedy, vocab " << vocab << ", sequence " << b;
          } else if (got[b] != expected[b]) {
            ++mismatches;
            ADD_FAILURE() << "T " << st.temperature << " top_p " << st.top_p << " vocab " << vocab << " sequence " << b
                          << ": GPU " << got[b] << ", host " << expected[b];
          }
          if (std::find(seen.begin(), seen.end(), got[b]) == seen.end()) seen.push_back(got[b]);
        }
      }
      if (st.temperature > 0) distinct_picks += int(seen.size());
    }
  }
  EXPECT_EQ(mismatches, 0) << "of " << picks << " picks";
  return distinct_picks;
}

TEST(GpuSampler, LargeVocabulary) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  EXPECT_GT(compare_with_host(32000, 40), 100) << "sampling should spread over many tokens";
}

// Short enough for compute-sanitizer's racecheck, with a vocabulary of several block-sized chunks.
TEST(GpuSampler, SmallVocabulary) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  EXPECT_GT(compare_with_host(1000, 6), 10) << "sampling should spread over many tokens";
}

// An odd vocabulary: rows 1 and 2 start off a 16-byte boundary, so the greedy pick reads their
// first elements one by one before its vector loads.
TEST(GpuSampler, OddVocabulary) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  EXPECT_GT(compare_with_host(1001, 6), 10) << "sampling should spread over many tokens";
}

}  // namespace

}  // namespace codecllm
