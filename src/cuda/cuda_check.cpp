#include "cuda/cuda_check.hpp"

#include <string>

namespace codecllm::cuda {

void throw_cuda(cudaError_t e, const char* call, const char* file, int line) {
  throw CudaError(e, std::string("CUDA error in ") + call + " (" + file + ":" + std::to_string(line) +
                         "): " + cudaGetErrorName(e) + ": " + cudaGetErrorString(e));
}

}  // namespace codecllm::cuda
