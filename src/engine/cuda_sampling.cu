#include <climits>
#include <cstdint>
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <cub/device/device_radix_sort.cuh>
#include <numeric>
#include <vector>

#include "engine/cuda_launch.cuh"
#include "engine/cuda_sampling.cuh"

namespace codecllm::engine::cuda_kernels {
namespace {

// One block per sequence. The vocabulary is walked in block-sized chunks, and a chunk's double
// scan is the costly part: 256 threads keep registers within bounds and the walk short.
constexpr int kThreads = 256;

struct Best {
  float value;
  int index;
};

// The larger value; the smaller index among equals (the host's first maximum).
struct BetterOf {
  __device__ Best operator()(const Best& a, const Best& b) const {
    return (b.value > a.value || (b.value == a.value && b.index < a.index)) ? b : a;
  }
};

__device__ __forceinline__ void keep_better(Best& best, float v, int i) {
  if (v > best.value) best = {v, i};  // i grows within a thread: the first maximum of its share
}

// The first maximum of v[0..n) for a block of kBlock threads. Each thread visits its share in
// increasing index order, 16-byte loads kUnroll at a time (the row's elements before its first
// 16-byte boundary one by one: a row of an odd vocabulary starts anywhere), so that a
// vocabulary of 128k is a few rounds of loads in flight rather than hundreds in a chain.
template <int kBlock>
__device__ Best block_best(const float* v, int n) {
  constexpr int kUnroll = 4;
  Best best{v[0], 0};
  const int lead = min(n, int((16 - (reinterpret_cast<uintptr_t>(v) & 15)) & 15) / 4);
  if (int(threadIdx.x) < lead) keep_better(best, v[threadIdx.x], int(threadIdx.x));
  const auto* v4 = reinterpret_cast<const float4*>(v + lead);
  const int quads = (n - lead) / 4;
  auto keep_quad = [&](float4 f, int q) {
    const int i = lead + 4 * q;
    keep_better(best, f.x, i);
    keep_better(best, f.y, i + 1);
    keep_better(best, f.z, i + 2);
    keep_better(best, f.w, i + 3);
  };
  int q = int(threadIdx.x);
  for (; q + (kUnroll - 1) * kBlock < quads; q += kUnroll * kBlock) {
    float4 f[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) f[u] = v4[q + u * kBlock];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) keep_quad(f[u], q + u * kBlock);
  }
  for (; q < quads; q += kBlock) keep_quad(v4[q], q);
  const int tail = lead + 4 * quads + int(threadIdx.x);
  if (tail < n) keep_better(best, v[tail], tail);
  using Reduce = cub::BlockReduce<Best, kBlock>;
  __shared__ typename Reduce::TempStorage tmp;
  __shared__ Best result;
  const Best b = Reduce(tmp).Reduce(best, BetterOf());
  if (threadIdx.x == 0) result = b;
  __syncthreads();
  return result;
}

// A greedy step waits on this kernel alone: when nothing runs beside it, blocks of 1024
// threads (a 128k vocabulary in 7.6 us on the H200, against 150 us for a block of 256 reading
// one float at a time). Beside decode kernels (Stream::alone false), which hold most of every
// SM's registers, a block that large waits for several of theirs to retire, so it keeps the
// sampler's 256 threads there.
template <int kBlock>
__global__ void __launch_bounds__(kBlock) argmax_kernel(const float* logits, int vocab, int* tokens) {
  wait_for_predecessor();
  const Best b = block_best<kBlock>(logits + size_t(blockIdx.x) * vocab, vocab);
  if (threadIdx.x == 0) tokens[blockIdx.x] = b.index;
}

// probs = exp((logit - max) / temperature) in float as the host computes them, their sum in
// double.
__global__ void __launch_bounds__(kThreads)
    softmax_numerators_kernel(const float* logits, int vocab, const float* params, float* probs, double* totals) {
  wait_for_predecessor();
  const size_t row = size_t(blockIdx.x) * vocab;
  const float max_logit = block_best<kThreads>(logits + row, vocab).value, temperature = params[0];
  double sum = 0;
  for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
    const float p = expf((logits[row + i] - max_logit) / temperature);
    probs[row + i] = p;
    sum += p;
  }
  using Reduce = cub::BlockReduce<double, kThreads>;
  __shared__ typename Reduce::TempStorage tmp;
  const double total = Reduce(tmp).Sum(sum);
  if (threadIdx.x == 0) totals[blockIdx.x] = total;
}

