// The RMSNorm kernel of the CUDA engine against a double-precision norm, in both of its instances
// (weights in registers when the stream is alone, the small one beside decode kernels), which
// must give the same bits: rows shorter than the block, of one block's worth of registers
// (8 x 1024), past it (the loop over the rest), one to three sequences, bf16 and f16. Skips
// without a GPU.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cuda/cuda_check.hpp"
#include "engine/cuda_kernels.cuh"
#include "gpu_test_util.hpp"

namespace codecllm {
namespace {

namespace k = engine::cuda_kernels;

using test::DeviceBuffer;
using test::have_gpu;

float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
float to_float(__half v) { return __half2float(v); }
void from_float(float v, __nv_bfloat16* out) { *out = __float2bfloat16(v); }
void from_float(float v, __half* out) { *out = __float2half(v); }

template <typename T>
void check_norm(int dim, int batch, k::Act act) {
  std::mt19937 rng(dim * 3 + batch);
  std::normal_distribution<float> gauss(0.0f, 1.0f);
  std::vector<float> x(size_t(dim) * batch);
  std::vector<T> w(dim);
  for (auto& v : x) v = 4.0f * gauss(rng);
  for (auto& v : w) from_float(1.0f + 0.2f * gauss(rng), &v);
  const float eps = 1e-5f;
  DeviceBuffer dx(x.size() * 4), dw(w.size() * sizeof(T)), dout(x.size() * sizeof(T));
  CLLM_CUDA_CHECK(cudaMemcpy(dx.p, x.data(), x.size() * 4, cudaMemcpyHostToDevice));
  CLLM_CUDA_CHECK(cudaMemcpy(dw.p, w.data(), w.size() * sizeof(T), cudaMemcpyHostToDevice));
  const std::string what = std::string(act == k::Act::F16 ? "f16" : "bf16") + " dim " + std::to_string(dim);
  std::vector<T> first;
  for (const bool alone : {true, false}) {
    for (const bool overlap : {false, true}) {
      CLLM_CUDA_CHECK(cudaMemset(dout.p, 0xff, x.size() * sizeof(T)));
      k::rmsnorm(act, static_cast<const float*>(dx.p), dw.p, eps, dim, batch, dout.p, {nullptr, overlap, alone});
      CLLM_CUDA_CHECK(cudaDeviceSynchronize());
      std::vector<T> out(x.size());
      CLLM_CUDA_CHECK(cudaMemcpy(out.data(), dout.p, out.size() * sizeof(T), cudaMemcpyDeviceToHost));
      for (int b = 0; b < batch; ++b) {
        double ss = 0;
        for (int i = 0; i < dim; ++i) ss += double(x[size_t(b) * dim + i]) * x[size_t(b) * dim + i];
        const double scale = 1.0 / std::sqrt(ss / dim + eps);
        for (int i = 0; i < dim; ++i) {
          const size_t at = size_t(b) * dim + i;
          const double ref = x[at] * scale * to_float(w[i]);
          // One rounding to the 16-bit type (8 or 11 significant bits) plus float arithmetic.
          ASSERT_NEAR(to_float(out[at]), ref, std::fabs(ref) * (act == k::Act::F16 ? 1.5e-3 : 8e-3) + 1e-6)
              << what << " sequence " << b << " element " << i << " alone " << alone;
        }
      }
      if (first.empty()) first = out;
      ASSERT_EQ(0, std::memcmp(first.data(), out.data(), out.size() * sizeof(T)))
          << what << ": alone " << alone << " overlap " << overlap << " gave other bits";
    }
  }
}

struct NormCase {
  int dim, batch;
};
class NormShapes : public ::testing::TestWithParam<NormCase> {};

TEST_P(NormShapes, MatchesDoubleInBothInstances) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const auto [dim, batch] = GetParam();
  check_norm<__nv_bfloat16>(dim, batch, k::Act::BF16);
  check_norm<__half>(dim, batch, k::Act::F16);
}

INSTANTIATE_TEST_SUITE_P(Shapes, NormShapes,
                         ::testing::Values(NormCase{8, 1}, NormCase{288, 3}, NormCase{4096, 1}, NormCase{8192, 2},
                                           NormCase{8200, 1}, NormCase{16384, 3}),
                         [](const ::testing::TestParamInfo<NormCase>& c) {
                           return "dim" + std::to_string(c.param.dim) + "_batch" + std::to_string(c.param.batch);
                         });

}  // namespace
}  // namespace codecllm
