// Products of a weight matrix with a few sequences at once (2 .. kSkinnyMaxBatch) on the tensor
// cores, every weight read once for all of them: y[b][r] = sum_k W[r][k] x[b][k] (+ y[b][r]).
// At these batches a product is bound by the weights' bytes, as at batch 1, and the tensor cores
// leave the ALUs free for whatever rebuilds the weights: one skeleton serves the engine's 16-bit
// weights (engine/cuda_gemm.cu) and weights rebuilt from exp4 codes inside the product
// (exp4_kernel.cu), and both give the same bits, because both feed the same BF16 values through
// the same sums in the same order.
//
// A block takes 16 rows (one m16n8k16 tile); its warps split the rows' length into chunks of 64
// elements, warp w taking chunks w, w + kSkinnyWarps, ... In a chunk, lane (g, t) = (lane / 4,
// lane % 4) holds 16 consecutive weights of rows g and g + 8 from element 16t, and the same 16
// elements of x for sequence g of each 8-sequence tile; its mma slots {2t, 2t+1, 2t+8, 2t+9} take
// elements (4j .. 4j+3) at k-step j. So a row is summed over a fixed permutation of its elements
// (the same for A and B, so the product is the same dot product), each lane reading 32
// contiguous bytes. The warps' partial sums are added in warp order through shared memory: the
// bits do not depend on timing, nor on the other sequences of the batch.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "cuda/pdl.cuh"
#include "cuda/stream_loads.cuh"

