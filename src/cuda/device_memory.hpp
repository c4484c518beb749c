// Owner of the device and pinned host allocations of one component: everything is allocated
// up front (at load), freed together, counted, and an allocation that fails says what it was
// for, how much it asked and how much the device had left.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace codecllm::cuda {

class DeviceMemory {
 public:
  explicit DeviceMemory(std::string owner) : owner_(std::move(owner)) {}
  ~DeviceMemory();
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;

  // cudaMalloc of at least one byte; throws CudaError naming `what` and the sizes.
  void* device(uint64_t bytes, const std::string& what);
  // Page-locked host memory (cudaHostAlloc), for copies that overlap computation.
  void* pinned(uint64_t bytes, const std::string& what);

  uint64_t device_bytes() const { return device_bytes_; }
  uint64_t pinned_bytes() const { return pinned_bytes_; }

 private:
  std::string owner_;
  std::vector<void*> device_, pinned_;
  uint64_t device_bytes_ = 0, pinned_bytes_ = 0;
};

}  // namespace codecllm::cuda
