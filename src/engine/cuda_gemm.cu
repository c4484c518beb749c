// The products of 2 .. cuda::kSkinnyMaxBatch sequences over 16-bit weights (declared in
// cuda_kernels.cuh), on the tensor cores through cuda/skinny_gemm.cuh: the kernel whose bits an
// exp4 product rebuilding the same weights in registers gives too.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <string>

#include "codecllm/error.hpp"
#include "cuda/skinny_gemm.cuh"
#include "engine/cuda_kernels.cuh"
#include "engine/cuda_launch.cuh"

namespace codecllm::engine::cuda_kernels {
namespace {

constexpr uint32_t kPrefetchBytes = 2048;  // of each of the block's rows, asked of L2 before the wait

template <typename T>
__global__ void __launch_bounds__(cuda::kSkinnyWarps * 32)
    gemm_kernel(const T* __restrict__ w, const T* __restrict__ x, int batch, int in, int out, float* __restrict__ y,
                int ldy, bool accumulate) {
  extern __shared__ float partial[];
  const int row0 = blockIdx.x * cuda::kSkinnyRows;
  // The weights do not depend on earlier kernels: L2 fetches the start of each row meanwhile.
  if (threadIdx.x < cuda::kSkinnyRows && row0 + int(threadIdx.x) < out)
    cuda::prefetch_l2(w + static_cast<size_t>(row0 + threadIdx.x) * in, min(uint32_t(in) * 2, kPrefetchBytes));
  const cuda::DenseRows rows{reinterpret_cast<const uint4*>(w), in / 8};
  // Pipelined: 452 against 433 tok/s at batch 2 on the 8B shape, 1710 against 1700 at 8 (H200).
  cuda::skinny_gemm_block<T, cuda::DenseRows, true>(rows, x, batch, in, out, row0, y, ldy, accumulate, partial);
}

}  // namespace

bool gemm_takes(int in, int batch) {
  return batch >= 2 && batch <= cuda::kSkinnyMaxBatch && in > 0 && cuda::skinny_takes_rows_of(uint64_t(in));
}

void gemm(Act t, const void* w, const void* x, int batch, int in, int out, float* y, int ldy, bool accumulate,
          const Stream& s) {
  if (!gemm_takes(in, batch))
    throw Error("gemm: " + std::to_string(batch) + " sequences of rows " + std::to_string(in) +
                " long are not the kernel's shapes");
  with_type(t, [&](auto tag) {
    using T = decltype(tag);
    launch(gemm_kernel<T>, dim3((out + cuda::kSkinnyRows - 1) / cuda::kSkinnyRows), dim3(cuda::kSkinnyWarps * 32),
           cuda::kSkinnySharedBytes, s, static_cast<const T*>(w), static_cast<const T*>(x), batch, in, out, y, ldy,
           accumulate);
  });
}

}  // namespace codecllm::engine::cuda_kernels
