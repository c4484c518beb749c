// Programmatic dependent launch (sm_90): a kernel launched with overlap may start while its
// predecessor on the stream finishes, do what does not depend on it, then wait for its
// results. Both device halves are no-ops for a kernel launched without the attribute, and on
// architectures before sm_90.
#pragma once

#include <cuda_runtime.h>

#include <utility>

#include "cuda/cuda_check.hpp"

namespace codecllm::cuda {

__device__ __forceinline__ void wait_for_predecessor() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void let_successor_launch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Lets kernel take `bytes` of dynamic shared memory, as it must above 48 KiB. Cheap, host-side
// only; done at each launch so that every kernel instance gets it on first use.
template <typename Kernel>
void allow_shared_bytes(Kernel* kernel, size_t bytes) {
  if (bytes > size_t{48} * 1024)
    CLLM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

// kernel<<<grid, block, shared, stream>>>(args...), as a programmatic dependent when overlap.
template <typename... Params, typename... Args>
void launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared, cudaStream_t stream, bool overlap,
                   Args&&... args) {
  allow_shared_bytes(kernel, shared);
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = overlap ? 1 : 0;
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = shared;
  cfg.stream = stream;
  cfg.attrs = &attr;
  cfg.numAttrs = 1;
  CLLM_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}

}  // namespace codecllm::cuda
