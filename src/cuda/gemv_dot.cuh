// The arithmetic of the batch-1 matrix-vector product, shared by the GEMV kernel of the engine
// (weights read from device memory) and the fused decode-GEMV kernel (weights decoded in the
// same warp). Both sum every row in exactly this order, so that a model whose weights stay
// compressed computes the same bits as one whose weights were decoded at load:
//   lane l takes the 16-byte weight vectors l, l + 32, l + 64, ... of the row, in that order;
//   each vector's products are summed into a fresh partial (dot16 / dot_int8), which is added
//   to the lane's total; the 32 totals are combined by warp_sum; then the row scale (int8) and
//   the previous y (accumulate) are applied by row_output, with no contraction into an FMA.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/decode_desc.hpp"
#include "cuda/pdl.cuh"

namespace codecllm::cuda {

// The two elements of a 32-bit word as floats (low, high). bf16 -> float is a shift.
__device__ __forceinline__ float2 pair(uint32_t w, __nv_bfloat16) {
  return make_float2(__uint_as_float(w << 16), __uint_as_float(w & 0xffff0000u));
}
__device__ __forceinline__ float2 pair(uint32_t w, __half) {
  return __half22float2(*reinterpret_cast<const __half2*>(&w));
}

// 8 weights of type T (one 16-byte vector) against the matching 8 elements of x, already widened
// to floats (xa: elements 0-3, xb: 4-7; a product that reads x for many rows may widen it once).
template <typename T>
__device__ __forceinline__ float dot16(uint4 w, float4 xa, float4 xb) {
  const uint32_t ww[4] = {w.x, w.y, w.z, w.w};
  const float xx[8] = {xa.x, xa.y, xa.z, xa.w, xb.x, xb.y, xb.z, xb.w};
  float acc = 0;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 fw = pair(ww[i], T{});
    acc = fmaf(fw.x, xx[2 * i], acc);
    acc = fmaf(fw.y, xx[2 * i + 1], acc);
  }
  return acc;
}

// 8 values of type T (one 16-byte vector) as floats: elements 0-3, then 4-7.
template <typename T>
__device__ __forceinline__ float4 widen_lo(uint4 v) {
  const float2 a = pair(v.x, T{}), b = pair(v.y, T{});
  return make_float4(a.x, a.y, b.x, b.y);
}
template <typename T>
__device__ __forceinline__ float4 widen_hi(uint4 v) {
  const float2 a = pair(v.z, T{}), b = pair(v.w, T{});
  return make_float4(a.x, a.y, b.x, b.y);
}

// stage_input (cuda/stream_loads.cuh) with the BF16 values widened to floats, two float4 per 8
// values: for products that read x for many rows, the widening done once.
__device__ __forceinline__ void stage_input_f32(float4* xs, const void* x, int in) {
  wait_for_predecessor();
  for (int i = threadIdx.x; i < in / 8; i += blockDim.x) {
    const uint4 v = static_cast<const uint4*>(x)[i];
    xs[2 * i] = widen_lo<__nv_bfloat16>(v);
    xs[2 * i + 1] = widen_hi<__nv_bfloat16>(v);
  }
  __syncthreads();
}

// The same sum with x as 16-bit values of type T.
template <typename T>
__device__ __forceinline__ float dot16(uint4 w, uint4 x) {
  return dot16<T>(w, widen_lo<T>(x), widen_hi<T>(x));
}

// 16 int8 weights against the matching 16 elements of x (two vectors of T). A byte q becomes
// a float exactly through the bit pattern of 2^23 + (q + 128), one byte permute and one
// subtraction: cheaper than the quarter-rate integer-to-float conversion at the rate the
// weights arrive.
template <typename T>
__device__ __forceinline__ float dot_int8(uint4 w, uint4 xa, uint4 xb) {
  const uint32_t ww[4] = {w.x, w.y, w.z, w.w}, xx[8] = {xa.x, xa.y, xa.z, xa.w, xb.x, xb.y, xb.z, xb.w};
  float acc = 0;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const uint32_t biased = ww[i] ^ 0x80808080u;  // each byte q + 128
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float q = __uint_as_float(__byte_perm(biased, 0x4B000000u, 0x7540u | j)) - 8388736.0f;
      const float2 fx = pair(xx[2 * i + j / 2], T{});
      acc = fmaf(q, j % 2 == 0 ? fx.x : fx.y, acc);
    }
  }
  return acc;
}

// The sum of the 32 lanes' totals, in every lane.
__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// y[r] of a row whose sum is `sum`: times its scale (int8 rows; scale null otherwise), plus
// the previous y[r] when accumulating. Explicit roundings: no FMA either kernel could differ on.
__device__ __forceinline__ float row_output(float sum, const float* scale, const float* y, bool accumulate) {
  if (scale != nullptr) sum = __fmul_rn(sum, *scale);
  return accumulate ? __fadd_rn(*y, sum) : sum;
}

// Writes row `row` of a fused product's y in the form `out` names (row_output's arithmetic, then
// for Bf16 one rounding to nearest even).
__device__ __forceinline__ void store_row(void* y, uint64_t row, float sum, const float* scale, GemvOut out) {
  if (out == GemvOut::Bf16) {
    static_cast<__nv_bfloat16*>(y)[row] = __float2bfloat16_rn(row_output(sum, scale, nullptr, false));
    return;
  }
  float* f = static_cast<float*>(y) + row;
  *f = row_output(sum, scale, f, out == GemvOut::F32Add);
}

}  // namespace codecllm::cuda
