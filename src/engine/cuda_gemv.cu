// The batch-1 matrix-vector products of the CUDA backend (declared in cuda_kernels.cuh): 16-bit
// weights, int8 weights with row scales, and BF16 weights split into exponent and
// sign_mantissa planes. Every one sums a row in the order cuda/gemv_dot.cuh defines.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "cuda/decode_assemble.cuh"
#include "cuda/gemv_dot.cuh"
#include "cuda/stream_loads.cuh"
#include "engine/cuda_kernels.cuh"
#include "engine/cuda_launch.cuh"

namespace codecllm::engine::cuda_kernels {
namespace {

using cuda::load_stream;
using cuda::load_stream8;
using cuda::prefetch_l2;
using cuda::stage_input;

// One row per warp, 16-byte loads of W that bypass L1 (each weight is read once), x staged
// in shared memory, and four loads (int8: eight) per row in flight before the first multiply.
// cuBLAS's batch-1 path reached 62% of the copy bandwidth on an H100 for Llama-8B shapes. On an
// 8B shape (H100, one session) one row per warp ran the bf16 step at 78.7% of copy against
// 75.1% with two; blocks of 32 warps reached 80.2% when the GEMVs have the GPU to themselves
// but slowed gpu-compressed from 69.7 to 65.6 tok/s, next to the decode kernels, where blocks
// of 8 warps do best (Stream::alone picks).
constexpr int kGemvPrefetch = 2048;  // bytes of each row asked of L2 before the wait

// One 16-byte load of W (vector c of its row) against the matching x, read from shared memory.
template <typename W, typename T>
__device__ __forceinline__ float dot_load(uint4 w, const uint4* xs, int c) {
  if constexpr (std::is_same_v<W, int8_t>) {
    return cuda::dot_int8<T>(w, xs[2 * c], xs[2 * c + 1]);
  } else {
    return cuda::dot16<T>(w, xs[c]);
  }
}

// y[r] = scale(r) * (W x)[r] (+ y[r]), x of type T, W of type T (scale 1) or int8_t, each row
// summed in the order cuda/gemv_dot.cuh defines (the fused decode-GEMV kernel gives the same bits).
template <typename W, typename T, int kGemvWarps>
__global__ void __launch_bounds__(kGemvWarps * 32)
    gemv_kernel(const W* __restrict__ w, const float* __restrict__ scales, const T* __restrict__ x, int in, int out,
                float* __restrict__ y, bool accumulate) {
  extern __shared__ uint4 xs[];
  constexpr bool kInt8 = std::is_same_v<W, int8_t>;
  constexpr int kPerLoad = 16 / sizeof(W);
  // Loads per row in flight: int8 spends about three times the instructions per byte of bf16,
  // so it needs more bytes in flight to keep the memory busy (all of a 4096-long row at once).
  constexpr int kGemvUnroll = kInt8 ? 8 : 4;
  const int vecs = in / kPerLoad;  // 16-byte loads per row
  const int lane = threadIdx.x % 32;
  const int row = blockIdx.x * kGemvWarps + threadIdx.x / 32;
  const uint4* w_row = reinterpret_cast<const uint4*>(w) + static_cast<size_t>(min(row, out - 1)) * vecs;
  // The weights do not depend on earlier kernels: while those finish, L2 fetches the start of
  // this warp's row (bounded, so that prefetches of all resident blocks together stay well
  // inside L2).
  if (lane == 0 && row < out) prefetch_l2(w_row, min(16u * vecs, uint32_t(kGemvPrefetch)));
  stage_input(xs, x, in);
  if (row >= out) return;
  float acc = 0;
  int c = lane;
  for (; c + 32 * (kGemvUnroll - 1) < vecs; c += 32 * kGemvUnroll) {
    uint4 wv[kGemvUnroll];
#pragma unroll
    for (int u = 0; u < kGemvUnroll; ++u) wv[u] = load_stream(w_row + c + 32 * u);
#pragma unroll
    for (int u = 0; u < kGemvUnroll; ++u) acc += dot_load<W, T>(wv[u], xs, c + 32 * u);
  }
  for (; c < vecs; c += 32) acc += dot_load<W, T>(load_stream(w_row + c), xs, c);
  let_successor_launch();  // late: an early successor's prefetch would compete with these loads
  acc = cuda::warp_sum(acc);
  if (lane == 0) y[row] = cuda::row_output(acc, scales != nullptr ? scales + row : nullptr, y + row, accumulate);
}

template <typename W, typename T, int kWarps>
void gemv_blocks(const W* w, const float* scales, const T* x, int in, int out, float* y, bool accumulate,
                 const Stream& s) {
  launch(gemv_kernel<W, T, kWarps>, dim3((out + kWarps - 1) / kWarps), dim3(kWarps * 32), size_t(in) * 2, s, w, scales,
         x, in, out, y, accumulate);
}

// Each row's sum runs in the same order whatever the block size, so both give the same bits.
template <typename W, typename T>
void gemv(const W* w, const float* scales, const T* x, int in, int out, float* y, bool accumulate, const Stream& s) {
  if (s.alone) return gemv_blocks<W, T, 32>(w, scales, x, in, out, y, accumulate, s);
  gemv_blocks<W, T, 8>(w, scales, x, in, out, y, accumulate, s);
}

// The rows of a product over split BF16 weights, see gemv_split. The part of a row is picked
// with constant indices (unrolled), so that the parameter arrays are never indexed at run time.
__device__ __forceinline__ const uint8_t* split_row(const SplitRows& parts, int row, int in) {
  const uint8_t* sm = parts.sign_mantissa[0];
  int first = 0;
#pragma unroll
  for (int j = 1; j < SplitRows::kMaxParts; ++j) {
    if (j < parts.count && row >= parts.end[j - 1]) {
      sm = parts.sign_mantissa[j];
      first = parts.end[j - 1];
    }
  }
  return sm + static_cast<size_t>(row - first) * in;
}

// gemv_kernel for BF16 weights given as two byte planes: each 8-weight vector is put back
// together from 8 exponent bytes and 8 sign_mantissa bytes (the decoder's own assembly) and
// multiplied exactly as the 16-byte vector the plain kernel would have read, in the same order,
// so the two give the same bits. Eight vectors per row in flight: half the bytes per load.
template <int kGemvWarps>
__global__ void __launch_bounds__(kGemvWarps * 32)
    gemv_split_kernel(const uint8_t* __restrict__ exponents, const SplitRows parts, const __nv_bfloat16* __restrict__ x,
                      int in, int out, float* __restrict__ y, bool accumulate) {
  extern __shared__ uint4 xs[];
  constexpr int kUnroll = 8;
  const int vecs = in / 8;
  const int lane = threadIdx.x % 32;
  const int row = blockIdx.x * kGemvWarps + threadIdx.x / 32;
  const int r = min(row, out - 1);
  const auto* e_row = reinterpret_cast<const uint2*>(exponents + static_cast<size_t>(r) * in);
  const auto* s_row = reinterpret_cast<const uint2*>(split_row(parts, r, in));
  if (lane == 0 && row < out) {
    prefetch_l2(e_row, min(static_cast<uint32_t>(in), uint32_t(kGemvPrefetch / 2)));
    prefetch_l2(s_row, min(static_cast<uint32_t>(in), uint32_t(kGemvPrefetch / 2)));
  }
  stage_input(xs, x, in);
  if (row >= out) return;
  float acc = 0;
  int c = lane;
  for (; c + 32 * (kUnroll - 1) < vecs; c += 32 * kUnroll) {
    uint2 e[kUnroll], s[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      e[u] = load_stream8(e_row + c + 32 * u);
      s[u] = load_stream8(s_row + c + 32 * u);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
      acc += cuda::dot16<__nv_bfloat16>(cuda::bf16_from_planes(e[u], s[u]), xs[c + 32 * u]);
  }
  for (; c < vecs; c += 32)
    acc += cuda::dot16<__nv_bfloat16>(cuda::bf16_from_planes(load_stream8(e_row + c), load_stream8(s_row + c)), xs[c]);
  let_successor_launch();
  acc = cuda::warp_sum(acc);
  if (lane == 0) y[row] = cuda::row_output(acc, nullptr, y + row, accumulate);
}

}  // namespace

void gemv(Act t, const void* w, const void* x, int in, int out, float* y, bool accumulate, const Stream& s) {
  with_type(t, [&](auto tag) {
    using T = decltype(tag);
    gemv<T, T>(static_cast<const T*>(w), nullptr, static_cast<const T*>(x), in, out, y, accumulate, s);
  });
}
void gemv_int8(Act t, const int8_t* w, const float* scales, const void* x, int in, int out, float* y, bool accumulate,
               const Stream& s) {
  with_type(t, [&](auto tag) {
    using T = decltype(tag);
    gemv<int8_t, T>(w, scales, static_cast<const T*>(x), in, out, y, accumulate, s);
  });
}

void gemv_split(const uint8_t* exponents, const SplitRows& parts, const void* x, int in, int out, float* y,
                bool accumulate, const Stream& s) {
  constexpr int kWarps = 8;  // beside the decode kernels, as gemv picks there
  launch(gemv_split_kernel<kWarps>, dim3((out + kWarps - 1) / kWarps), dim3(kWarps * 32), size_t(in) * 2, s, exponents,
         parts, static_cast<const __nv_bfloat16*>(x), in, out, y, accumulate);
}

}  // namespace codecllm::engine::cuda_kernels
