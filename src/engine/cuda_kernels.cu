#include <cfloat>

#include "engine/cuda_kernels.cuh"

namespace codecllm::engine::cuda_kernels {
namespace {

constexpr int kThreads = 256;

__device__ float block_sum(float v) {
  __shared__ float part[32];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = v;
  __syncthreads();
  v = threadIdx.x < blockDim.x / 32 ? part[threadIdx.x] : 0.0f;
  if (threadIdx.x < 32)
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  __shared__ float total;
  if (threadIdx.x == 0) total = v;
  __syncthreads();
  return total;
}

__global__ void embed_kernel(const __nv_bfloat16* table, const int* tokens, int dim, float* x) {
  const int b = blockIdx.y;
  const __nv_bfloat16* row = table + static_cast<size_t>(tokens[b]) * dim;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < dim; i += gridDim.x * blockDim.x)
    x[static_cast<size_t>(b) * dim + i] = __bfloat162float(row[i]);
}

// One block per sequence.
__global__ void rmsnorm_bf16_kernel(const float* x, const __nv_bfloat16* w, float eps, int n, __nv_bfloat16* out) {
  const float* xb = x + static_cast<size_t>(blockIdx.x) * n;
  __nv_bfloat16* ob = out + static_cast<size_t>(blockIdx.x) * n;
  float ss = 0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) ss += xb[i] * xb[i];
  const float scale = rsqrtf(block_sum(ss) / n + eps);
  for (int i = threadIdx.x; i < n; i += blockDim.x) ob[i] = __float2bfloat16_rn(xb[i] * scale * __bfloat162float(w[i]));
}

__device__ __forceinline__ void store_kv(void* cache, size_t i, float v, bool kv_bf16) {
  if (kv_bf16) {
    static_cast<__nv_bfloat16*>(cache)[i] = __float2bfloat16_rn(v);
  } else {
    static_cast<float*>(cache)[i] = v;
  }
}

__device__ __forceinline__ float bias_at(const __nv_bfloat16* b, int i) {
  return b != nullptr ? __bfloat162float(b[i]) : 0.0f;
}

// Work items of one sequence (blockIdx.y): a rotated pair of a q or k head, or one v value.
// k heads follow the q heads in qkv, so head h of the combined range starts at h * head_dim.
__global__ void qkv_rope_store_kernel(float* qkv, const __nv_bfloat16* q_bias, const __nv_bfloat16* k_bias,
                                      const __nv_bfloat16* v_bias, const float* inv_freq, const int* pos_ptr,
                                      AttentionShape a, void* kc, void* vc) {
  const int b = blockIdx.y, hd = a.head_dim, half = hd / 2, q_dim = a.heads * hd, kv_dim = a.kv_heads * hd;
  float* row = qkv + static_cast<size_t>(b) * (q_dim + 2 * kv_dim);
  const int pos = *pos_ptr;
  const size_t cache_row = (static_cast<size_t>(b) * a.max_seq + pos) * kv_dim;
  const int rotated = (a.heads + a.kv_heads) * half;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < rotated + kv_dim; i += gridDim.x * blockDim.x) {
    if (i >= rotated) {
      const int e = i - rotated;
      store_kv(vc, cache_row + e, row[q_dim + kv_dim + e] + bias_at(v_bias, e), a.kv_bf16);
      continue;
    }
    const int h = i / half, j = i % half;
    const bool is_q = h < a.heads;
    const int in_head = (is_q ? h : h - a.heads) * hd;
    const __nv_bfloat16* bias = is_q ? q_bias : k_bias;
    float* v = row + h * hd;
    const float x0 = v[j] + bias_at(bias, in_head + j), x1 = v[j + half] + bias_at(bias, in_head + j + half);
    float s, c;
    sincosf(static_cast<float>(pos) * inv_freq[j], &s, &c);
    const float r0 = x0 * c - x1 * s, r1 = x1 * c + x0 * s;
    if (is_q) {
      v[j] = r0;
      v[j + half] = r1;
    } else {
      store_kv(kc, cache_row + in_head + j, r0, a.kv_bf16);
      store_kv(kc, cache_row + in_head + j + half, r1, a.kv_bf16);
    }
  }
}

