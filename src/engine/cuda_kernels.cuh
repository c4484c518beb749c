// Element-wise and reduction kernels of the CUDA backend (matmuls go to cuBLAS). Activations
// are float32; weights reach the matmuls as bfloat16.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace codecllm::engine::cuda_kernels {

// out[i] = x[i] * rsqrt(mean(x^2) + eps) * w[i]; one block.
void rmsnorm(const float* x, const __nv_bfloat16* w, float eps, int n, float* out, cudaStream_t s);
// bf16 copy of a float vector (the matmul input).
void to_bf16(const float* x, int n, __nv_bfloat16* out, cudaStream_t s);
// Rotate-half RoPE on `heads` heads of head_dim at position *pos (device), inv_freq[head_dim/2].
void rope(float* x, int heads, int head_dim, const float* inv_freq, const int* pos, cudaStream_t s);
// Appends k and v (float) at position *pos of one layer's caches [max_seq][kv_dim], stored as
// float or bf16 per kv_bf16.
void kv_store(const float* k, const float* v, void* k_cache, void* v_cache, int kv_dim, const int* pos, bool kv_bf16,
              cudaStream_t s);
// Causal attention of one query token over positions 0..*pos with grouped-query heads.
void attention(const float* q, const void* k_cache, const void* v_cache, int heads, int kv_heads, int head_dim,
               const int* pos, int max_seq, bool kv_bf16, float* out, cudaStream_t s);
// out[i] = silu(gate[i]) * up[i]
void silu_mul(const float* gate, const float* up, int n, float* out, cudaStream_t s);
// x[i] += y[i]
void add(float* x, const float* y, int n, cudaStream_t s);
// x[i] += b[i] (bf16 bias)
void add_bias(float* x, const __nv_bfloat16* b, int n, cudaStream_t s);
// out = float(table[*token, :])
void embed(const __nv_bfloat16* table, const int* token, int dim, float* out, cudaStream_t s);
// y[out] = W[out, in] x[in] for row-major bf16 W: a bandwidth-bound matrix-vector product
// (batch 1 decode). Requires in % 8 == 0 and in <= kGemvMaxIn; callers fall back to cuBLAS.
constexpr int kGemvMaxIn = 16384;
void gemv_bf16(const __nv_bfloat16* w, const __nv_bfloat16* x, int in, int out, float* y, cudaStream_t s);
// index of the largest logit, written to *out (device)
void argmax(const float* x, int n, int* out, cudaStream_t s);

}  // namespace codecllm::engine::cuda_kernels
