#include <cuda_fp16.h>

#include <cfloat>
#include <type_traits>

#include "cuda/gemv_dot.cuh"
#include "engine/cuda_kernels.cuh"
#include "engine/cuda_launch.cuh"

namespace codecllm::engine::cuda_kernels {
namespace {

constexpr int kThreads = 256;

// The activation element types (Act): conversions, and a tag value for each.
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
template <>
__device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half_rn(v);
}

// The reduction of every thread's v with op, in every thread: within each warp by shuffles,
// then across the warps' results in the first warp (lanes past the last warp hold
// `identity`). The order is fixed, so every run gives the same bits. Calls may follow each
// other: each ends with a barrier after its last read of shared memory.
template <typename Op>
__device__ float block_reduce(float v, float identity, Op op) {
  __shared__ float part[32];
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = v;
  __syncthreads();
  v = threadIdx.x < blockDim.x / 32 ? part[threadIdx.x] : identity;
  if (threadIdx.x < 32)
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  __shared__ float total;
  if (threadIdx.x == 0) total = v;
  __syncthreads();
  return total;
}
__device__ float block_sum(float v) {
  return block_reduce(v, 0.0f, [](float a, float b) { return a + b; });
}
__device__ float block_max(float v) {
  return block_reduce(v, -FLT_MAX, [](float a, float b) { return fmaxf(a, b); });
}

// The small kernels below let their successor (usually a GEMV, which starts on its weights)
// launch at once, then wait for their own inputs.
template <typename T>
__global__ void embed_kernel(const T* table, const int* tokens, int dim, float* x) {
  let_successor_launch();
  wait_for_predecessor();
  const int b = blockIdx.y;
  const T* row = table + static_cast<size_t>(tokens[b]) * dim;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < dim; i += gridDim.x * blockDim.x)
    x[static_cast<size_t>(b) * dim + i] = to_float(row[i]);
}

// One block of kNormThreads per sequence; thread t sums x[t], x[t + kNormThreads], ... in that
// order whatever kPer is, so both instances give the same bits. Alone on the GPU (kPer 8) the
// block reads its first kPer weights and values a thread into registers, the weights before the
// wait (224.7-225.1 against 218.5-219.3 tok/s on the 8B shape, H200). Beside the decode kernels of
// gpu-compressed layers (kPer 0) it keeps a small footprint (16 registers a thread): those hold
// most of each SM, and the 58-register instance cost int8 gpu-compressed 13% there.
constexpr int kNormThreads = 1024;
template <typename T, int kPer>
__global__ void __launch_bounds__(kNormThreads) rmsnorm_kernel(const float* x, const T* w, float eps, int n, T* out) {
  let_successor_launch();
  float wv[kPer > 0 ? kPer : 1], xv[kPer > 0 ? kPer : 1];
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int i = threadIdx.x + j * kNormThreads;
    wv[j] = i < n ? to_float(w[i]) : 0.0f;
  }
  wait_for_predecessor();
  const float* xb = x + static_cast<size_t>(blockIdx.x) * n;
  T* ob = out + static_cast<size_t>(blockIdx.x) * n;
  float ss = 0;
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int i = threadIdx.x + j * kNormThreads;
    xv[j] = i < n ? xb[i] : 0.0f;
    ss += xv[j] * xv[j];  // 0 past n: the sum of the rest is unchanged
  }
  for (int i = threadIdx.x + kPer * kNormThreads; i < n; i += kNormThreads) ss += xb[i] * xb[i];
  const float scale = rsqrtf(block_sum(ss) / n + eps);
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int i = threadIdx.x + j * kNormThreads;
    if (i < n) ob[i] = from_float<T>(xv[j] * scale * wv[j]);
  }
  for (int i = threadIdx.x + kPer * kNormThreads; i < n; i += kNormThreads)
    ob[i] = from_float<T>(xb[i] * scale * to_float(w[i]));
}

__device__ __forceinline__ void store_kv(void* cache, size_t i, float v, KvType t) {
  switch (t) {
    case KvType::BF16:
      static_cast<__nv_bfloat16*>(cache)[i] = __float2bfloat16_rn(v);
      break;
    case KvType::F16:
      static_cast<__half*>(cache)[i] = __float2half_rn(v);
      break;
    case KvType::F32:
      static_cast<float*>(cache)[i] = v;
      break;
  }
}

template <typename T>
__device__ __forceinline__ float bias_at(const T* b, int i) {
  return b != nullptr ? to_float(b[i]) : 0.0f;
}