// The first k < n whose running sum p[0] + ... + p[k] passes `bound` (>= when inclusive,
// else >), as {k, that sum}; {n, sum of all} when none does.
struct Crossing {
  int index;
  double sum;
};
__device__ Crossing first_crossing(const float* p, int n, double bound, bool inclusive) {
  using Scan = cub::BlockScan<double, kThreads>;
  __shared__ typename Scan::TempStorage tmp;
  __shared__ int found;
  __shared__ double found_sum;
  double before = 0;  // sum of the chunks already passed
  for (int base = 0; base < n; base += blockDim.x) {
    __syncthreads();  // every thread is done with the last chunk's (or call's) shared values
    if (threadIdx.x == 0) found = INT_MAX;
    const int i = base + int(threadIdx.x);
    double running = 0, chunk = 0;
    Scan(tmp).InclusiveSum(i < n ? double(p[i]) : 0.0, running, chunk);
    running += before;
    __syncthreads();
    if (i < n && (inclusive ? running >= bound : running > bound)) atomicMin(&found, i);
    __syncthreads();
    if (i == found) found_sum = running;
    __syncthreads();
    if (found != INT_MAX) return {found, found_sum};
    before += chunk;
  }
  return {n, before};
}

__global__ void __launch_bounds__(kThreads)
    pick_kernel(const float* probs, const float* sorted_probs, const int* sorted_ids, const double* totals,
                const float* params, int vocab, bool nucleus, int* tokens) {
  wait_for_predecessor();
  const int b = blockIdx.x;
  const size_t row = size_t(b) * vocab;
  const float* p = (nucleus ? sorted_probs : probs) + row;
  int kept = vocab;
  double mass = totals[b];
  if (nucleus) {  // the smallest prefix of the sorted order whose mass reaches top_p
    const Crossing c = first_crossing(p, vocab, double(params[1]) * mass, true);
    kept = c.index < vocab ? c.index + 1 : vocab;
    mass = c.sum;
  }
  const Crossing pick = first_crossing(p, kept, double(params[2 + b]) * mass, false);
  const int k = pick.index < kept ? pick.index : kept - 1;  // rounding can leave the draw past the end
  if (threadIdx.x == 0) tokens[b] = nucleus ? sorted_ids[row + k] : k;
}

}  // namespace

SampleScratch allocate_sample_scratch(cuda::DeviceMemory& mem, int vocab, int batch) {
  const size_t n = size_t(vocab) * batch;
  SampleScratch s{};
  s.probs = static_cast<float*>(mem.device(n * sizeof(float), "the sampler"));
  s.sorted_probs = static_cast<float*>(mem.device(n * sizeof(float), "the sampler"));
  s.sorted_ids = static_cast<int*>(mem.device(n * sizeof(int), "the sampler"));
  s.totals = static_cast<double*>(mem.device(batch * sizeof(double), "the sampler"));
  std::vector<int> ids(vocab);
  std::iota(ids.begin(), ids.end(), 0);
  s.ids = static_cast<int*>(mem.device(ids.size() * sizeof(int), "the sampler"));
  CLLM_CUDA_CHECK(cudaMemcpy(s.ids, ids.data(), ids.size() * sizeof(int), cudaMemcpyHostToDevice));
  CLLM_CUDA_CHECK(cub::DeviceRadixSort::SortPairsDescending(
      nullptr, s.sort_temp_bytes, static_cast<const float*>(nullptr), static_cast<float*>(nullptr),
      static_cast<const int*>(nullptr), static_cast<int*>(nullptr), vocab));
  s.sort_temp = mem.device(s.sort_temp_bytes, "the sampler");
  return s;
}

void argmax_tokens(const float* logits, int vocab, int batch, int* tokens, const Stream& s) {
  if (s.alone) return launch(argmax_kernel<1024>, dim3(batch), dim3(1024), 0, s, logits, vocab, tokens);
  launch(argmax_kernel<kThreads>, dim3(batch), dim3(kThreads), 0, s, logits, vocab, tokens);
}

void sample_tokens(const float* logits, int vocab, int batch, const float* params, bool nucleus,
                   const SampleScratch& scratch, int* tokens, const Stream& s) {
  launch(softmax_numerators_kernel, dim3(batch), dim3(kThreads), 0, s, logits, vocab, params, scratch.probs,
         scratch.totals);
  if (nucleus) {
    // A stable sort: equal probabilities keep token order, the host's tie rule.
    for (int b = 0; b < batch; ++b) {
      const size_t row = size_t(b) * vocab;
      size_t temp = scratch.sort_temp_bytes;
      CLLM_CUDA_CHECK(cub::DeviceRadixSort::SortPairsDescending(scratch.sort_temp, temp, scratch.probs + row,
                                                                scratch.sorted_probs + row, scratch.ids,
                                                                scratch.sorted_ids + row, vocab, 0, 32, s.id));
    }
  }
  launch(pick_kernel, dim3(batch), dim3(kThreads), 0, s, static_cast<const float*>(scratch.probs),
         static_cast<const float*>(scratch.sorted_probs), static_cast<const int*>(scratch.sorted_ids),
         static_cast<const double*>(scratch.totals), params, vocab, nucleus, tokens);
}

}  // namespace codecllm::engine::cuda_kernels