__device__ float load_kv(const void* c, size_t i, bool kv_bf16) {
  return kv_bf16 ? __bfloat162float(static_cast<const __nv_bfloat16*>(c)[i]) : static_cast<const float*>(c)[i];
}

// One block per (query head, sequence); scores live in dynamic shared memory (max_seq floats).
__global__ void attention_kernel(const float* qkv, const void* kc, const void* vc, const int* pos_ptr, AttentionShape a,
                                 __nv_bfloat16* out) {
  extern __shared__ float scores[];
  const int h = blockIdx.x, b = blockIdx.y, hd = a.head_dim;
  const int kvh = h / (a.heads / a.kv_heads);
  const int q_dim = a.heads * hd, kv_dim = a.kv_heads * hd;
  const int n = *pos_ptr + 1;
  const float* qh = qkv + static_cast<size_t>(b) * (q_dim + 2 * kv_dim) + h * hd;
  const size_t base = static_cast<size_t>(b) * a.max_seq * kv_dim + kvh * hd;
  const float scale = rsqrtf(static_cast<float>(hd));
  for (int t = threadIdx.x; t < n; t += blockDim.x) {
    float d = 0;
    const size_t at = base + static_cast<size_t>(t) * kv_dim;
    for (int i = 0; i < hd; ++i) d += qh[i] * load_kv(kc, at + i, a.kv_bf16);
    scores[t] = d * scale;
  }
  __syncthreads();
  __shared__ float stat;
  if (threadIdx.x == 0) {
    float m = -FLT_MAX;
    for (int t = 0; t < n; ++t) m = fmaxf(m, scores[t]);
    stat = m;
  }
  __syncthreads();
  const float m = stat;
  float local = 0;
  for (int t = threadIdx.x; t < n; t += blockDim.x) {
    scores[t] = __expf(scores[t] - m);
    local += scores[t];
  }
  const float inv = 1.0f / block_sum(local);
  for (int i = threadIdx.x; i < hd; i += blockDim.x) {
    float acc = 0;
    for (int t = 0; t < n; ++t) acc += scores[t] * load_kv(vc, base + static_cast<size_t>(t) * kv_dim + i, a.kv_bf16);
    out[static_cast<size_t>(b) * q_dim + h * hd + i] = __float2bfloat16_rn(acc * inv);
  }
}

__global__ void silu_mul_bf16_kernel(const float* gu, int n, __nv_bfloat16* out) {
  const int b = blockIdx.y;
  const float* g = gu + static_cast<size_t>(b) * 2 * n;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
    out[static_cast<size_t>(b) * n + i] = __float2bfloat16_rn(g[i] / (1.0f + __expf(-g[i])) * g[n + i]);
}

// Two rows per warp, 16-byte loads of W that bypass L1 (each weight is read once), x staged
// in shared memory, and four loads per row in flight before the first multiply. cuBLAS's
// batch-1 path reached 62% of the copy bandwidth on an H100 for Llama-8B shapes.
constexpr int kGemvRows = 2;
constexpr int kGemvWarps = 8;

__device__ __forceinline__ uint4 load_stream(const uint4* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

__device__ __forceinline__ float dot8(uint4 w, uint4 x) {
  const __nv_bfloat162* a = reinterpret_cast<const __nv_bfloat162*>(&w);
  const __nv_bfloat162* b = reinterpret_cast<const __nv_bfloat162*>(&x);
  float acc = 0;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 fa = __bfloat1622float2(a[i]), fb = __bfloat1622float2(b[i]);
    acc = fmaf(fa.x, fb.x, acc);
    acc = fmaf(fa.y, fb.y, acc);
  }
  return acc;
}

