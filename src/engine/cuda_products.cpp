#include "engine/cuda_products.hpp"

#include <string>

#include "codecllm/error.hpp"

namespace codecllm::engine {

namespace k = cuda_kernels;

namespace {

constexpr uint64_t kBlasWorkspace = 32ull << 20;

void check_cublas(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) throw Error(std::string("cuBLAS error ") + std::to_string(int(s)) + " in " + what);
}

}  // namespace

bool gemv_takes(int in, int batch) { return batch == 1 && in % 8 == 0 && in <= k::kGemvMaxIn; }
bool gemv16_takes(int in, int batch) { return gemv_takes(in, batch) && in % 16 == 0; }

Product dense_product(const void* w, const float* scales, int in, int out, int batch, bool own_batches) {
  Product p;
  const bool gemm = own_batches && k::gemm_takes(in, batch);
  p.kind = scales != nullptr       ? Product::Kind::Int8Gemv
           : gemv_takes(in, batch) ? Product::Kind::Gemv
           : gemm                  ? Product::Kind::Gemm
                                   : Product::Kind::Blas;
  p.w = w;
  p.scales = scales;
  p.in = in;
  p.out = out;
  return p;
}

Products::Products(k::Act act, int batch, cuda::DeviceMemory& mem, cudaStream_t stream) : act_(act), batch_(batch) {
  check_cublas(cublasCreate(&blas_), "cublasCreate");
  check_cublas(cublasSetStream(blas_, stream), "cublasSetStream");
  check_cublas(cublasSetWorkspace(blas_, mem.device(kBlasWorkspace, "the cuBLAS workspace"), kBlasWorkspace),
               "cublasSetWorkspace");
}

Products::~Products() {
  if (blas_ != nullptr) cublasDestroy(blas_);
}

void Products::run(const Product& p, const void* x, float* y, bool accumulate, const k::Stream& s, int ldy) const {
  if (ldy <= 0) ldy = p.out;
  switch (p.kind) {
    case Product::Kind::Gemv:
      return k::gemv(act_, p.w, x, p.in, p.out, y, accumulate, s);
    case Product::Kind::Gemm:
      return k::gemm(act_, p.w, x, batch_, p.in, p.out, y, ldy, accumulate, s);
    case Product::Kind::Int8Gemv:
      return k::gemv_int8(act_, static_cast<const int8_t*>(p.w), p.scales, x, p.in, p.out, y, accumulate, s);
    case Product::Kind::SplitGemv:
      return k::gemv_split(static_cast<const uint8_t*>(p.w), p.split, x, p.in, p.out, y, accumulate, s);
    case Product::Kind::FromCompressed:
      if (batch_ > 1) {
        return p.decoder->decode_gemm(p.decoder->resident(), size_t(p.first), size_t(p.count), x, batch_, y, ldy,
                                      accumulate, s.id, s.overlap);
      }
      return p.decoder->decode_gemv(p.decoder->resident(), size_t(p.first), size_t(p.count), x, act_ == k::Act::F16, y,
                                    accumulate ? cuda::GemvOut::F32Add : cuda::GemvOut::F32, s.id, s.overlap);
    case Product::Kind::Blas:
      break;
  }
  // Row-major W is W^T in column-major, hence CUBLAS_OP_T.
  const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  const cudaDataType t = act_ == k::Act::F16 ? CUDA_R_16F : CUDA_R_16BF;
  check_cublas(cublasGemmEx(blas_, CUBLAS_OP_T, CUBLAS_OP_N, p.out, batch_, p.in, &one, p.w, t, p.in, x, t, p.in, &beta,
                            y, CUDA_R_32F, ldy, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
               "cublasGemmEx");
}

}  // namespace codecllm::engine
