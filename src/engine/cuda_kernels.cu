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

__global__ void rmsnorm_kernel(const float* x, const __nv_bfloat16* w, float eps, int n, float* out) {
  float ss = 0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) ss += x[i] * x[i];
  const float scale = rsqrtf(block_sum(ss) / n + eps);
  for (int i = threadIdx.x; i < n; i += blockDim.x) out[i] = x[i] * scale * __bfloat162float(w[i]);
}

__global__ void to_bf16_kernel(const float* x, int n, __nv_bfloat16* out) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = __float2bfloat16_rn(x[i]);
}

__global__ void rope_kernel(float* x, int heads, int head_dim, const float* inv_freq, const int* pos) {
  const int half = head_dim / 2;
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= heads * half) return;
  const int h = i / half, j = i % half;
  float s, c;
  sincosf(static_cast<float>(*pos) * inv_freq[j], &s, &c);
  float* v = x + h * head_dim;
  const float a = v[j], b = v[j + half];
  v[j] = a * c - b * s;
  v[j + half] = b * c + a * s;
}

__global__ void kv_store_kernel(const float* k, const float* v, void* kc, void* vc, int kv_dim, const int* pos,
                                bool kv_bf16) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= kv_dim) return;
  const size_t at = static_cast<size_t>(*pos) * kv_dim + i;
  if (kv_bf16) {
    static_cast<__nv_bfloat16*>(kc)[at] = __float2bfloat16_rn(k[i]);
    static_cast<__nv_bfloat16*>(vc)[at] = __float2bfloat16_rn(v[i]);
  } else {
    static_cast<float*>(kc)[at] = k[i];
    static_cast<float*>(vc)[at] = v[i];
  }
}

__device__ float load_kv(const void* c, size_t i, bool kv_bf16) {
  return kv_bf16 ? __bfloat162float(static_cast<const __nv_bfloat16*>(c)[i]) : static_cast<const float*>(c)[i];
}

// One block per query head; scores live in dynamic shared memory (max_seq floats).
__global__ void attention_kernel(const float* q, const void* kc, const void* vc, int heads, int kv_heads, int head_dim,
                                 const int* pos_ptr, bool kv_bf16, float* out) {
  extern __shared__ float scores[];
  const int h = blockIdx.x;
  const int kvh = h / (heads / kv_heads);
  const int kv_dim = kv_heads * head_dim;
  const int n = *pos_ptr + 1;
  const float* qh = q + h * head_dim;
  const float scale = rsqrtf(static_cast<float>(head_dim));
  for (int t = threadIdx.x; t < n; t += blockDim.x) {
    float d = 0;
    const size_t base = static_cast<size_t>(t) * kv_dim + kvh * head_dim;
    for (int i = 0; i < head_dim; ++i) d += qh[i] * load_kv(kc, base + i, kv_bf16);
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
  for (int i = threadIdx.x; i < head_dim; i += blockDim.x) {
    float acc = 0;
    for (int t = 0; t < n; ++t) acc += scores[t] * load_kv(vc, static_cast<size_t>(t) * kv_dim + kvh * head_dim + i, kv_bf16);
    out[h * head_dim + i] = acc * inv;
  }
}

__global__ void silu_mul_kernel(const float* g, const float* u, int n, float* out) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = g[i] / (1.0f + __expf(-g[i])) * u[i];
}

__global__ void add_kernel(float* x, const float* y, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) x[i] += y[i];
}

__global__ void add_bias_kernel(float* x, const __nv_bfloat16* b, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) x[i] += __bfloat162float(b[i]);
}

__global__ void embed_kernel(const __nv_bfloat16* table, const int* token, int dim, float* out) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < dim) out[i] = __bfloat162float(table[static_cast<size_t>(*token) * dim + i]);
}

__global__ void argmax_kernel(const float* x, int n, int* out) {
  float best = -FLT_MAX;
  int arg = 0;
  for (int i = threadIdx.x; i < n; i += blockDim.x)
    if (x[i] > best) best = x[i], arg = i;
  __shared__ float bv[kThreads];
  __shared__ int bi[kThreads];
  bv[threadIdx.x] = best;
  bi[threadIdx.x] = arg;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) {
      const float o = bv[threadIdx.x + s];
      const int oi = bi[threadIdx.x + s];
      if (o > bv[threadIdx.x] || (o == bv[threadIdx.x] && oi < bi[threadIdx.x])) {
        bv[threadIdx.x] = o;
        bi[threadIdx.x] = oi;
      }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) *out = bi[0];
}

int blocks(int n) { return (n + kThreads - 1) / kThreads; }

}  // namespace

void rmsnorm(const float* x, const __nv_bfloat16* w, float eps, int n, float* out, cudaStream_t s) {
  rmsnorm_kernel<<<1, 1024, 0, s>>>(x, w, eps, n, out);
}
void to_bf16(const float* x, int n, __nv_bfloat16* out, cudaStream_t s) { to_bf16_kernel<<<blocks(n), kThreads, 0, s>>>(x, n, out); }
void rope(float* x, int heads, int head_dim, const float* inv_freq, const int* pos, cudaStream_t s) {
  rope_kernel<<<blocks(heads * head_dim / 2), kThreads, 0, s>>>(x, heads, head_dim, inv_freq, pos);
}
void kv_store(const float* k, const float* v, void* kc, void* vc, int kv_dim, const int* pos, bool kv_bf16,
              cudaStream_t s) {
  kv_store_kernel<<<blocks(kv_dim), kThreads, 0, s>>>(k, v, kc, vc, kv_dim, pos, kv_bf16);
}
void attention(const float* q, const void* kc, const void* vc, int heads, int kv_heads, int head_dim, const int* pos,
               int max_seq, bool kv_bf16, float* out, cudaStream_t s) {
  attention_kernel<<<heads, kThreads, max_seq * sizeof(float), s>>>(q, kc, vc, heads, kv_heads, head_dim, pos, kv_bf16,
                                                                    out);
}
void silu_mul(const float* g, const float* u, int n, float* out, cudaStream_t s) {
  silu_mul_kernel<<<blocks(n), kThreads, 0, s>>>(g, u, n, out);
}
void add(float* x, const float* y, int n, cudaStream_t s) { add_kernel<<<blocks(n), kThreads, 0, s>>>(x, y, n); }
void add_bias(float* x, const __nv_bfloat16* b, int n, cudaStream_t s) {
  add_bias_kernel<<<blocks(n), kThreads, 0, s>>>(x, b, n);
}
void embed(const __nv_bfloat16* table, const int* token, int dim, float* out, cudaStream_t s) {
  embed_kernel<<<blocks(dim), kThreads, 0, s>>>(table, token, dim, out);
}
void argmax(const float* x, int n, int* out, cudaStream_t s) { argmax_kernel<<<1, kThreads, 0, s>>>(x, n, out); }

}  // namespace codecllm::engine::cuda_kernels
