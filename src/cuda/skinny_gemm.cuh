// Products of a weight matrix with 2 .. kSkinnyMaxBatch sequences at once on the tensor cores,
// every weight read once for all of them: y[b][r] = sum_k W[r][k] x[b][k] (+ y[b][r]). At these
// batches a product is bound by the weights' bytes, as at batch 1, and the tensor cores leave
// the ALUs free for whatever rebuilds the weights: one skeleton serves the engine's 16-bit
// weights (engine/cuda_gemm.cu) and weights rebuilt from exp4 codes inside the product
// (exp4_kernel.cu), and both give the same bits, because both feed the same BF16 values through
// the same sums in the same order.
//
// A block takes 16 rows (one m16n8k16 tile); its 16 warps split the rows' length into chunks of
// 64 elements, warp w taking chunks w, w + 16, ... In a chunk, lane (g, t) = (lane / 4, lane % 4)
// holds 16 consecutive weights of rows g and g + 8 from element 16t, and the same 16 elements of
// x for sequence g; its mma slots {2t, 2t+1, 2t+8, 2t+9} take elements (4j .. 4j+3) at k-step j.
// So a row is summed over a fixed permutation of its elements (the same for A and B: the same
// dot product), each lane reading 32 contiguous bytes of a row. The warps' partial sums are
// added in warp order through shared memory: the bits depend neither on timing nor on the other
// sequences of the batch.
//
// Measured on the H200, Llama-3-8B shape (docs/BENCHMARKS.md): this form (16 warps, one 16-row
// tile a block, a warp's next chunk loaded while it multiplies the current one) ran batches 2-8
// ahead of cuBLAS; two chunks loaded at once, 32 or 64 rows a block, or 8 warps were slower, and
// batches of 16 and 32 (more x read per weight) behind cuBLAS, which serves them.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "cuda/pdl.cuh"
#include "cuda/skinny_gemm.hpp"
#include "cuda/stream_loads.cuh"

namespace codecllm::cuda {

// d += A B for one m16n8k16 tile, fp32 accumulation: A's 16x16 16-bit values in a (4 words), B's
// 16x8 in b (2 words), in the fragment layout of the PTX ISA.
template <typename T>
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (std::is_same_v<T, __half>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

// Word i (0..3) of a vector, i a compile-time constant after unrolling.
__device__ __forceinline__ uint32_t word(const uint4& v, int i) {
  return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

// The block's work: rows row0 .. row0 + 15 of y for every sequence. Weights: `rows.lane(row)`
// gives a lane's view of one row (made once a block, so that a row's addresses are computed
// once), whose `Raw fetch(k)` issues the loads of the 16 weights from element k (a multiple of
// 16) and `void rebuild(const Raw&, k, uint4 (&w)[2])` makes them 16-bit values, element 2i in
// the low half of word i. x: [batch][in]; y: float, sequence b's row r at y[b * ldy + r].
// `partial`: kSkinnySharedBytes of shared memory. Waits for the predecessor kernel before its
// first load (the weights may be a decode's output on the same stream). kPipelined: each warp
// issues its next chunk's loads before rebuilding and multiplying this one (more registers; the
// same sums in the same order, so the same bits).
template <typename T, class Rows, bool kPipelined = false>
__device__ __forceinline__ void skinny_gemm_block(const Rows& rows, const T* __restrict__ x, int batch, int in, int out,
                                                  int row0, float* __restrict__ y, int ldy, bool accumulate,
                                                  float* partial) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, g = lane / 4, t = lane % 4;
  const int lo = min(row0 + g, out - 1), hi = min(row0 + g + 8, out - 1);  // rows past out: computed, not written
  const bool has_x = g < batch;  // the lane's sequence; the others multiply zeros
  const auto* xg = reinterpret_cast<const uint4*>(x + static_cast<size_t>(has_x ? g : 0) * in);
  const auto row_lo = rows.lane(lo), row_hi = rows.lane(hi);
  const int chunks = in / kSkinnyChunk;
  float acc[4] = {};
  wait_for_predecessor();
  typename Rows::Raw next_lo{}, next_hi{};
  if (kPipelined && warp < chunks) {
    next_lo = row_lo.fetch(warp * kSkinnyChunk + 16 * t);
    next_hi = row_hi.fetch(warp * kSkinnyChunk + 16 * t);
  }
  for (int c = warp; c < chunks; c += kSkinnyWarps) {
    const int k = c * kSkinnyChunk + 16 * t;
    typename Rows::Raw raw_lo, raw_hi;
    if constexpr (kPipelined) {  // the next chunk's loads in flight while this one is rebuilt
      raw_lo = next_lo;
      raw_hi = next_hi;
      if (c + kSkinnyWarps < chunks) {
        next_lo = row_lo.fetch(k + kSkinnyWarps * kSkinnyChunk);
        next_hi = row_hi.fetch(k + kSkinnyWarps * kSkinnyChunk);
      }
    } else {
      raw_lo = row_lo.fetch(k);
      raw_hi = row_hi.fetch(k);
    }
    const uint4 zero = make_uint4(0, 0, 0, 0);
    const uint4 xv[2] = {has_x ? __ldg(xg + k / 8) : zero, has_x ? __ldg(xg + k / 8 + 1) : zero};
    uint4 wl[2], wh[2];
    row_lo.rebuild(raw_lo, k, wl);
    row_hi.rebuild(raw_hi, k, wh);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      // Step j: elements 4j, 4j+1 (slots 2t, 2t+1) and 4j+2, 4j+3 (slots 2t+8, 2t+9).
      const uint32_t a[4] = {word(wl[j / 2], 2 * (j % 2)), word(wh[j / 2], 2 * (j % 2)),
                             word(wl[j / 2], 2 * (j % 2) + 1), word(wh[j / 2], 2 * (j % 2) + 1)};
      mma_16816<T>(acc, a, word(xv[j / 2], 2 * (j % 2)), word(xv[j / 2], 2 * (j % 2) + 1));
    }
  }
  let_successor_launch();
  // acc: rows g (0, 1) and g + 8 (2, 3), sequences 2t (0, 2) and 2t + 1 (1, 3).
#pragma unroll
  for (int i = 0; i < 4; ++i) partial[(warp * 32 + lane) * 4 + i] = acc[i];
  __syncthreads();
  if (threadIdx.x < 128) {
    const int l = threadIdx.x / 4, i = threadIdx.x % 4;
    float sum = partial[l * 4 + i];
    for (int w = 1; w < kSkinnyWarps; ++w) sum += partial[(w * 32 + l) * 4 + i];
    const int row = row0 + l / 4 + 8 * (i / 2), s = 2 * (l % 4) + i % 2;
    if (row < out && s < batch) {
      float* yp = y + static_cast<size_t>(s) * ldy + row;
      *yp = accumulate ? *yp + sum : sum;
    }
  }
}

// 16-bit weights as they are: row-major W[out][in].
struct DenseRows {
  struct Raw {
    uint4 v[2];
  };
  struct Lane {
    const uint4* row;  // the row's 16-byte vectors
    __device__ __forceinline__ Raw fetch(int k) const {
      return {{load_stream(row + k / 8), load_stream(row + k / 8 + 1)}};
    }
    __device__ __forceinline__ void rebuild(const Raw& r, int, uint4 (&out)[2]) const {
      out[0] = r.v[0];
      out[1] = r.v[1];
    }
  };
  const uint4* w;  // 16-byte vectors
  int vecs;        // per row
  __device__ __forceinline__ Lane lane(int row) const { return {w + static_cast<size_t>(row) * vecs}; }
};

}  // namespace codecllm::cuda