// Work items of one sequence (blockIdx.y): a rotated pair of a q or k head, or one v value.
// k heads follow the q heads in qkv, so head h of the combined range starts at h * head_dim.
template <typename T>
__global__ void qkv_rope_store_kernel(float* qkv, const T* q_bias, const T* k_bias, const T* v_bias,
                                      const float* inv_freq, const int* pos_ptr, AttentionShape a, void* kc, void* vc) {
  let_successor_launch();
  wait_for_predecessor();
  const int b = blockIdx.y, hd = a.head_dim, half = hd / 2, q_dim = a.heads * hd, kv_dim = a.kv_heads * hd;
  float* row = qkv + static_cast<size_t>(b) * (q_dim + 2 * kv_dim);
  const int pos = *pos_ptr;
  const size_t cache_row = (static_cast<size_t>(b) * a.max_seq + pos) * kv_dim;
  const int rotated = (a.heads + a.kv_heads) * half;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < rotated + kv_dim; i += gridDim.x * blockDim.x) {
    if (i >= rotated) {
      const int e = i - rotated;
      store_kv(vc, cache_row + e, row[q_dim + kv_dim + e] + bias_at(v_bias, e), a.kv);
      continue;
    }
    const int h = i / half, j = i % half;
    const bool is_q = h < a.heads;
    const int in_head = (is_q ? h : h - a.heads) * hd;
    const T* bias = is_q ? q_bias : k_bias;
    float* v = row + h * hd;
    const float x0 = v[j] + bias_at(bias, in_head + j), x1 = v[j + half] + bias_at(bias, in_head + j + half);
    float s, c;
    sincosf(static_cast<float>(pos) * inv_freq[j], &s, &c);
    const float r0 = x0 * c - x1 * s, r1 = x1 * c + x0 * s;
    if (is_q) {
      v[j] = r0;
      v[j + half] = r1;
    } else {
      store_kv(kc, cache_row + in_head + j, r0, a.kv);
      store_kv(kc, cache_row + in_head + j + half, r1, a.kv);
    }
  }
}

__device__ __forceinline__ float load_kv(const void* c, size_t i, KvType t) {
  switch (t) {
    case KvType::BF16:
      return __bfloat162float(static_cast<const __nv_bfloat16*>(c)[i]);
    case KvType::F16:
      return __half2float(static_cast<const __half*>(c)[i]);
    case KvType::F32:
      break;
  }
  return static_cast<const float*>(c)[i];
}

// One block of kThreads per (query head, sequence). Dynamic shared memory (attention_shared_bytes):
// the scores of positions 0..max_seq - 1, the head's query, one value partial per thread.
// Every step is spread over the block's warps, so that it is a few rounds of loads in flight
// rather than a chain of them: scores a warp per position, its lanes across the head (a
// cache row read whole by a warp), kScorePositions positions a round; the weighted values a
// thread per element of the head, the positions split among groups of head_dim threads.
constexpr int kScorePositions = 4;
template <typename T>
__global__ void __launch_bounds__(kThreads)
    attention_kernel(const float* qkv, const void* kc, const void* vc, const int* pos_ptr, AttentionShape a, T* out) {
  extern __shared__ float shared[];
  let_successor_launch();
  wait_for_predecessor();
  const int h = blockIdx.x, b = blockIdx.y, hd = a.head_dim;
  float* scores = shared;
  float* q = scores + a.max_seq;
  float* partial = q + hd;
  const int kvh = h / (a.heads / a.kv_heads);
  const int q_dim = a.heads * hd, kv_dim = a.kv_heads * hd;
  const int n = *pos_ptr + 1;
  const float* qh = qkv + static_cast<size_t>(b) * (q_dim + 2 * kv_dim) + h * hd;
  const size_t base = static_cast<size_t>(b) * a.max_seq * kv_dim + kvh * hd;
  const float scale = rsqrtf(static_cast<float>(hd));
  for (int i = threadIdx.x; i < hd; i += blockDim.x) q[i] = qh[i];
  __syncthreads();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
  for (int t0 = warp * kScorePositions; t0 < n; t0 += warps * kScorePositions) {
    float d[kScorePositions] = {};
    for (int i = lane; i < hd; i += 32) {
      const float qi = q[i];
#pragma unroll
      for (int u = 0; u < kScorePositions; ++u)
        if (t0 + u < n) d[u] += qi * load_kv(kc, base + static_cast<size_t>(t0 + u) * kv_dim + i, a.kv);
    }
#pragma unroll
    for (int u = 0; u < kScorePositions; ++u) {
      const float dot = cuda::warp_sum(d[u]);  // every lane takes part, so outside the bound test
      if (lane == 0 && t0 + u < n) scores[t0 + u] = dot * scale;
    }
  }
  __syncthreads();
  float m = -FLT_MAX;
  for (int t = threadIdx.x; t < n; t += blockDim.x) m = fmaxf(m, scores[t]);
  m = block_max(m);
  float local = 0;
  for (int t = threadIdx.x; t < n; t += blockDim.x) {
    scores[t] = __expf(scores[t] - m);
    local += scores[t];
  }
  const float inv = 1.0f / block_sum(local);  // its barriers also publish the exponentials
  T* o = out + static_cast<size_t>(b) * q_dim + h * hd;
  const int groups = max(1, int(blockDim.x) / hd);
  for (int i0 = 0; i0 < hd; i0 += int(blockDim.x)) {  // once, unless head_dim > blockDim.x
    const int g = int(threadIdx.x) / hd, i = i0 + int(threadIdx.x) % hd;
    float acc = 0;
    if (g < groups && i < hd) {
#pragma unroll 4
      for (int t = g; t < n; t += groups)
        acc += scores[t] * load_kv(vc, base + static_cast<size_t>(t) * kv_dim + i, a.kv);
    }
    partial[threadIdx.x] = acc;
    __syncthreads();
    if (int(threadIdx.x) < hd && i0 + int(threadIdx.x) < hd) {
      float sum = 0;
      for (int j = 0; j < groups; ++j) sum += partial[j * hd + threadIdx.x];
      o[i0 + threadIdx.x] = from_float<T>(sum * inv);
    }
    __syncthreads();
  }
}

