#include "cuda/device_memory.hpp"

#include <cuda_runtime.h>

#include <algorithm>

#include "codecllm/byte_size.hpp"
#include "cuda/cuda_check.hpp"

namespace codecllm::cuda {

namespace {
std::string gib(uint64_t bytes) { return human_bytes(double(bytes)); }
}  // namespace

DeviceMemory::~DeviceMemory() {
  for (void* p : device_) cudaFree(p);
  for (void* p : pinned_) cudaFreeHost(p);
}

void* DeviceMemory::device(uint64_t bytes, const std::string& what) {
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, std::max<uint64_t>(bytes, 1));
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error so later calls work
    size_t free = 0, total = 0;
    cudaMemGetInfo(&free, &total);
    throw CudaError(e, owner_ + ": out of device memory for " + what + ": asked " + gib(bytes) + ", " + gib(free) +
                           " free of " + gib(total) + " (" + gib(device_bytes_) + " already held here)");
  }
  device_.push_back(p);
  device_bytes_ += bytes;
  return p;
}

void* DeviceMemory::pinned(uint64_t bytes, const std::string& what) {
  void* p = nullptr;
  const cudaError_t e = cudaHostAlloc(&p, std::max<uint64_t>(bytes, 1), cudaHostAllocDefault);
  if (e != cudaSuccess) {
    cudaGetLastError();
    throw CudaError(e, owner_ + ": cannot page-lock " + gib(bytes) + " of host memory for " + what + " (" +
                           gib(pinned_bytes_) + " already held here): " + cudaGetErrorString(e));
  }
  pinned_.push_back(p);
  pinned_bytes_ += bytes;
  return p;
}

}  // namespace codecllm::cuda
