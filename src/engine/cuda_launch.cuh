// Launching the engine's kernels on a Stream (cuda_kernels.cuh), with programmatic dependent
// launch when the stream asks for overlap (cuda/pdl.cuh). Included by the engine's .cu files only.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <utility>

#include "cuda/pdl.cuh"
#include "engine/cuda_kernels.cuh"

namespace codecllm::engine::cuda_kernels {

using cuda::let_successor_launch;
using cuda::wait_for_predecessor;

// Calls f with a value of the element type of `a`, to instantiate a kernel for it.
template <typename F>
void with_type(Act a, F&& f) {
  if (a == Act::F16) {
    f(__half{});
  } else {
    f(__nv_bfloat16{});
  }
}

template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared, const Stream& s, Args&&... args) {
  cuda::launch_kernel(kernel, grid, block, shared, s.id, s.overlap, std::forward<Args>(args)...);
}

}  // namespace codecllm::engine::cuda_kernels
