// The products of 2 .. kSkinnyMaxBatch sequences over 16-bit weights (declared in
// cuda_kernels.cuh), on the tensor cores through cuda/skinny_gemm.cuh: the kernel whose bits an
// exp4 product rebuilding the same weights in registers gives too.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <type_traits>

#include "codecllm/error.hpp"
#include "cuda/skinny_gemm.cuh"
#include "engine/cuda_kernels.cuh"
#include "engine/cuda_launch.cuh"

namespace codecllm::engine::cuda_kernels {
namespace {

constexpr uint32_t kPrefetchBytes = 2048;  // of each of the block's rows, asked of L2 before the wait

template <typename T, int kTiles, int kWarps, int kUnroll, int kMTiles>
__global__ void __launch_bounds__(kWarps * 32)
    gemm_kernel(const T* __restrict__ w, const T* __restrict__ x, int batch, int in, int out, float* __restrict__ y,
                int ldy, bool accumulate) {
  extern __shared__ float partial[];
  const int row0 = blockIdx.x * cuda::kSkinnyRows * kMTiles;
  // The weights do not depend on earlier kernels: L2 fetches the start of each row meanwhile.
  if (threadIdx.x < cuda::kSkinnyRows * kMTiles && row0 + int(threadIdx.x) < out)
    cuda::prefetch_l2(w + static_cast<size_t>(row0 + threadIdx.x) * in, min(uint32_t(in) * 2, kPrefetchBytes));
  const cuda::DenseRows rows{reinterpret_cast<const uint4*>(w), in / 8};
  cuda::skinny_gemm_block<T, kTiles, cuda::DenseRows, kWarps, kUnroll, kMTiles>(rows, x, batch, in, out, row0, y, ldy, accumulate, partial);
}

}  // namespace

bool gemm_takes(int in, int batch) {
  return batch >= 2 && batch <= cuda::kSkinnyMaxBatch && in > 0 && in % cuda::kSkinnyChunk == 0;
}

void gemm(Act t, const void* w, const void* x, int batch, int in, int out, float* y, int ldy, bool accumulate,
          const Stream& s) {
  if (!gemm_takes(in, batch))
    throw Error("gemm: " + std::to_string(batch) + " sequences of rows " + std::to_string(in) +
                " long are not the kernel's shapes");
  with_type(t, [&](auto tag) {
    using T = decltype(tag);
    auto run = [&](auto kernel, int tiles, int warps, int mtiles) {
      const int rows = cuda::kSkinnyRows * mtiles;
      launch(kernel, dim3((out + rows - 1) / rows), dim3(warps * 32), cuda::skinny_shared_bytes(tiles * mtiles, warps),
             s, static_cast<const T*>(w), static_cast<const T*>(x), batch, in, out, y, ldy, accumulate);
    };
    const int tiles = (batch + 7) / 8;
    // EXPERIMENT: CODECLLM_EXP_GEMM=W,U,M picks warps a block, chunks in flight and 16-row tiles.
    static const int variant = [] {
      const char* v = std::getenv("CODECLLM_EXP_GEMM");
      if (v == nullptr) return 0;
      const std::string e(v);
      return e == "16,1,1" ? 1 : e == "16,1,2" ? 2 : e == "16,2,2" ? 3 : e == "8,1,2" ? 4 : e == "16,1,4" ? 5 : 0;
    }();
    auto pick = [&](auto tiles_tag) {
      constexpr int kT = decltype(tiles_tag)::value;
      constexpr int kU = kT <= 2 ? 2 : 1;
      if (variant == 1) return run(gemm_kernel<T, kT, 16, 1, 1>, kT, 16, 1);
      if (variant == 2) return run(gemm_kernel<T, kT, 16, 1, 2>, kT, 16, 2);
      if (variant == 3) return run(gemm_kernel<T, kT, 16, 2, 2>, kT, 16, 2);
      if (variant == 4) return run(gemm_kernel<T, kT, 8, 1, 2>, kT, 8, 2);
      if (variant == 5) return run(gemm_kernel<T, kT, 16, 1, 4>, kT, 16, 4);
      run(gemm_kernel<T, kT, 16, kU, 1>, kT, 16, 1);
    };
    if (tiles == 1) return pick(std::integral_constant<int, 1>{});
    if (tiles == 2) return pick(std::integral_constant<int, 2>{});
    pick(std::integral_constant<int, 4>{});  // 3 tiles too: the fourth's sequences are zeros, not written
  });
}

}  // namespace codecllm::engine::cuda_kernels
