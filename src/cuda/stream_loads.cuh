// Loads of weights that are read once (they bypass L1), the L2 prefetch of a row's start, and
// the staging of a product's x in shared memory: shared by the engine's GEMV kernels and the
// decoder's fused products, which must read alike to run alike.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/pdl.cuh"

namespace codecllm::cuda {

__device__ __forceinline__ uint4 load_stream(const uint4* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

__device__ __forceinline__ uint2 load_stream8(const uint2* p) {
  uint2 v;
  asm volatile("ld.global.nc.L1::no_allocate.v2.u32 {%0,%1}, [%2];" : "=r"(v.x), "=r"(v.y) : "l"(p));
  return v;
}

__device__ __forceinline__ uint32_t load_stream4(const uint32_t* p) {
  uint32_t v;
  asm volatile("ld.global.nc.L1::no_allocate.u32 %0, [%1];" : "=r"(v) : "l"(p));
  return v;
}

// Asks L2 for `bytes` (a multiple of 16) at a 16-byte aligned address, without waiting.
__device__ __forceinline__ void prefetch_l2(const void* p, uint32_t bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p), "r"(bytes) : "memory");
#endif
}

// Waits for the kernel that wrote x, then copies its `in` 16-bit values (in % 8 == 0) to shared
// memory, where every warp of the block reads them.
__device__ __forceinline__ void stage_input(uint4* xs, const void* x, int in) {
  wait_for_predecessor();
  for (int i = threadIdx.x; i < in / 8; i += blockDim.x) xs[i] = static_cast<const uint4*>(x)[i];
  __syncthreads();
}

}  // namespace codecllm::cuda