template <typename T>
__global__ void silu_mul_kernel(const float* gu, int n, T* out) {
  let_successor_launch();
  wait_for_predecessor();
  const int b = blockIdx.y;
  const float* g = gu + static_cast<size_t>(b) * 2 * n;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
    out[static_cast<size_t>(b) * n + i] = from_float<T>(g[i] / (1.0f + __expf(-g[i])) * g[n + i]);
}

// x[b][i] += bias[i]: the o_proj bias, added to the residual stream after the product
// accumulated into it (an attention_bias Llama has one).
template <typename T>
__global__ void add_bias_kernel(const T* bias, int n, float* x) {
  let_successor_launch();
  wait_for_predecessor();
  float* xb = x + static_cast<size_t>(blockIdx.y) * n;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) xb[i] += to_float(bias[i]);
}

int blocks(int n) { return (n + kThreads - 1) / kThreads; }

}  // namespace

int kv_type_size(KvType t) { return t == KvType::F32 ? 4 : 2; }

size_t attention_shared_bytes(const AttentionShape& a) {
  return (size_t(a.max_seq) + size_t(a.head_dim) + kThreads) * sizeof(float);
}

void embed(Act t, const void* table, const int* tokens, int dim, int batch, float* x, const Stream& s) {
  with_type(t, [&](auto tag) {
    using T = decltype(tag);
    launch(embed_kernel<T>, dim3(blocks(dim), batch), dim3(kThreads), 0, s, static_cast<const T*>(table), tokens, dim,
           x);
  });
}
void rmsnorm(Act t, const float* x, const void* w, float eps, int dim, int batch, void* out, const Stream& s) {
  with_type(t, [&](auto tag) {
    using T = decltype(tag);
    const auto kernel = s.alone ? rmsnorm_kernel<T, 8> : rmsnorm_kernel<T, 0>;
    launch(kernel, dim3(batch), dim3(kNormThreads), 0, s, x, static_cast<const T*>(w), eps, dim, static_cast<T*>(out));
  });
}
void qkv_rope_store(Act t, float* qkv, const void* q_bias, const void* k_bias, const void* v_bias,
                    const float* inv_freq, const int* pos, const AttentionShape& a, void* k_cache, void* v_cache,
                    const Stream& s) {
  const int items = (a.heads + a.kv_heads) * a.head_dim / 2 + a.kv_heads * a.head_dim;
  with_type(t, [&](auto tag) {
    using T = decltype(tag);
    launch(qkv_rope_store_kernel<T>, dim3(blocks(items), a.batch), dim3(kThreads), 0, s, qkv,
           static_cast<const T*>(q_bias), static_cast<const T*>(k_bias), static_cast<const T*>(v_bias), inv_freq, pos,
           a, k_cache, v_cache);
  });
}
void attention(Act t, const float* qkv, const void* k_cache, const void* v_cache, const int* pos,
               const AttentionShape& a, void* out, const Stream& s) {
  with_type(t, [&](auto tag) {
    using T = decltype(tag);
    launch(attention_kernel<T>, dim3(a.heads, a.batch), dim3(kThreads), attention_shared_bytes(a), s, qkv, k_cache,
           v_cache, pos, a, static_cast<T*>(out));
  });
}
void silu_mul(Act t, const float* gate_up, int n, int batch, void* out, const Stream& s) {
  with_type(t, [&](auto tag) {
    using T = decltype(tag);
    launch(silu_mul_kernel<T>, dim3(blocks(n), batch), dim3(kThreads), 0, s, gate_up, n, static_cast<T*>(out));
  });
}

void add_bias(Act t, const void* bias, int n, int batch, float* x, const Stream& s) {
  with_type(t, [&](auto tag) {
    using T = decltype(tag);
    launch(add_bias_kernel<T>, dim3(blocks(n), batch), dim3(kThreads), 0, s, static_cast<const T*>(bias), n, x);
  });
}

}  // namespace codecllm::engine::cuda_kernels
