// Launching the engine's kernels on a Stream (cuda_kernels.cuh), with programmatic dependent
// launch when the stream asks for overlap (cuda/pdl.cuh). Included by the engine's .cu files only.
#pragma once

#include <cuda_runtime.h>

#include <utility>

#include "cuda/pdl.cuh"
#include "engine/cuda_kernels.cuh"

namespace codecllm::engine::cuda_kernels {

using cuda::let_successor_launch;
using cuda::wait_for_predecessor;

template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared, const Stream& s, Args&&... args) {
  cuda::launch_kernel(kernel, grid, block, shared, s.id, s.overlap, std::forward<Args>(args)...);
}

}  // namespace codecllm::engine::cuda_kernels