__global__ void __launch_bounds__(kGemvWarps * 32)
    gemv_bf16_kernel(const __nv_bfloat16* __restrict__ w, const __nv_bfloat16* __restrict__ x, int in, int out,
                     float* __restrict__ y, bool accumulate) {
  extern __shared__ uint4 xs[];
  const int vecs = in / 8;
  for (int i = threadIdx.x; i < vecs; i += blockDim.x) xs[i] = reinterpret_cast<const uint4*>(x)[i];
  __syncthreads();
  const int lane = threadIdx.x % 32;
  const int row0 = (blockIdx.x * kGemvWarps + threadIdx.x / 32) * kGemvRows;
  if (row0 >= out) return;
  float acc[kGemvRows] = {};
  const uint4* rows[kGemvRows];
#pragma unroll
  for (int r = 0; r < kGemvRows; ++r)
    rows[r] = reinterpret_cast<const uint4*>(w) + static_cast<size_t>(min(row0 + r, out - 1)) * vecs;
  int c = lane;
  for (; c + 96 < vecs; c += 128) {
    uint4 wv[kGemvRows][4];
#pragma unroll
    for (int r = 0; r < kGemvRows; ++r)
#pragma unroll
      for (int u = 0; u < 4; ++u) wv[r][u] = load_stream(rows[r] + c + 32 * u);
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const uint4 xv = xs[c + 32 * u];
#pragma unroll
      for (int r = 0; r < kGemvRows; ++r) acc[r] += dot8(wv[r][u], xv);
    }
  }
  for (; c < vecs; c += 32) {
    const uint4 xv = xs[c];
#pragma unroll
    for (int r = 0; r < kGemvRows; ++r) acc[r] += dot8(load_stream(rows[r] + c), xv);
  }
#pragma unroll
  for (int r = 0; r < kGemvRows; ++r) {
    float v = acc[r];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (lane == 0 && row0 + r < out) y[row0 + r] = accumulate ? y[row0 + r] + v : v;
  }
}

int blocks(int n) { return (n + kThreads - 1) / kThreads; }

}  // namespace

void embed(const __nv_bfloat16* table, const int* tokens, int dim, int batch, float* x, cudaStream_t s) {
  embed_kernel<<<dim3(blocks(dim), batch), kThreads, 0, s>>>(table, tokens, dim, x);
}
void rmsnorm_bf16(const float* x, const __nv_bfloat16* w, float eps, int dim, int batch, __nv_bfloat16* out,
                  cudaStream_t s) {
  rmsnorm_bf16_kernel<<<batch, 1024, 0, s>>>(x, w, eps, dim, out);
}
void qkv_rope_store(float* qkv, const __nv_bfloat16* q_bias, const __nv_bfloat16* k_bias, const __nv_bfloat16* v_bias,
                    const float* inv_freq, const int* pos, const AttentionShape& a, void* k_cache, void* v_cache,
                    cudaStream_t s) {
  const int items = (a.heads + a.kv_heads) * a.head_dim / 2 + a.kv_heads * a.head_dim;
  qkv_rope_store_kernel<<<dim3(blocks(items), a.batch), kThreads, 0, s>>>(qkv, q_bias, k_bias, v_bias, inv_freq, pos, a,
                                                                          k_cache, v_cache);
}
void attention(const float* qkv, const void* k_cache, const void* v_cache, const int* pos, const AttentionShape& a,
               __nv_bfloat16* out, cudaStream_t s) {
  attention_kernel<<<dim3(a.heads, a.batch), kThreads, a.max_seq * sizeof(float), s>>>(qkv, k_cache, v_cache, pos, a,
                                                                                       out);
}
void silu_mul_bf16(const float* gate_up, int n, int batch, __nv_bfloat16* out, cudaStream_t s) {
  silu_mul_bf16_kernel<<<dim3(blocks(n), batch), kThreads, 0, s>>>(gate_up, n, out);
}
void gemv_bf16(const __nv_bfloat16* w, const __nv_bfloat16* x, int in, int out, float* y, bool accumulate,
               cudaStream_t s) {
  const int rows_per_block = kGemvWarps * kGemvRows;
  gemv_bf16_kernel<<<(out + rows_per_block - 1) / rows_per_block, kGemvWarps * 32, in * 2, s>>>(w, x, in, out, y,
                                                                                                accumulate);
}

}  // namespace codecllm::engine::cuda_kernels
