// CUDA error handling: every runtime call is checked and failures become codecllm::Error
// with the call, the file and line, and the runtime's own message.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "codecllm/error.hpp"

namespace codecllm::cuda {

class CudaError : public Error {
 public:
  CudaError(cudaError_t code, const std::string& what) : Error(what), code_(code) {}
  cudaError_t code() const { return code_; }

 private:
  cudaError_t code_;
};

[[noreturn]] void throw_cuda(cudaError_t e, const char* call, const char* file, int line);

}  // namespace codecllm::cuda

#define CLLM_CUDA_CHECK(call)                                                                     \
  do {                                                                                            \
    cudaError_t cllm_e_ = (call);                                                                 \
    if (cllm_e_ != cudaSuccess) ::codecllm::cuda::throw_cuda(cllm_e_, #call, __FILE__, __LINE__); \
  } while (0)