namespace codecllm::cuda {

constexpr int kSkinnyMaxBatch = 32;  // four 8-sequence tiles
constexpr int kSkinnyWarps = 8;      // a block's warps, splitting each row
constexpr int kSkinnyRows = 16;      // a block's rows
constexpr int kSkinnyChunk = 64;     // elements of a row a warp takes at a time; rows a multiple of it

// Shared memory a block of kTiles sequence tiles takes for its partial sums.
constexpr size_t skinny_shared_bytes(int tiles, int warps = kSkinnyWarps) {
  return size_t(warps) * tiles * 32 * 4 * sizeof(float);
}

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
__device__ __forceinline__ uint32_t word(const uint4& v, int i) { return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w; }

// Sequence s's 16 elements of x at element k (two vectors), zeros for a sequence past the batch.
template <typename T>
__device__ __forceinline__ void load_x(const T* x, int in, int batch, int s, int k, uint4 (&v)[2]) {
  if (s < batch) {
    const auto* p = reinterpret_cast<const uint4*>(x + static_cast<size_t>(s) * in + k);
    v[0] = __ldg(p);
    v[1] = __ldg(p + 1);
  } else {
    v[0] = v[1] = make_uint4(0, 0, 0, 0);
  }
}

// The block's work: rows row0 .. row0 + 16 kMTiles - 1 of y for every sequence. Weights: `Rows`
// gives, for a row and element k (a multiple of 16), `Raw fetch(row, k)` (issues the loads) and
// `void rebuild(const Raw&, row, k, uint4 (&w)[2])` (the 16 weights as 16-bit values, element
// 2i in the low half of word i). x: [batch][in]; y: float, sequence b's row r at y[b * ldy + r].
// `partial`: skinny_shared_bytes(kTiles * kMTiles, kWarps) of shared memory. Waits for the
// predecessor kernel before its first load (the weights may be a decode's output on the same
// stream).
template <typename T, int kTiles, class Rows, int kWarps = kSkinnyWarps, int kUnroll = (kTiles <= 2 ? 2 : 1),
          int kMTiles = 1>
__device__ __forceinline__ void skinny_gemm_block(const Rows& rows, const T* __restrict__ x, int batch, int in,
                                                  int out, int row0, float* __restrict__ y, int ldy, bool accumulate,
                                                  float* partial) {
  // kUnroll: chunks in flight a warp (registers for all their loads).
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, g = lane / 4, t = lane % 4;
  int r[kMTiles][2];  // rows g and g + 8 of each 16-row tile; rows past out: computed, not written
#pragma unroll
  for (int m = 0; m < kMTiles; ++m) {
    r[m][0] = min(row0 + 16 * m + g, out - 1);
    r[m][1] = min(row0 + 16 * m + g + 8, out - 1);
  }
  const int chunks = in / kSkinnyChunk;
  float acc[kMTiles][kTiles][4] = {};
  wait_for_predecessor();
  for (int c0 = warp; c0 < chunks; c0 += kWarps * kUnroll) {
    typename Rows::Raw raw[kUnroll][kMTiles][2];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int k = (c0 + u * kWarps) * kSkinnyChunk + 16 * t;
      if (c0 + u * kWarps < chunks) {
#pragma unroll
        for (int m = 0; m < kMTiles; ++m) {
          raw[u][m][0] = rows.fetch(r[m][0], k);
          raw[u][m][1] = rows.fetch(r[m][1], k);
        }
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      if (c0 + u * kWarps >= chunks) break;
      const int k = (c0 + u * kWarps) * kSkinnyChunk + 16 * t;
      uint4 wl[kMTiles][2], wh[kMTiles][2];
#pragma unroll
      for (int m = 0; m < kMTiles; ++m) {
        rows.rebuild(raw[u][m][0], r[m][0], k, wl[m]);
        rows.rebuild(raw[u][m][1], r[m][1], k, wh[m]);
      }
#pragma unroll
      for (int n = 0; n < kTiles; ++n) {
        uint4 xv[2];
        load_x(x, in, batch, 8 * n + g, k, xv);
#pragma unroll
        for (int m = 0; m < kMTiles; ++m) {
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            // Step j: elements 4j, 4j+1 (slots 2t, 2t+1) and 4j+2, 4j+3 (slots 2t+8, 2t+9).
            const uint32_t a[4] = {word(wl[m][j / 2], 2 * (j % 2)), word(wh[m][j / 2], 2 * (j % 2)),
                                   word(wl[m][j / 2], 2 * (j % 2) + 1), word(wh[m][j / 2], 2 * (j % 2) + 1)};
            mma_16816<T>(acc[m][n], a, word(xv[j / 2], 2 * (j % 2)), word(xv[j / 2], 2 * (j % 2) + 1));
          }
        }
      }
    }
  }
  let_successor_launch();
  // acc[m][n]: rows 16m + g (0, 1) and 16m + g + 8 (2, 3), sequences 8n + 2t (0, 2) and 8n + 2t + 1 (1, 3).
  constexpr int kParts = kMTiles * kTiles;
#pragma unroll
  for (int m = 0; m < kMTiles; ++m)
#pragma unroll
    for (int n = 0; n < kTiles; ++n)
#pragma unroll
      for (int i = 0; i < 4; ++i) partial[((warp * kParts + m * kTiles + n) * 32 + lane) * 4 + i] = acc[m][n][i];
  __syncthreads();
  for (int e = threadIdx.x; e < kParts * 128; e += blockDim.x) {
    const int mn = e / 128, m = mn / kTiles, n = mn % kTiles, l = e / 4 % 32, i = e % 4;
    float sum = partial[(mn * 32 + l) * 4 + i];
    for (int w = 1; w < kWarps; ++w) sum += partial[((w * kParts + mn) * 32 + l) * 4 + i];
    const int row = row0 + 16 * m + l / 4 + 8 * (i / 2), s = 8 * n + 2 * (l % 4) + i % 2;
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
  const uint4* w;  // 16-byte vectors
  int vecs;        // per row
  __device__ __forceinline__ Raw fetch(int row, int k) const {
    const uint4* p = w + static_cast<size_t>(row) * vecs + k / 8;
    return {{load_stream(p), load_stream(p + 1)}};
  }
  __device__ __forceinline__ void rebuild(const Raw& r, int, int, uint4 (&out)[2]) const {
    out[0] = r.v[0];
    out[1] = r.v[1];
  }
};

}  // namespace codecllm::cuda
