// Helpers shared by the tests that need a CUDA device (they skip themselves without one).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "cuda/cuda_check.hpp"

namespace codecllm::test {

inline bool have_gpu() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

// Device memory for the length of a test; at least one byte, so that size 0 is a valid pointer.
struct DeviceBuffer {
  void* p = nullptr;
  explicit DeviceBuffer(size_t n) { CLLM_CUDA_CHECK(cudaMalloc(&p, n == 0 ? 1 : n)); }
  ~DeviceBuffer() { cudaFree(p); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

}  // namespace codecllm::test
