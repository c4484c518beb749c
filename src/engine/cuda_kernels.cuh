// Kernels of the CUDA backend: the products (GEMV kernels at batch 1, a tensor-core kernel at
// batches of 2-8; cuBLAS beyond) and everything else of a step. Activations are float32
// [batch][n] row-major; matmul inputs are copies of them in the model's 16-bit type (Act), which
// is also the type of its norms, biases and embeddings. Each kernel does as much of a layer as
// one pass over its data allows: at batch 1 on an 8B model a token takes ~290 launches, and
// every launch saved is a few microseconds of a ~7 ms step. Token ids and the position are read
// from device memory so that one captured graph serves every step.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace codecllm::engine::cuda_kernels {

// Where kernels go. With `overlap` set, each kernel is launched as a programmatic dependent of
// the one before it on the stream (sm_90): it may start while its predecessor finishes, runs
// what does not depend on it (a GEMV streams its first weights into L2), and waits for the
// predecessor's results before reading them. Every kernel here makes that wait, so the usual
// stream order holds for all data, transitively.
struct Stream {
  cudaStream_t id = nullptr;
  bool overlap = false;
  // Nothing runs beside this stream's kernels (no decodes on other streams): GEMVs then take
  // larger blocks, which measured faster alone and slower next to decode kernels.
  bool alone = false;
};

// The model's 16-bit element type: of matmul inputs (activations themselves are float32),
// norms, biases, embeddings and 16-bit weights.
enum class Act : int { BF16 = 0, F16 = 1 };

// x[b] = float(table[tokens[b], :]) for b < batch.
void embed(Act t, const void* table, const int* tokens, int dim, int batch, float* x, const Stream& s);

// out[b] = t(x[b] * rsqrt(mean(x[b]^2) + eps) * w): the normalized matmul input.
void rmsnorm(Act t, const float* x, const void* w, float eps, int dim, int batch, void* out, const Stream& s);

// Element type of the KV cache.
enum class KvType : int { F32 = 0, BF16 = 1, F16 = 2 };
int kv_type_size(KvType t);

// The attention part of a layer after the q/k/v matmul. qkv is [batch][q_dim + 2 kv_dim]
// (q, then k, then v). Adds the biases (when not null), applies rotate-half RoPE at *pos to q
// (in place) and k, and appends k and v to the caches, laid out [batch][max_seq][kv_dim].
struct AttentionShape {
  int heads, kv_heads, head_dim, max_seq, batch;
  KvType kv;
};
void qkv_rope_store(Act t, float* qkv, const void* q_bias, const void* k_bias, const void* v_bias,
                    const float* inv_freq, const int* pos, const AttentionShape& a, void* k_cache, void* v_cache,
                    const Stream& s);
// Causal attention of each sequence's query (in qkv) over positions 0..*pos of its cache,
// grouped-query heads; writes the input of the output projection, [batch][q_dim].
// attention_shared_bytes: the shared memory a block of it takes (the scores of max_seq positions
// among them), which the device must allow.
size_t attention_shared_bytes(const AttentionShape& a);
void attention(Act t, const float* qkv, const void* k_cache, const void* v_cache, const int* pos,
               const AttentionShape& a, void* out, const Stream& s);

// x[b][i] += bias[i] for b < batch, i < n (bias of type t).
void add_bias(Act t, const void* bias, int n, int batch, float* x, const Stream& s);

// gate_up is [batch][2 n] (gate, then up); out[b][i] = t(silu(gate) * up).
void silu_mul(Act t, const float* gate_up, int n, int batch, void* out, const Stream& s);

// y = W x (+ y when accumulate) for row-major W[out][in] and one x, both of type t: the
// bandwidth-bound batch-1 product. Requires in % 8 == 0, in <= kGemvMaxIn and 16-byte aligned
// W and x; other cases go to gemm or cuBLAS. (Making x in this kernel instead, each block normalizing
// the residual or forming silu(gate) * up itself, measured slower on the 8B shape: 11% on an
// H100; on the H200 211 against 220 tok/s, 217 with one block an SM taking rows in turns: every
// block pays the reduction before its first multiply. docs/BENCHMARKS.md.)
constexpr int kGemvMaxIn = 16384;
void gemv(Act t, const void* w, const void* x, int in, int out, float* y, bool accumulate, const Stream& s);

// y[b] = W x[b] (+ y[b]) for 2 .. 8 sequences of 16-bit x ([batch][in], contiguous) at once, on
// the tensor cores (cuda/skinny_gemm.cuh), y[b] at y + b * ldy: each weight read once for all of
// them. A sequence's bits do not depend on the others in the batch (they differ from gemv's).
// gemm_takes: the batch and a row length the kernel takes (a multiple of 64); else cuBLAS.
bool gemm_takes(int in, int batch);
void gemm(Act t, const void* w, const void* x, int batch, int in, int out, float* y, int ldy, bool accumulate,
          const Stream& s);

// The same product for int8 W (the int8 mode's quantized values) with one float scale per row:
// y[r] = scale[r] * sum_i W[r][i] x[i] (+ y[r]). Dequantizing in the product reads one byte
// per weight instead of two. Requires in % 16 == 0, in <= kGemvMaxIn, 16-byte aligned W and x.
void gemv_int8(Act t, const int8_t* w, const float* scales, const void* x, int in, int out, float* y, bool accumulate,
               const Stream& s);

// The same product for BF16 W held as two byte planes: its exponent bytes (row-major, one per
// weight, as DecoderOptions::bf16_exponents_only decodes them) and its raw sign_mantissa bytes,
// which may lie in up to kMaxParts separate row ranges (q, k and v stacked in one product):
// part j holds rows end[j - 1] .. end[j] - 1. The same bits as gemv over the assembled weights.
// Requires in % 16 == 0, in <= kGemvMaxIn, and 16-byte aligned planes and x.
struct SplitRows {
  static constexpr int kMaxParts = 3;
  const uint8_t* sign_mantissa[kMaxParts];
  int end[kMaxParts];
  int count;
};
void gemv_split(const uint8_t* exponents, const SplitRows& parts, const void* x, int in, int out, float* y,
                bool accumulate, const Stream& s);

}  // namespace codecllm::engine::cuda_kernels
