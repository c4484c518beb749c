// Helpers shared by the tests that need a CUDA device (they skip themselves without one).
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "codecllm/error.hpp"
#include "cuda/cuda_check.hpp"
#include "cuda/gpu_decoder.hpp"

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

// Runs run(copy) on `trials` copies of dec's compressed range, each with one bit flipped in
// the chunk data of `plane` (its second half: past the header, tables and chunk index), and
// counts the copies that dec.check then reports as corrupt. Every report must name `tensor`.
template <typename Run>
int corruptions_reported(cuda::GpuDecoder& dec, const format::PlaneRecord& plane, int trials, uint32_t seed,
                         const std::string& tensor, Run run) {
  std::mt19937 rng(seed);
  int detected = 0;
  for (int t = 0; t < trials; ++t) {
    std::vector<uint8_t> bad(dec.host_range().begin(), dec.host_range().end());
    const size_t at = plane.offset - dec.range_offset() + plane.size / 2 + rng() % (plane.size / 2);
    bad[at] ^= static_cast<uint8_t>(1u << (rng() % 8));
    run(bad);
    try {
      dec.check(nullptr);
    } catch (const FormatError& e) {
      ++detected;
      EXPECT_NE(std::string(e.what()).find(tensor), std::string::npos) << e.what();
    }
  }
  return detected;
}

}  // namespace codecllm::test
