// Token choice on the GPU, so that a step copies back batch token ids instead of batch x vocab
// logits. It picks what the host Sampler (sampler.hpp) picks from the same logits and the same
// uniform draw: greedy is the first maximum; otherwise the softmax numerators of
// logits / temperature, the top-p nucleus in the order (probability descending, token id
// ascending) by a stable radix sort (CUB), and the first token whose running mass passes
// u x nucleus mass, with running sums in double. Sums are associated differently from the
// host's sequential ones, so a draw within rounding of a boundary may pick a neighbour.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "cuda/device_memory.hpp"
#include "engine/cuda_kernels.cuh"

namespace codecllm::engine::cuda_kernels {

// The parameters of a sampled step, in device memory so that one captured graph serves every
// step: params[0] temperature (> 0), params[1] top_p, params[2 + b] the uniform draw in
// [0, 1) of sequence b.
inline size_t sample_params_count(int batch) { return 2 + size_t(batch); }

// Scratch of the stochastic path, allocated once by allocate_sample_scratch.
struct SampleScratch {
  float* probs;         // [batch][vocab]
  float* sorted_probs;  // [batch][vocab]
  int* ids;             // [vocab] 0..vocab-1: the sort's values, the same for every sequence
  int* sorted_ids;      // [batch][vocab]
  double* totals;       // [batch]
  void* sort_temp;
  size_t sort_temp_bytes;
};
SampleScratch allocate_sample_scratch(cuda::DeviceMemory& mem, int vocab, int batch);

// tokens[b] = first index of the largest logit of sequence b.
void argmax_tokens(const float* logits, int vocab, int batch, int* tokens, const Stream& s);
// Temperature and top-p sampling with the parameters in `params`. `nucleus`: top_p < 1, so
// the probabilities are sorted; without it the draw walks them in token order, as the host does.
void sample_tokens(const float* logits, int vocab, int batch, const float* params, bool nucleus,
                   const SampleScratch& scratch, int* tokens, const Stream& s);

}  // namespace codecllm::engine::cuda_kernels
