// How each matmul of a CUDA step runs: y[b][out] = W[out, in] x[b][in] (+ y when accumulating),
// W row-major, x in the model's 16-bit type, y float32. A Product says which kernel reads which
// bytes; cuda_weights.hpp decides it once per layer at load, and a step only runs them.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "cuda/device_memory.hpp"
#include "cuda/gpu_decoder.hpp"
#include "engine/cuda_kernels.cuh"

namespace codecllm::engine {

// Batch 1 runs the project's bandwidth-bound GEMV kernels (faster than cuBLAS there,
// measured) where they take the row length; batches of 2-8 the tensor-core kernel of
// cuda_gemm.cu, larger ones cuBLAS.
bool gemv_takes(int in, int batch);
// The int8 (W8A16) and split-plane GEMVs read 16 weights at a time: rows a multiple of 16.
bool gemv16_takes(int in, int batch);

struct Product {
  enum class Kind {
    Gemv,            // 16-bit W, batch-1 kernel
    Gemm,            // 16-bit W, 2 .. 8 sequences on the tensor cores
    Blas,            // 16-bit W, cuBLAS
    Int8Gemv,        // int8 W with one float scale per row (W8A16)
    SplitGemv,       // BF16 W as exponent bytes (w) and raw sign_mantissa planes (split)
    FromCompressed,  // decoded inside the product from the resident compressed copy (decoder)
  };
  Kind kind = Kind::Blas;
  int in = 0, out = 0;
  const void* w = nullptr;        // Gemv, Blas, Int8Gemv: the weights; SplitGemv: their exponent bytes
  const float* scales = nullptr;  // Int8Gemv: a scale per row
  cuda_kernels::SplitRows split{};
  cuda::GpuDecoder* decoder = nullptr;  // FromCompressed: its tensors [first, first + count)
  int first = 0, count = 0;
};

// The product over decoded weights at w: int8 when `scales` is given, else 16-bit (GEMV, the
// tensor-core kernel when `own_batches` and gemm_takes, else cuBLAS).
Product dense_product(const void* w, const float* scales, int in, int out, int batch, bool own_batches);

class Products {
 public:
  // A cuBLAS handle on `stream` with a workspace of its own from `mem` (cuBLAS must not
  // allocate while a step is being captured).
  Products(cuda_kernels::Act act, int batch, cuda::DeviceMemory& mem, cudaStream_t stream);
  ~Products();
  Products(const Products&) = delete;
  Products& operator=(const Products&) = delete;

  // Enqueues p on s; ldy: distance between sequences in y (0: p.out).
  void run(const Product& p, const void* x, float* y, bool accumulate, const cuda_kernels::Stream& s,
           int ldy = 0) const;

 private:
  cuda_kernels::Act act_;
  int batch_;
  cublasHandle_t blas_ = nullptr;
};

}  // namespace codecllm::engine
